"""Reading an extracted feature store (Zarr v3) into RAM once, as fp16.

Store layout (one group per backbone and dataset extraction):

* ``track_id``     [T] str      the audio file's path relative to the dataset folder (the task's item id)
* ``track_status`` [T] uint8    1 = extracted; other tracks and their rows are ignored
* pooled stores:
  ``pooled``       [W, L+1, D] fp16  time-mean of every hidden state (index 0 = pre-transformer) per window
  ``window_track`` [W] int32         the track of each window, windows of a track in time order
  ``window_seconds`` [W] float32     optional: each window's length (needed to drop short windows)
* frame stores:
  ``frames``       [F, L+1, D] fp16  every frame of every track at the backbone frame rate
  ``frame_offsets`` [T+1] int64      CSR: track t owns ``frames[frame_offsets[t]:frame_offsets[t+1]]``
* ``attrs["marblekit"]``: model, sample_rate, frame_rate, window_s, hop_s (None = whole file in one
  pass), crop_s (optional), layers, random_init, precision.
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
    window_seconds: np.ndarray | None = None
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


def read_store(path: str | Path) -> PooledFeatures | FrameFeatures:
    """Read a store written by the extractor; only tracks with status 1 keep their rows."""
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
    if "pooled" in group:
        pooled = _array(group, "pooled", source)
        window_track = _array(group, "window_track", source).astype(np.int64)
        keep = done[window_track]
        seconds = group["window_seconds"][...][keep] if "window_seconds" in group else None
        features: PooledFeatures | FrameFeatures = PooledFeatures(
            track_ids, pooled[keep].astype(np.float16, copy=False), window_track[keep], attrs, seconds)
    elif "frames" in group:
        offsets = _array(group, "frame_offsets", source).astype(np.int64)
        frames = group["frames"]
        kept_ids, pieces, new_offsets = [], [], [0]
        for t in np.flatnonzero(done):
            pieces.append(frames[offsets[t]:offsets[t + 1]])
            kept_ids.append(track_ids[t])
            new_offsets.append(new_offsets[-1] + offsets[t + 1] - offsets[t])
        stacked = np.concatenate(pieces).astype(np.float16, copy=False) if pieces else np.zeros((0, 1, 1), np.float16)
        return FrameFeatures(kept_ids, stacked, np.array(new_offsets), attrs)
    else:
        raise ValueError(f"store {source}: holds neither 'pooled' nor 'frames'")
    if not done.all():
        features = _only_done(features, done)
    return features


def _only_done(features: PooledFeatures, done: np.ndarray) -> PooledFeatures:
    """Renumber tracks so that only extracted ones remain."""
    new_index = np.cumsum(done) - 1
    features.window_track = new_index[features.window_track]
    features.track_ids = [t for t, ok in zip(features.track_ids, done) if ok]
    return features


def write_store(path: str | Path, track_ids: list[str], attrs: dict[str, Any], *, pooled: np.ndarray | None = None,
                window_track: np.ndarray | None = None, window_seconds: np.ndarray | None = None,
                frames: np.ndarray | None = None, frame_offsets: np.ndarray | None = None,
                track_status: np.ndarray | None = None) -> None:
    """Write a store in the layout above (tests, benchmarks and small experiments; the extractor writes
    the real ones in blocks)."""
    import zarr

    group = zarr.open_group(str(path), mode="w")
    group.create_array("track_id", shape=(len(track_ids),), dtype=str)[:] = np.array(track_ids)
    status = np.ones(len(track_ids), np.uint8) if track_status is None else np.asarray(track_status, np.uint8)
    group.create_array("track_status", data=status)
    arrays = {"pooled": (pooled, np.float16), "window_track": (window_track, np.int32),
              "window_seconds": (window_seconds, np.float32), "frames": (frames, np.float16),
              "frame_offsets": (frame_offsets, np.int64)}
    for name, (values, dtype) in arrays.items():
        if values is not None:
            group.create_array(name, data=np.asarray(values, dtype))
    group.attrs["marblekit"] = attrs
