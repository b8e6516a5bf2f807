"""The feature store: one Zarr v3 group per (model, dataset extraction), readable with plain zarr.

Final layout (what readers use; ``W`` windows, ``T`` tracks, ``L`` hidden states, ``D`` dim)::

    pooled         [W, L, D]  float16   time-mean of every hidden state, one row per window
    window_track   [W]        int32     row -> track index
    window_start   [W]        float64   window start in seconds, from the (cropped) clip start
    window_length  [W]        float64   window length in seconds (the tail window is shorter)
    track_id       [T]        str       catalog ids, catalog order
    track_status   [T]        uint8     0 pending, 1 done, 2 failed
    track_error    [T]        str       why a track failed ("" when done)
    track_pooled   [T, L, D]  float16   mean of the track's window rows (NaN for failed tracks)
    frames         [F, K, D]  float16   (--frames) every frame of the K chosen layers, window by window
    frame_offsets  [W + 1]    int64     (--frames) window w's frames are frames[offsets[w]:offsets[w+1]]
    done           [B]        uint8     per-block completion markers (see below)
    attrs["marblekit"]         model, backbone, onnx_sha256, random_init, precision, sample_rate,
                               frame_rate, window_s, hop_s, crop_s, normalize_input, layers (hidden-state
                               index of each pooled row), frame_layers, dim, marblekit_version
    attrs["marblekit_layout"]  block_tracks, num_blocks, finalized

Concurrency model. Tracks are cut into blocks of ``block_tracks`` consecutive catalog rows; the block is the
unit of work and of writing. The number of windows per track is only known after decoding, so each block
is written as its own bucket group ``blocks/<k>/`` (the same arrays, one chunk each, i.e. every object has
exactly one writer), and only then is ``done[k]`` set (its own 1-byte object). A process claims a block
with a non-blocking ``flock`` on ``.marblekit-locks/<k>`` (released by the kernel even on kill -9), so
processes sharing a store never write the same block; a crash leaves at worst an unmarked bucket that the
next run overwrites. Structural changes (creating the group, checking that a resumed run matches, and
finalising) happen under the store-wide lock ``.marblekit-locks/store``. Whichever process finds every
block done finalises: it copies the buckets into the flat arrays above, sets ``finalized``, removes the
buckets and consolidates the metadata. Local filesystems only (flock).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr

PENDING, DONE, FAILED = 0, 1, 2
LOCKS = ".marblekit-locks"
BUCKETS = "blocks"
ROW_CHUNK = 512
FRAME_CHUNK = 1024

# Variable-length strings and consolidated metadata are not in the Zarr v3 core spec yet (zarr warns on every
# use), and the lock directory is deliberately not a zarr node.
for _message in (".*StringDType.*", ".*does not have a Zarr V3 specification.*", ".*Consolidated metadata.*",
                 ".*is not recognized as a component of a Zarr hierarchy.*"):
    warnings.filterwarnings("ignore", message=_message)


@dataclass
class Block:
    """Everything extracted for one block of tracks, buffered in RAM until it is written whole."""

    index: int
    track_status: np.ndarray  # [n] uint8
    track_error: list[str]
    pooled: np.ndarray  # [W_k, L, D] float16
    window_track: np.ndarray  # [W_k] int32, global track index
    window_start: np.ndarray  # [W_k] float64 seconds
    window_length: np.ndarray  # [W_k] float64 seconds
    frames: np.ndarray | None = None  # [F_k, K, D] float16
    frame_counts: np.ndarray | None = None  # [W_k] int64


@dataclass
class StoreView:
    """A finalised store as numpy arrays (frames stay lazy zarr arrays)."""

    metadata: dict[str, object]
    pooled: np.ndarray
    window_track: np.ndarray
    window_start: np.ndarray
    window_length: np.ndarray
    track_id: np.ndarray
    track_status: np.ndarray
    track_error: np.ndarray
    track_pooled: np.ndarray
    frames: zarr.Array | None = None
    frame_offsets: np.ndarray | None = None


@contextlib.contextmanager
def locked(path: Path, blocking: bool = True) -> Iterator[bool]:
    """Hold an exclusive flock on ``path`` (yields False when ``blocking`` is off and someone else holds it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


class Store:
    """Writer side of one extraction store; see the module docstring for the protocol."""

    def __init__(self, path: Path, metadata: dict[str, object], track_ids: list[str], block_tracks: int,
                 frame_layers: int):
        self.path = Path(path)
        self.metadata = metadata
        self.track_ids = track_ids
        self.block_tracks = block_tracks
        self.num_blocks = max(1, -(-len(track_ids) // block_tracks))
        self.frame_layers = frame_layers
        with self.store_lock():
            self.group = self._open_or_create()

    def store_lock(self) -> contextlib.AbstractContextManager[bool]:
        return locked(self.path / LOCKS / "store")

    def block_lock(self, index: int) -> contextlib.AbstractContextManager[bool]:
        return locked(self.path / LOCKS / f"{index:06d}", blocking=False)

    def block_range(self, index: int) -> range:
        return range(index * self.block_tracks, min((index + 1) * self.block_tracks, len(self.track_ids)))

    def _open_or_create(self) -> zarr.Group:
        """Open the store, or create it; the layout attribute is written last, so it marks a complete creation."""
        group = zarr.open_group(self.path, mode="a", use_consolidated=False)
        if "marblekit_layout" in group.attrs:
            self._check_matches(group)
            return group
        ids = group.create_array("track_id", shape=(len(self.track_ids),), dtype=str,
                                 chunks=(max(len(self.track_ids), 1),), overwrite=True, dimension_names=("track",))
        ids[:] = np.array(self.track_ids, dtype=str)
        group.create_array("done", shape=(self.num_blocks,), dtype="uint8", chunks=(1,), fill_value=0,
                           overwrite=True, dimension_names=("block",))
        group.create_group(BUCKETS, overwrite=True)
        group.attrs.update({"marblekit": self.metadata,
                            "marblekit_layout": {"block_tracks": self.block_tracks, "num_blocks": self.num_blocks,
                                                 "finalized": False}})
        return group

    def _check_matches(self, group: zarr.Group) -> None:
        stored = dict(group.attrs.get("marblekit", {}))
        differing = sorted(key for key in set(stored) | set(self.metadata) if key != "marblekit_version"
                           and stored.get(key) != self.metadata.get(key))
        if differing:
            details = "; ".join(f"{key}: store has {stored.get(key)!r}, this run {self.metadata.get(key)!r}"
                                for key in differing)
            raise ValueError(f"store {self.path} was written with other settings ({details}); "
                             f"use another --store or the same settings")
        layout = group.attrs["marblekit_layout"]
        if layout["block_tracks"] != self.block_tracks:
            raise ValueError(f"store {self.path} uses --block-tracks {layout['block_tracks']}, "
                             f"this run {self.block_tracks}")
        stored_ids = group["track_id"][:].tolist()
        if stored_ids != self.track_ids:
            mismatch = next((i for i, (a, b) in enumerate(zip(stored_ids, self.track_ids)) if a != b),
                            min(len(stored_ids), len(self.track_ids)))
            raise ValueError(f"store {self.path} was built from another catalog: {len(stored_ids)} tracks "
                             f"there, {len(self.track_ids)} here, first difference at track {mismatch}")

    @property
    def finalized(self) -> bool:
        return bool(self.group.attrs["marblekit_layout"]["finalized"])

    def done_blocks(self) -> np.ndarray:
        return zarr.open_array(self.path / "done", mode="r")[:].astype(bool)

    def is_done(self, index: int) -> bool:
        return bool(zarr.open_array(self.path / "done", mode="r")[index])

    def write_block(self, block: Block) -> None:
        """Write the block's bucket (each array one object), then mark it done; call holding its lock."""
        bucket = self.group.require_group(BUCKETS).create_group(f"{block.index:06d}", overwrite=True)
        arrays: dict[str, np.ndarray] = {
            "pooled": block.pooled, "window_track": block.window_track, "window_start": block.window_start,
            "window_length": block.window_length, "track_status": block.track_status,
            "track_error": np.array(block.track_error, dtype=str),
        }
        if block.frames is not None:
            arrays |= {"frames": block.frames, "frame_counts": block.frame_counts}
        for name, values in arrays.items():
            dtype = str if values.dtype.kind == "U" else values.dtype  # text: variable-length UTF-8
            array = bucket.create_array(name, shape=values.shape, dtype=dtype,
                                        chunks=(max(values.shape[0], 1),) + values.shape[1:],
                                        compressors=None if values.dtype == np.float16 else "auto")
            if values.shape[0]:
                array[...] = values
        zarr.open_array(self.path / "done", mode="r+")[block.index] = 1

    def finalize_if_complete(self) -> bool:
        """Build the flat arrays once every block is done (idempotent, one finaliser at a time)."""
        with self.store_lock():
            self.group = zarr.open_group(self.path, mode="r+", use_consolidated=False)
            if self.finalized:
                return True
            if not self.done_blocks().all():
                return False
            self._finalize()
            return True

    def _bucket(self, index: int) -> zarr.Group:
        return zarr.open_group(self.path / BUCKETS / f"{index:06d}", mode="r", use_consolidated=False)

    def _finalize(self) -> None:
        counts = [self._bucket(k)["pooled"].shape[0] for k in range(self.num_blocks)]
        frame_counts = [self._bucket(k)["frames"].shape[0] for k in range(self.num_blocks)] \
            if self.frame_layers else []
        flat = _FlatArrays(self.group, sum(counts), len(self.track_ids), self.metadata, self.frame_layers,
                           sum(frame_counts))
        window_offset = frame_offset = 0
        for index in range(self.num_blocks):
            bucket = self._bucket(index)
            tracks = self.block_range(index)
            flat.write_block(bucket, window_offset, frame_offset, tracks)
            window_offset += counts[index]
            frame_offset += frame_counts[index] if self.frame_layers else 0
        flat.finish()
        layout = dict(self.group.attrs["marblekit_layout"]) | {"finalized": True}
        self.group.attrs["marblekit_layout"] = layout
        shutil.rmtree(self.path / BUCKETS)
        zarr.consolidate_metadata(self.path)


class _FlatArrays:
    """The final arrays, created at their full size and filled block by block by the one finaliser."""

    def __init__(self, group: zarr.Group, windows: int, tracks: int, metadata: dict[str, object],
                 frame_layers: int, frames: int):
        layers, dim = len(metadata["layers"]), int(metadata["dim"])  # type: ignore[arg-type]
        rows = (max(min(windows, ROW_CHUNK), 1),)
        self.pooled = group.create_array("pooled", shape=(windows, layers, dim), dtype="float16",
                                         chunks=rows + (layers, dim), compressors=None, overwrite=True,
                                         dimension_names=("window", "layer", "dim"))
        self.window_track = group.create_array("window_track", shape=(windows,), dtype="int32", chunks=rows,
                                               overwrite=True, dimension_names=("window",))
        self.window_start = group.create_array("window_start", shape=(windows,), dtype="float64", chunks=rows,
                                               overwrite=True, dimension_names=("window",))
        self.window_length = group.create_array("window_length", shape=(windows,), dtype="float64",
                                                chunks=rows, overwrite=True, dimension_names=("window",))
        track_rows = (max(tracks, 1),)
        self.track_status = group.create_array("track_status", shape=(tracks,), dtype="uint8",
                                               chunks=track_rows, overwrite=True, dimension_names=("track",))
        self.track_error = group.create_array("track_error", shape=(tracks,), dtype=str, chunks=track_rows,
                                              overwrite=True, dimension_names=("track",))
        self.track_pooled = group.create_array("track_pooled", shape=(tracks, layers, dim), dtype="float16",
                                               chunks=(max(min(tracks, ROW_CHUNK), 1), layers, dim),
                                               compressors=None, overwrite=True, fill_value=np.nan,
                                               dimension_names=("track", "layer", "dim"))
        self.status = np.zeros(tracks, dtype=np.uint8)
        self.errors = np.full(tracks, "", dtype=object)
        self.frames = self.frame_offsets = None
        if frame_layers:
            self.frames = group.create_array("frames", shape=(frames, frame_layers, dim), dtype="float16",
                                             chunks=(max(min(frames, FRAME_CHUNK), 1), frame_layers, dim),
                                             compressors=None, overwrite=True,
                                             dimension_names=("frame", "frame_layer", "dim"))
            self.frame_offsets = np.zeros(windows + 1, dtype=np.int64)
        self.group = group

    def write_block(self, bucket: zarr.Group, window_offset: int, frame_offset: int, tracks: range) -> None:
        pooled = bucket["pooled"][...]
        stop = window_offset + pooled.shape[0]
        if pooled.shape[0]:
            self.pooled[window_offset:stop] = pooled
            window_track = bucket["window_track"][...]
            self.window_track[window_offset:stop] = window_track
            self.window_start[window_offset:stop] = bucket["window_start"][...]
            self.window_length[window_offset:stop] = bucket["window_length"][...]
            self._write_track_means(pooled, window_track, tracks)
        self.status[tracks.start:tracks.stop] = bucket["track_status"][...]
        self.errors[tracks.start:tracks.stop] = bucket["track_error"][...].tolist()
        if self.frames is not None and self.frame_offsets is not None:
            frames = bucket["frames"][...]
            if frames.shape[0]:
                self.frames[frame_offset:frame_offset + frames.shape[0]] = frames
            counts = bucket["frame_counts"][...]
            self.frame_offsets[window_offset + 1:stop + 1] = frame_offset + np.cumsum(counts)

    def _write_track_means(self, pooled: np.ndarray, window_track: np.ndarray, tracks: range) -> None:
        local = window_track - tracks.start
        sums = np.zeros((len(tracks),) + pooled.shape[1:], dtype=np.float64)
        np.add.at(sums, local, pooled.astype(np.float64))
        counts = np.bincount(local, minlength=len(tracks))
        means = np.full(sums.shape, np.nan, dtype=np.float16)
        has = counts > 0
        means[has] = (sums[has] / counts[has, None, None]).astype(np.float16)
        self.track_pooled[tracks.start:tracks.stop] = means

    def finish(self) -> None:
        """Write the per-track tables and the frame offsets, gathered over all blocks."""
        if self.status.shape[0]:
            self.track_status[:] = self.status
            self.track_error[:] = np.array(self.errors.tolist(), dtype=str)
        if self.frame_offsets is not None:
            offsets = self.group.create_array("frame_offsets", shape=self.frame_offsets.shape, dtype="int64",
                                              chunks=self.frame_offsets.shape, overwrite=True,
                                              dimension_names=("window_edge",))
            offsets[:] = self.frame_offsets


def status_counts(path: Path) -> tuple[int, int]:
    """``(done, failed)`` tracks of a finalised store."""
    status = zarr.open_array(Path(path) / "track_status", mode="r")[...]
    return int((status == DONE).sum()), int((status == FAILED).sum())


def open_pooled(path: Path) -> StoreView:
    """Read a finalised store (raises ValueError naming what is missing when extraction is unfinished)."""
    group = zarr.open_group(Path(path), mode="r")
    layout = group.attrs.get("marblekit_layout")
    if layout is None:
        raise ValueError(f"{path} is not a marblekit store (no marblekit_layout attribute)")
    if not layout["finalized"]:
        done = int(zarr.open_array(Path(path) / "done", mode="r")[:].sum())
        raise ValueError(f"store {path} is unfinished: {done} of {layout['num_blocks']} blocks done; "
                         f"run the same marblekit extract command again to complete it")
    names = ("pooled", "window_track", "window_start", "window_length", "track_id", "track_status",
             "track_error", "track_pooled")
    view = StoreView(dict(group.attrs["marblekit"]), *(group[name][...] for name in names))
    if "frames" in group:
        view.frames = group["frames"]
        view.frame_offsets = group["frame_offsets"][...]
    return view
