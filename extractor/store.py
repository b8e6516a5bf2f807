"""The extractor's side of the feature store: writing one store block by block, resumably and from several
processes at once. The layout itself (arrays, attributes, reader) is ``marblekit.core.store_layout``.

Concurrency model. Tracks are cut into blocks of ``block_tracks`` consecutive catalog rows; the block is the
unit of work and of writing. The number of windows per track is only known after decoding, so each block
is written as its own bucket group ``blocks/<k>/`` (the same arrays, one chunk each, i.e. every object has
exactly one writer), and only then is ``done[k]`` set (its own 1-byte object). A process claims a block
with a non-blocking ``flock`` on ``.marblekit-locks/<k>`` (released by the kernel even on kill -9), so
processes sharing a store never write the same block; a crash leaves at worst an unmarked bucket that the
next run overwrites. Structural changes (creating the group, checking that a resumed run matches, and
finalising) happen under the store-wide lock ``.marblekit-locks/store``. Whichever process finds every
block done finalises: it copies the buckets into the flat arrays, sets ``finalized``, removes the
buckets and consolidates the metadata.

On object storage (``s3://...``: no flock there) there are no claims: each block has one writer by schedule
(``--shard I/N`` processes own disjoint blocks, or the Ray driver gives each block to one worker), and since a
block's bucket is written whole and deterministically, a block written again holds the same bytes. Two
finalisers could race there, so only the Ray driver or a run without ``--shard`` finalises (``api.extract``).
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import dataclasses
import fcntl
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr

from marblekit.core.store_layout import (ATTRS_KEY, DONE_MARKERS, FAILED, FRAME_OFFSETS, FRAMES, LAYOUT_KEY, POOLED,
                                         TRACK_ERROR, TRACK_ID, TRACK_STATUS, WINDOW_LENGTH, WINDOW_START, WINDOW_TRACK,
                                         ArraySpec, FlatArrays, Layout, StoreAttrs, consolidate, create_array,
                                         create_store, mark_finalized, read_layout, storable_text)
from marblekit.core.store_location import StoreLocation, is_url

from .lookahead import submitted_ahead

LOCKS = ".marblekit-locks"
BUCKETS = "blocks"
#: threads that read the buckets ahead of the finaliser (object storage answers each request in tens of ms)
FINALIZE_READERS = 16
#: frames per window in a block's bucket (the flat store keeps offsets instead)
FRAME_COUNTS = ArraySpec("frame_counts", "int64", ("window",))
#: the arrays every block's bucket and the flat store hold alike (with frames, FRAMES too)
SHARED_ARRAYS = (POOLED, WINDOW_TRACK, WINDOW_START, WINDOW_LENGTH, TRACK_STATUS, TRACK_ERROR)


@dataclass
class Block:
    """Everything extracted for one block of tracks, buffered in RAM until it is written whole."""

    index: int
    track_status: np.ndarray  # [n] uint8
    track_error: list[str]
    pooled: np.ndarray  # [W_k, C] float16 (core.store_layout)
    window_track: np.ndarray  # [W_k] int32, global track index
    window_start: np.ndarray  # [W_k] float64 seconds
    window_length: np.ndarray  # [W_k] float64 seconds
    frames: np.ndarray | None = None  # [F_k, C_f] float16
    frame_counts: np.ndarray | None = None  # [W_k] int64


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

    def __init__(self, path: StoreLocation, attrs: StoreAttrs, num_tracks: int, block_tracks: int,
                 track_ids: list[str] | None = None):
        """With the catalog's ``track_ids``: open the store, checking that it was made from this catalog with
        these settings, or create it. Without: open a store that exists and was checked against its catalog by
        whoever created it (a Ray worker's, checked by the driver), reading no track ids."""
        if track_ids is not None and len(track_ids) != num_tracks:
            raise ValueError(f"{len(track_ids)} track ids for a store of {num_tracks} tracks")
        self.path = path
        self.locks = None if is_url(path) else Path(path) / LOCKS  # object storage: no flock (see above)
        self.attrs = attrs
        self.num_tracks = num_tracks
        self.block_tracks = block_tracks
        self.num_blocks = max(1, -(-num_tracks // block_tracks))
        self.track_ids = track_ids
        if track_ids is None:
            self.group = zarr.open_group(str(path), mode="r+", use_consolidated=False)
        else:
            with self.store_lock():
                self.group = self._open_or_create()

    def store_lock(self) -> contextlib.AbstractContextManager[bool]:
        return locked(self.locks / "store") if self.locks else contextlib.nullcontext(True)

    def block_lock(self, index: int) -> contextlib.AbstractContextManager[bool]:
        return locked(self.locks / f"{index:06d}", blocking=False) if self.locks else contextlib.nullcontext(True)

    def block_range(self, index: int) -> range:
        return range(index * self.block_tracks, min((index + 1) * self.block_tracks, self.num_tracks))

    def _open_or_create(self) -> zarr.Group:
        """Open the store, or create it: the block markers and buckets first, the attributes last (see
        ``create_store``), so a creation cut short is simply done again."""
        group = zarr.open_group(str(self.path), mode="a", use_consolidated=False)
        if ATTRS_KEY in group.attrs:
            self._check_matches(group)
            return group
        group.create_array(DONE_MARKERS, shape=(self.num_blocks,), dtype="uint8", chunks=(1,), fill_value=0,
                           overwrite=True, dimension_names=("block",))
        group.create_group(BUCKETS, overwrite=True)
        return create_store(self.path, self.attrs, self.track_ids, Layout(self.block_tracks, self.num_blocks))

    def _check_matches(self, group: zarr.Group) -> None:
        stored = StoreAttrs.from_json(group.attrs.get(ATTRS_KEY), str(self.path)).settings()
        wanted = self.attrs.settings()
        differing = sorted(key for key in set(stored) | set(wanted) if stored.get(key) != wanted.get(key))
        if differing:
            details = "; ".join(f"{key}: store has {stored.get(key)!r}, this run {wanted.get(key)!r}"
                                for key in differing)
            raise ValueError(f"store {self.path} was written with other settings ({details}); "
                             f"use another --store or the same settings")
        layout = read_layout(group, str(self.path))
        if layout.block_tracks != self.block_tracks:
            raise ValueError(f"store {self.path} uses --block-tracks {layout.block_tracks}, "
                             f"this run {self.block_tracks}")
        stored_ids = group[TRACK_ID.name][:].tolist()
        if stored_ids != self.track_ids:
            mismatch = next((i for i, (a, b) in enumerate(zip(stored_ids, self.track_ids)) if a != b),
                            min(len(stored_ids), len(self.track_ids)))
            raise ValueError(f"store {self.path} was built from another catalog: {len(stored_ids)} tracks "
                             f"there, {len(self.track_ids)} here, first difference at track {mismatch}")

    @property
    def finalized(self) -> bool:
        return read_layout(self.group, str(self.path)).finalized

    def _markers(self) -> zarr.Array:
        return self.group[DONE_MARKERS]

    def done_blocks(self) -> np.ndarray:
        return self._markers()[:].astype(bool)

    def is_done(self, index: int) -> bool:
        return bool(self._markers()[index])

    def write_block(self, block: Block) -> None:
        """Write the block's bucket (each array one object), then mark it done; call holding its lock."""
        self._write_bucket(block)
        self._markers()[block.index] = 1

    def _write_bucket(self, block: Block) -> None:
        bucket = self.group.require_group(BUCKETS).create_group(f"{block.index:06d}", overwrite=True)
        arrays: list[tuple[ArraySpec, np.ndarray]] = [
            (POOLED, block.pooled), (WINDOW_TRACK, block.window_track), (WINDOW_START, block.window_start),
            (WINDOW_LENGTH, block.window_length), (TRACK_STATUS, block.track_status),
            (TRACK_ERROR, np.array([storable_text(error) for error in block.track_error], dtype=str)),
        ]
        if block.frames is not None and block.frame_counts is not None:
            arrays += [(FRAMES, block.frames), (FRAME_COUNTS, block.frame_counts)]
        for spec, values in arrays:
            array = create_array(bucket, spec, values.shape, (max(values.shape[0], 1),) + values.shape[1:])
            if values.shape[0]:
                array[...] = values

    def finalize_if_complete(self) -> bool:
        """Build the flat arrays once every block is done (idempotent, one finaliser at a time); a
        finalisation cut short after the store was marked complete is finished here."""
        with self.store_lock():
            self.group = zarr.open_group(str(self.path), mode="r+", use_consolidated=False)
            if self.finalized:
                self._clean_up()
                return True
            if not self.done_blocks().all():
                return False
            self._finalize()
            return True

    def _clean_up(self) -> None:
        """Remove the buckets and consolidate the metadata of what remains (safe to repeat)."""
        if BUCKETS in self.group:
            del self.group[BUCKETS]
        consolidate(self.path)

    def failed_tracks(self) -> int:
        """Tracks recorded as failed in the whole store so far: every block done, whichever process did it."""
        if self.finalized:
            return int((self.group[TRACK_STATUS.name][...] == FAILED).sum())
        done = np.flatnonzero(self.done_blocks())
        return sum(int((self._bucket(k)[TRACK_STATUS.name][...] == FAILED).sum()) for k in done)

    def reopen_failed(self) -> int:
        """Make the blocks that hold failed tracks pending again (``--retry-failed``); returns how many
        failed tracks they hold. A finalised store is first turned back into blocks: its flat arrays are
        copied into buckets, so this costs about what a finalisation costs."""
        with self.store_lock():
            self.group = zarr.open_group(str(self.path), mode="r+", use_consolidated=False)
            if self.finalized:
                self._unfinalize()
            done = self.done_blocks()
            markers = self._markers()
            failed = 0
            for index in np.flatnonzero(done):
                in_block = int((self._bucket(index)[TRACK_STATUS.name][...] == FAILED).sum())
                if in_block:
                    markers[index] = 0
                    failed += in_block
            return failed

    def _unfinalize(self) -> None:
        """Copy every block of the flat arrays back into its bucket, then mark the store incomplete."""
        flat = {spec.name: self.group[spec.name] for spec in SHARED_ARRAYS}
        window_track = flat[WINDOW_TRACK.name][...]
        frames = bool(self.attrs.frame_layers)
        offsets = self.group[FRAME_OFFSETS.name][...] if frames else None
        for index in range(self.num_blocks):
            tracks = self.block_range(index)
            first, last = np.searchsorted(window_track, [tracks.start, tracks.stop])
            block = Block(index, flat[TRACK_STATUS.name][tracks.start:tracks.stop],
                          flat[TRACK_ERROR.name][tracks.start:tracks.stop].tolist(),
                          flat[POOLED.name][first:last], window_track[first:last],
                          flat[WINDOW_START.name][first:last], flat[WINDOW_LENGTH.name][first:last])
            if offsets is not None:
                block.frames = self.group[FRAMES.name][offsets[first]:offsets[last]]
                block.frame_counts = np.diff(offsets[first:last + 1])
            self._write_bucket(block)
        layout = dataclasses.replace(read_layout(self.group, str(self.path)), finalized=False)
        self.group.attrs[LAYOUT_KEY] = dataclasses.asdict(layout)

    def block_record(self, index: int) -> tuple[np.ndarray, list[str]]:
        """A done block's track status and errors, from its bucket (before finalisation)."""
        bucket = self._bucket(index)
        return bucket[TRACK_STATUS.name][...], bucket[TRACK_ERROR.name][...].tolist()

    def _bucket(self, index: int) -> zarr.Group:
        return self.group[BUCKETS][f"{index:06d}"]

    def _finalize(self) -> None:
        frames = bool(self.attrs.frame_layers)
        names = [spec.name for spec in SHARED_ARRAYS]
        names += [FRAMES.name, FRAME_COUNTS.name] if frames else []
        with cf.ThreadPoolExecutor(FINALIZE_READERS, thread_name_prefix="finalize") as pool:
            buckets = list(pool.map(self._bucket, range(self.num_blocks)))

            def rows(bucket: zarr.Group) -> tuple[int, int]:  # windows and frames, from the arrays' metadata
                return bucket[POOLED.name].shape[0], bucket[FRAMES.name].shape[0] if frames else 0

            counts, frame_counts = zip(*pool.map(rows, buckets))
            flat = FlatArrays(self.group, sum(counts), self.attrs, self.num_tracks, sum(frame_counts))
            window_offset = frame_offset = 0
            for index, bucket in enumerate(_read_ahead(pool, buckets, names)):
                flat.write_tracks(self.block_range(index), window_offset, bucket[POOLED.name],
                                  bucket[WINDOW_TRACK.name], bucket[WINDOW_START.name], bucket[WINDOW_LENGTH.name],
                                  bucket[TRACK_STATUS.name], bucket[TRACK_ERROR.name].tolist())
                if frames:
                    flat.write_frames(window_offset, frame_offset, bucket[FRAMES.name], bucket[FRAME_COUNTS.name])
                window_offset += counts[index]
                frame_offset += frame_counts[index]
        flat.finish()
        mark_finalized(self.group, self.path)
        self._clean_up()


def _read_ahead(pool: cf.Executor, buckets: list[zarr.Group], names: list[str]) -> Iterator[dict[str, np.ndarray]]:
    """The arrays ``names`` of every bucket, in order, read by ``pool`` at most ``2 x FINALIZE_READERS`` buckets
    ahead (so memory stays bounded while object storage's per-request latency overlaps)."""
    def read(bucket: zarr.Group) -> dict[str, np.ndarray]:
        return {name: bucket[name][...] for name in names}

    for _, reading in submitted_ahead(buckets, lambda bucket: pool.submit(read, bucket), 2 * FINALIZE_READERS):
        yield reading.result()
