"""A feature store opened for probing: the rows of every extracted track, read piecewise as fp16.

The layout is ``marblekit.core.store_layout``; the probes use ``track_id`` (the item id: the audio file's
path relative to the dataset folder), ``track_status`` (only done tracks count), ``pooled`` [W, C] with
``window_track`` / ``window_start`` / ``window_length``, and with ``--frames`` ``frames`` [F, C_f] with
``frame_offsets`` (frame-level probes run on every stored frame layer, which must include the weighted sum's;
a track's frames are put on its audio's frame grid, :func:`time_aligned_rows`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from marblekit.core.layers import LayerColumns
from marblekit.core.store_layout import (DONE, FRAME_OFFSETS, FRAMES, POOLED, TRACK_STATUS, WINDOW_LENGTH, WINDOW_START,
                                         WINDOW_TRACK, StoreAttrs, StoreReader, flat_rows)
from marblekit.core.store_location import StoreLocation

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
    attrs: StoreAttrs
    track_ids: list[str]
    array: Any  # the zarr array holding the rows: pooled [W, C] or frames [F, C_f] (format 1: [rows, L, D])
    track_rows: list[np.ndarray]

    @property
    def columns(self) -> LayerColumns:
        """The layers of this level's rows and where their columns are."""
        return self.attrs.frame_columns if self.level == "frames" else self.attrs.columns

    def read_spans(self, rows: np.ndarray) -> Any:
        """Yield (index into ``rows``, fp16 [k, C]) for sorted unique store ``rows``, reading one contiguous
        span of at most ``READ_SPAN_BYTES`` at a time."""
        chunk = int(self.array.chunks[0])
        span = max(1, READ_SPAN_BYTES // max(self.columns.width * 2, 1) // chunk) * chunk
        first = 0
        while first < len(rows):
            begin = int(rows[first]) // span * span
            last = int(np.searchsorted(rows, begin + span))
            block = self.array[begin:int(rows[last - 1]) + 1]
            yield np.arange(first, last), flat_rows(np.asarray(block[rows[first:last] - begin], np.float16))
            first = last


def read_store(path: StoreLocation, level: str = "pooled") -> StoreFeatures:
    """Open a store written by the extractor at ``level`` ('pooled' or 'frames') and index its rows; only
    done tracks keep their rows. Reads the small index arrays, not the features."""
    reader = StoreReader(path)
    source = str(path)
    track_ids = reader.track_ids()
    done = np.flatnonzero(reader.read(TRACK_STATUS) == DONE)
    windows = _windows_of_tracks(reader.read(WINDOW_TRACK).astype(np.int64), len(track_ids))
    kept_ids = [track_ids[t] for t in done]
    if level == "frames":
        return _frame_rows(reader, kept_ids, [windows[t] for t in done])
    return StoreFeatures(source, "pooled", reader.attrs, kept_ids, reader.array(POOLED), [windows[t] for t in done])


def _windows_of_tracks(window_track: np.ndarray, n_tracks: int) -> list[np.ndarray]:
    """Store rows of each track's windows, in store order (the extractor writes them in time order)."""
    order = np.argsort(window_track, kind="stable")
    bounds = np.searchsorted(window_track[order], np.arange(n_tracks + 1))
    return [order[bounds[t]:bounds[t + 1]] for t in range(n_tracks)]


def time_aligned_rows(starts: np.ndarray, lengths: np.ndarray, first: np.ndarray, stop: np.ndarray,
                      frame_rate: float) -> np.ndarray:
    """A track's stored frame rows on the audio's own frame grid: row ``k`` is the stored frame nearest to time
    ``(k + 0.5) / frame_rate``, for ``round(end * frame_rate)`` frames.

    A backbone gives a window of ``n`` seconds slightly fewer than ``n * frame_rate`` frames (MERT: 2,249 for 30 s,
    its convolutions do not pad), so concatenating windows would slip a frame per window. Here each window's
    frames are spread evenly over its own span (``starts``, ``lengths``, stored rows ``first``..``stop``), the
    window holding a time gives its frame, and the error stays under one frame however long the track is."""
    if len(starts) == 0:
        return np.zeros(0, np.int64)
    order = np.argsort(starts, kind="stable")
    starts, lengths, first, stop = starts[order], lengths[order], first[order], stop[order]
    end = float(np.max(starts + lengths))
    centres = (np.arange(int(round(end * frame_rate))) + 0.5) / frame_rate
    window = np.clip(np.searchsorted(starts, centres, side="right") - 1, 0, len(starts) - 1)
    count = stop[window] - first[window]
    position = np.floor((centres - starts[window]) / lengths[window] * count).astype(np.int64)
    return first[window] + np.clip(position, 0, count - 1)


def _frame_rows(reader: StoreReader, track_ids: list[str], windows: list[np.ndarray]) -> StoreFeatures:
    """Each kept track's frame rows on its audio's frame grid (:func:`time_aligned_rows`)."""
    attrs = reader.attrs
    if not reader.has(FRAMES):
        raise ValueError(f"store {reader.path}: holds no frame-level features; extract with --frames")
    missing = sorted(set(attrs.weighted_layers) - set(attrs.frame_layers))
    if missing:
        raise ValueError(f"store {reader.path}: frames hold layers {list(attrs.frame_layers)} but frame-level "
                         f"probes need every layer with frames, and the weighted sum's {list(attrs.weighted_layers)}"
                         f" are not all there; extract with --frames and no --layers")
    offsets = reader.read(FRAME_OFFSETS).astype(np.int64)
    starts = reader.read(WINDOW_START)
    lengths = reader.read(WINDOW_LENGTH) if reader.has(WINDOW_LENGTH) else np.diff(offsets) / float(attrs.frame_rate)
    rows = [time_aligned_rows(starts[w], lengths[w], offsets[w], offsets[w + 1], float(attrs.frame_rate))
            for w in windows]
    return StoreFeatures(str(reader.path), "frames", attrs, track_ids, reader.array(FRAMES), rows)
