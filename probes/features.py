"""Opening an extracted feature store (Zarr v3) and reading its rows piecewise, as fp16.

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
#: rows read from the store per call while loading: a few chunks, so memory stays bounded by this span
READ_SPAN_BYTES = 256 << 20


@dataclass
class StoreFeatures:
    """An open store at one level ('pooled' windows or 'frames'), its rows not read yet.

    ``track_ids`` are the extracted (status 1) tracks only; ``track_rows[t]`` are the store rows of track t
    in time order (its windows, or its windows' frames). Rows are read on demand with ``read_spans``, a few
    chunks at a time, so a store larger than RAM can be loaded piecewise (``marblekit.probes.matrix``).
    """

    source: str
    level: str
    attrs: dict[str, Any]
    track_ids: list[str]
    array: Any  # the zarr array holding the rows: pooled [W, L+1, D] or frames [F, L+1, D]
    track_rows: list[np.ndarray]
    window_length: np.ndarray | None = None  # pooled level: seconds of each store row

    @property
    def n_hidden_states(self) -> int:
        return int(self.array.shape[1])

    @property
    def dim(self) -> int:
        return int(self.array.shape[2])

    def read_spans(self, rows: np.ndarray) -> Any:
        """Yield (index into ``rows``, fp16 [k, L+1, D]) for sorted unique store ``rows``, reading one
        contiguous span of at most ``READ_SPAN_BYTES`` at a time."""
        chunk = int(self.array.chunks[0])
        span = max(1, READ_SPAN_BYTES // max(self.n_hidden_states * self.dim * 2, 1) // chunk) * chunk
        first = 0
        while first < len(rows):
            begin = int(rows[first]) // span * span
            last = int(np.searchsorted(rows, begin + span))
            block = self.array[begin:int(rows[last - 1]) + 1]
            yield np.arange(first, last), np.asarray(block[rows[first:last] - begin], np.float16)
            first = last


def _require(group: Any, name: str, source: str) -> Any:
    """The zarr array ``name`` of the store, unread; a store without it is refused."""
    if name not in group:
        raise ValueError(f"store {source}: missing array {name!r} (see marblekit.probes.features for the layout)")
    return group[name]


def _array(group: Any, name: str, source: str) -> np.ndarray:
    return _require(group, name, source)[...]


def read_store(path: str | Path, level: str = "pooled") -> StoreFeatures:
    """Open a store written by the extractor at ``level`` ('pooled' or 'frames') and index its rows; only
    tracks with status 1 keep their rows. Reads the small index arrays, not the features."""
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
    done = np.flatnonzero(_array(group, "track_status", source) == 1)
    window_track = _array(group, "window_track", source).astype(np.int64)
    windows = _windows_of_tracks(window_track, len(track_ids))
    kept_ids = [track_ids[t] for t in done]
    if level == "frames":
        return _frame_rows(group, attrs, kept_ids, [windows[t] for t in done], source)
    length = group["window_length"][...] if "window_length" in group else None
    return StoreFeatures(source, "pooled", attrs, kept_ids, _require(group, "pooled", source),
                         [windows[t] for t in done], length)


def _windows_of_tracks(window_track: np.ndarray, n_tracks: int) -> list[np.ndarray]:
    """Store rows of each track's windows, in store order (the extractor writes them in time order)."""
    order = np.argsort(window_track, kind="stable")
    bounds = np.searchsorted(window_track[order], np.arange(n_tracks + 1))
    return [order[bounds[t]:bounds[t + 1]] for t in range(n_tracks)]


def _frame_rows(group: Any, attrs: dict[str, Any], track_ids: list[str], windows: list[np.ndarray],
                source: str) -> StoreFeatures:
    """Each kept track's frame rows: its windows' frames, windows in time order."""
    if "frames" not in group:
        raise ValueError(f"store {source}: holds no frame-level features; extract with --frames")
    stored, wanted = attrs.get("frame_layers"), attrs["layers"]
    if stored is not None and list(stored) != list(wanted):
        raise ValueError(f"store {source}: frames hold layers {list(stored)} but frame-level probes need every "
                         f"layer {list(wanted)}; extract with --frames and no --layers")
    offsets = _array(group, "frame_offsets", source).astype(np.int64)
    starts = _array(group, "window_start", source)
    rows = []
    for track_windows in windows:
        ordered = track_windows[np.argsort(starts[track_windows], kind="stable")]
        rows.append(np.concatenate([np.arange(offsets[w], offsets[w + 1]) for w in ordered])
                    if len(ordered) else np.zeros(0, np.int64))
    return StoreFeatures(source, "frames", attrs, track_ids, group["frames"], rows)


def write_store(path: str | Path, track_ids: list[str], attrs: dict[str, Any], *, pooled: np.ndarray | None,
                window_track: np.ndarray, window_start: np.ndarray | None = None,
                window_length: np.ndarray | None = None, frames: np.ndarray | None = None,
                frame_offsets: np.ndarray | None = None, track_status: np.ndarray | None = None) -> None:
    """Write the arrays above in the extractor's layout (tests, benchmarks and small experiments; the
    extractor writes real stores block by block). ``pooled`` None: the caller writes it, e.g. chunk by chunk."""
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
