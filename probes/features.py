"""Reading an extracted feature store (Zarr v3) into RAM once, as fp16.

The layout is the extractor's (``marblekit.extractor.store`` documents it in full); the probes use:

* ``track_id``     [T] str      the audio file's path relative to the dataset folder (the task's item id)
* ``track_status`` [T] uint8    1 = extracted; other tracks and their rows are ignored
* ``pooled``       [W, L+1, D] fp16  time-mean of every hidden state (index 0 = pre-transformer) per window
* ``window_track`` [W] int32    the track of each window; ``window_start`` / ``window_length`` [W] seconds
* with ``--frames``: ``frames`` [F, K, D] fp16 and ``frame_offsets`` [W+1] int64 (window w owns
  ``frames[frame_offsets[w]:frame_offsets[w+1]]``); frame-level probes need every layer (K = L+1), and a
  track's frames are its windows' frames in time order (tasks that need frames use one window per clip)
* ``attrs["marblekit"]``: model, sample_rate, frame_rate, window_s, hop_s, crop_s (optional), layers,
  frame_layers (with frames), random_init, precision.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

REQUIRED_ATTRS = ("model", "sample_rate", "frame_rate", "window_s", "hop_s", "layers", "random_init", "precision")


@dataclass
class PooledFeatures:
    """Window-level features of the extracted tracks."""

    track_ids: list[str]
    pooled: np.ndarray
    window_track: np.ndarray
    attrs: dict[str, Any]
    window_length: np.ndarray | None = None
    level: str = "pooled"

    def track_rows(self) -> list[np.ndarray]:
        """Row indices of each track's windows, in time order."""
        order = np.argsort(self.window_track, kind="stable")
        bounds = np.searchsorted(self.window_track[order], np.arange(len(self.track_ids) + 1))
        return [order[bounds[t]:bounds[t + 1]] for t in range(len(self.track_ids))]

    @property
    def rows(self) -> np.ndarray:
        return self.pooled


@dataclass
class FrameFeatures:
    """Frame-level features of the extracted tracks (CSR over tracks)."""

    track_ids: list[str]
    frames: np.ndarray
    offsets: np.ndarray
    attrs: dict[str, Any]
    level: str = "frames"

    def track_rows(self) -> list[np.ndarray]:
        return [np.arange(self.offsets[t], self.offsets[t + 1]) for t in range(len(self.track_ids))]

    @property
    def rows(self) -> np.ndarray:
        return self.frames


def _array(group: Any, name: str, source: str) -> np.ndarray:
    if name not in group:
        raise ValueError(f"store {source}: missing array {name!r} (see marblekit.probes.features for the layout)")
    return group[name][...]


def read_store(path: str | Path, level: str = "pooled") -> PooledFeatures | FrameFeatures:
    """Read a store written by the extractor at ``level`` ('pooled' or 'frames'); only tracks with status 1
    keep their rows."""
    import zarr

    source = str(path)
    if not Path(path).exists():
        raise FileNotFoundError(f"store {source} not found")
    group = zarr.open_group(source, mode="r")
    attrs = dict(group.attrs.get("marblekit") or {})
    missing = [k for k in REQUIRED_ATTRS if k not in attrs]
    if missing:
        raise ValueError(f"store {source}: attrs['marblekit'] lacks {', '.join(missing)}")
    track_ids = [str(t) for t in _array(group, "track_id", source)]
    done = _array(group, "track_status", source) == 1
    window_track = _array(group, "window_track", source).astype(np.int64)
    if level == "frames":
        return _read_frames(group, attrs, track_ids, done, window_track, source)
    keep = done[window_track]
    length = group["window_length"][...][keep] if "window_length" in group else None
    features = PooledFeatures(track_ids, _array(group, "pooled", source)[keep].astype(np.float16, copy=False),
                              window_track[keep], attrs, length)
    return features if done.all() else _only_done(features, done)


def _read_frames(group: Any, attrs: dict[str, Any], track_ids: list[str], done: np.ndarray,
                 window_track: np.ndarray, source: str) -> FrameFeatures:
    """Per-track CSR of frames: each done track's windows, in time order, concatenated."""
    if "frames" not in group:
        raise ValueError(f"store {source}: holds no frame-level features; extract with --frames")
    stored, wanted = attrs.get("frame_layers"), attrs["layers"]
    if stored is not None and list(stored) != list(wanted):
        raise ValueError(f"store {source}: frames hold layers {list(stored)} but frame-level probes need every "
                         f"layer {list(wanted)}; extract with --frames and no --layers")
    offsets = _array(group, "frame_offsets", source).astype(np.int64)
    starts = _array(group, "window_start", source)
    frames = group["frames"]
    kept_ids, pieces, track_offsets = [], [], [0]
    for t in np.flatnonzero(done):
        windows = np.flatnonzero(window_track == t)
        total = track_offsets[-1]
        for w in windows[np.argsort(starts[windows], kind="stable")]:
            pieces.append(frames[offsets[w]:offsets[w + 1]])
            total += offsets[w + 1] - offsets[w]
        kept_ids.append(track_ids[t])
        track_offsets.append(total)
    stacked = np.concatenate(pieces).astype(np.float16, copy=False) if pieces else np.zeros((0, 1, 1), np.float16)
    return FrameFeatures(kept_ids, stacked, np.array(track_offsets), attrs)


def _only_done(features: PooledFeatures, done: np.ndarray) -> PooledFeatures:
    """Renumber tracks so that only extracted ones remain."""
    new_index = np.cumsum(done) - 1
    features.window_track = new_index[features.window_track]
    features.track_ids = [t for t, ok in zip(features.track_ids, done) if ok]
    return features


def write_store(path: str | Path, track_ids: list[str], attrs: dict[str, Any], *, pooled: np.ndarray,
                window_track: np.ndarray, window_start: np.ndarray | None = None,
                window_length: np.ndarray | None = None, frames: np.ndarray | None = None,
                frame_offsets: np.ndarray | None = None, track_status: np.ndarray | None = None) -> None:
    """Write the arrays above in the extractor's layout (tests, benchmarks and small experiments; the
    extractor writes real stores block by block)."""
    import zarr

    window_track = np.asarray(window_track)
    group = zarr.open_group(str(path), mode="w")
    group.create_array("track_id", shape=(len(track_ids),), dtype=str)[:] = np.array(track_ids)
    status = np.ones(len(track_ids), np.uint8) if track_status is None else np.asarray(track_status, np.uint8)
    group.create_array("track_status", data=status)
    if window_start is None:  # consecutive windows of a track, one second apart
        window_start = np.zeros(len(window_track))
        for t in np.unique(window_track):
            window_start[window_track == t] = np.arange((window_track == t).sum())
    arrays = {"pooled": (pooled, np.float16), "window_track": (window_track, np.int32),
              "window_start": (window_start, np.float64), "window_length": (window_length, np.float64),
              "frames": (frames, np.float16), "frame_offsets": (frame_offsets, np.int64)}
    for name, (values, dtype) in arrays.items():
        if values is not None:
            group.create_array(name, data=np.asarray(values, dtype))
    group.attrs["marblekit"] = attrs
