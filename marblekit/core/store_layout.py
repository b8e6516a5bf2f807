"""The feature store's layout: one Zarr v3 group per (model, dataset extraction), readable with plain zarr.

The extractor writes it (through :func:`create_store`, :class:`FlatArrays` and :func:`mark_finalized`), the
probes and every other reader open it with :class:`StoreReader`, and tests and benchmarks write small stores
with :func:`write_store`, the same code path in one call. ``W`` windows, ``T`` tracks, ``C`` the widths of the
stored hidden states side by side (``attrs["marblekit"]["layer_dims"]``; hidden state ``layers[k]`` owns columns
``sum(layer_dims[:k])`` to ``sum(layer_dims[:k+1])``, :class:`marblekit.core.layers.LayerColumns`), ``C_f`` those
of the frame layers::

    pooled         [W, C]     float16   time-mean of every hidden state, one row per window
    window_track   [W]        int32     row -> track index
    window_start   [W]        float64   window start in seconds, from the (cropped) clip start
    window_length  [W]        float64   window length in seconds (the tail window is shorter)
    track_id       [T]        str       catalog ids, catalog order
    track_status   [T]        uint8     0 pending, 1 done, 2 failed
    track_error    [T]        str       why a track failed ("" when done)
    track_pooled   [T, C]     float16   mean of the track's window rows (NaN for failed tracks)
    frames         [F, C_f]   float16   (--frames) every frame of the chosen frame layers, window by window
    frame_offsets  [W + 1]    int64     (--frames) window w's frames are frames[offsets[w]:offsets[w+1]]
    attrs["marblekit"]         :class:`StoreAttrs` (what the features are and how they were made)
    attrs["marblekit_layout"]  :class:`Layout` (how the writer cut the work; ``finalized`` once complete)

A store is readable once ``finalized`` is set: the writer sets it after every flat array is complete.
Format 1 stores (marblekit 0.1: ``pooled [W, L, D]``, ``frames [F, K, D]``, one width) stay readable: their
feature arrays read as the same rows flattened to ``[W, L*D]``.
"""

from __future__ import annotations

import codecs
import dataclasses
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import zarr

from marblekit import __version__
from marblekit.core.layers import LayerColumns
from marblekit.core.store_location import StoreLocation, exists

#: the layout described above; a store with a larger number was written by a newer marblekit
FORMAT_VERSION = 2
ATTRS_KEY = "marblekit"
LAYOUT_KEY = "marblekit_layout"
PENDING, DONE, FAILED = 0, 1, 2
ROW_CHUNK = 512
FRAME_CHUNK = 1024
#: the per-block completion markers of a store being written (``done[k]`` = 1 once block k is written)
DONE_MARKERS = "done"

# Variable-length strings and consolidated metadata are not in the Zarr v3 core spec yet (zarr warns on every
# use), and the writer's lock directory is deliberately not a zarr node.
for _message in (".*StringDType.*", ".*does not have a Zarr V3 specification.*", ".*Consolidated metadata.*",
                 ".*is not recognized as a component of a Zarr hierarchy.*"):
    warnings.filterwarnings("ignore", message=_message)


def _percent_bytes(error: UnicodeError) -> tuple[str, int]:
    """Codec error handler: every byte that is not UTF-8 as ``%XX``."""
    raw = error.object[error.start:error.end]  # type: ignore[attr-defined]
    return "".join(f"%{byte:02X}" for byte in raw), error.end  # type: ignore[attr-defined]


codecs.register_error("marblekit-percent", _percent_bytes)


def storable_text(text: str) -> str:
    """``text`` as the valid UTF-8 the store's string arrays hold. File names may be any bytes (Python keeps
    the bytes that are not UTF-8 as surrogate escapes): those bytes become ``%XX``, everything else is kept."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        raw = text.encode("utf-8", "surrogateescape") if _only_escapes(text) else text.encode("utf-8", "surrogatepass")
        return raw.decode("utf-8", "marblekit-percent")


def _only_escapes(text: str) -> bool:
    return all(not 0xD800 <= ord(c) <= 0xDFFF or 0xDC80 <= ord(c) <= 0xDCFF for c in text)


@dataclass(frozen=True)
class ArraySpec:
    """One array of the layout: its name, dtype and dimension names."""

    name: str
    dtype: Any
    dims: tuple[str, ...]


POOLED = ArraySpec("pooled", "float16", ("window", "feature"))
WINDOW_TRACK = ArraySpec("window_track", "int32", ("window",))
WINDOW_START = ArraySpec("window_start", "float64", ("window",))
WINDOW_LENGTH = ArraySpec("window_length", "float64", ("window",))
TRACK_ID = ArraySpec("track_id", str, ("track",))
TRACK_STATUS = ArraySpec("track_status", "uint8", ("track",))
TRACK_ERROR = ArraySpec("track_error", str, ("track",))
TRACK_POOLED = ArraySpec("track_pooled", "float16", ("track", "feature"))
FRAMES = ArraySpec("frames", "float16", ("frame", "frame_feature"))
FRAME_OFFSETS = ArraySpec("frame_offsets", "int64", ("window_edge",))
#: the arrays whose rows are features on concatenated layer columns
FEATURE_ARRAYS = (POOLED, TRACK_POOLED, FRAMES)


def create_array(group: zarr.Group, spec: ArraySpec, shape: tuple[int, ...], chunks: tuple[int, ...],
                 **options: Any) -> zarr.Array:
    """A layout array in ``group`` (replacing one of the same name); float16 features stay uncompressed."""
    compressors = None if spec.dtype == "float16" else "auto"
    return group.create_array(spec.name, shape=shape, dtype=spec.dtype, chunks=chunks, compressors=compressors,
                              overwrite=True, dimension_names=spec.dims, **options)


@dataclass(frozen=True)
class StoreAttrs:
    """``attrs["marblekit"]``: everything needed to interpret the features and to refuse resuming a store
    with other settings. ``layers``: the hidden state of each column span of ``pooled``, ``layer_dims`` their
    widths; ``frame_layers``: those kept at frame level; ``weighted_layers``: those the weighted-sum probe
    mixes (one width)."""

    model: str
    sample_rate: int
    frame_rate: float
    window_s: float
    hop_s: float
    layers: tuple[int, ...]
    layer_dims: tuple[int, ...]
    random_init: bool
    precision: str
    backbone: str = ""
    weights: str = ""  # where the model's weights came from: "checkpoint", "random-init" or "none" (a fixed graph)
    onnx_sha256: str = ""
    crop_s: float | None = None
    normalize_input: bool = False
    normalize_windows: bool = False  # input z-normalised per window, not per clip (with normalize_input)
    frame_layers: tuple[int, ...] = ()
    weighted_layers: tuple[int, ...] = ()
    layer_names: tuple[str, ...] = ()
    min_window_s: float = 1.0
    store_dtype: str = "float16"
    pooling: str = "mean over frames"
    marblekit_version: str = __version__
    format_version: int = FORMAT_VERSION

    @property
    def columns(self) -> LayerColumns:
        """Where each stored hidden state sits in ``pooled`` / ``track_pooled``."""
        return LayerColumns(self.layers, self.layer_dims)

    @property
    def frame_columns(self) -> LayerColumns:
        """Where each frame layer sits in ``frames``."""
        return self.columns.select(self.frame_layers)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {key: list(getattr(self, key)) for key in _TUPLES}

    def settings(self) -> dict[str, Any]:
        """What must agree for two runs to write the same store (everything but the writer's version)."""
        return {key: value for key, value in self.to_json().items() if key != "marblekit_version"}

    @classmethod
    def from_json(cls, raw: dict[str, Any] | None, source: str) -> StoreAttrs:
        """Parse a store's attrs; stores from before the format version are version 1 (one width ``dim``,
        the weighted sum over every layer but the first)."""
        raw = dict(raw or {})
        if int(raw.get("format_version", 1)) == 1 and "dim" in raw and "layers" in raw:
            raw.setdefault("layer_dims", [raw["dim"]] * len(raw["layers"]))
            raw.setdefault("weighted_layers", raw["layers"][1:])
        names = {f.name for f in dataclasses.fields(cls)}
        required = [f.name for f in dataclasses.fields(cls)
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        missing = [name for name in required if name not in raw]
        if missing:
            raise ValueError(f"store {source}: attrs[{ATTRS_KEY!r}] lacks {', '.join(missing)} (expected the "
                             f"fields of marblekit.core.store_layout.StoreAttrs)")
        version = int(raw.get("format_version", 1))
        if version > FORMAT_VERSION:
            raise ValueError(f"store {source} has layout version {version}; this marblekit reads up to "
                             f"{FORMAT_VERSION}: upgrade marblekit")
        known = {key: value for key, value in raw.items() if key in names}
        known |= {key: tuple(known.get(key) or ()) for key in _TUPLES}
        known["format_version"] = version
        return cls(**known)


_TUPLES = ("layers", "layer_dims", "frame_layers", "weighted_layers", "layer_names")


def flat_rows(block: np.ndarray) -> np.ndarray:
    """Feature rows as ``[rows, columns]``: format 2's rows as they are, format 1's ``[rows, L, D]`` flattened."""
    return block.reshape(block.shape[0], -1)


@dataclass(frozen=True)
class Layout:
    """``attrs["marblekit_layout"]``: tracks per block (the writer's unit of work), blocks, and whether the
    flat arrays are complete."""

    block_tracks: int
    num_blocks: int
    finalized: bool = False


def create_store(path: StoreLocation, attrs: StoreAttrs, track_ids: list[str], layout: Layout) -> zarr.Group:
    """Write the track ids and then the attributes into the group at ``path`` (created when missing): the
    attributes come last, so their presence marks a complete creation."""
    group = zarr.open_group(str(path), mode="a", use_consolidated=False)
    ids = create_array(group, TRACK_ID, (len(track_ids),), (max(len(track_ids), 1),))
    ids[:] = np.array(track_ids, dtype=str)
    group.attrs.update({ATTRS_KEY: attrs.to_json(), LAYOUT_KEY: dataclasses.asdict(layout)})
    return group


def read_layout(group: zarr.Group, source: str) -> Layout:
    raw = group.attrs.get(LAYOUT_KEY)
    if raw is None:
        raise ValueError(f"{source} is not a marblekit store (no {LAYOUT_KEY} attribute)")
    return Layout(**raw)


def mark_finalized(group: zarr.Group, path: StoreLocation) -> None:
    """Declare the flat arrays complete; the writer then removes its scaffolding and consolidates the
    metadata (:func:`consolidate`), steps it can repeat when they were cut short."""
    layout = read_layout(group, str(path))
    group.attrs[LAYOUT_KEY] = dataclasses.asdict(dataclasses.replace(layout, finalized=True))


def consolidate(path: StoreLocation) -> None:
    """Consolidated metadata, so readers open the store with one read."""
    with warnings.catch_warnings():  # consolidated metadata is not in the Zarr v3 core spec yet
        warnings.simplefilter("ignore")
        zarr.consolidate_metadata(str(path))


class FlatArrays:
    """The final arrays, created at their full size and filled a run of whole tracks at a time."""

    def __init__(self, group: zarr.Group, windows: int, attrs: StoreAttrs, tracks: int, frames: int = 0):
        width = attrs.columns.width
        rows = (max(min(windows, ROW_CHUNK), 1),)
        self.pooled = create_array(group, POOLED, (windows, width), rows + (width,))
        self.window_track = create_array(group, WINDOW_TRACK, (windows,), rows)
        self.window_start = create_array(group, WINDOW_START, (windows,), rows)
        self.window_length = create_array(group, WINDOW_LENGTH, (windows,), rows)
        track_rows = (max(tracks, 1),)
        self.track_status = create_array(group, TRACK_STATUS, (tracks,), track_rows)
        self.track_error = create_array(group, TRACK_ERROR, (tracks,), track_rows)
        self.track_pooled = create_array(group, TRACK_POOLED, (tracks, width), (max(min(tracks, ROW_CHUNK), 1), width),
                                         fill_value=np.nan)
        self.status = np.zeros(tracks, dtype=np.uint8)
        self.errors = np.full(tracks, "", dtype=object)
        self.frames = self.frame_offsets = None
        if attrs.frame_layers:
            frame_width = attrs.frame_columns.width
            self.frames = create_array(group, FRAMES, (frames, frame_width),
                                       (max(min(frames, FRAME_CHUNK), 1), frame_width))
            self.frame_offsets = np.zeros(windows + 1, dtype=np.int64)
        self.group = group

    def write_tracks(self, tracks: range, window_offset: int, pooled: np.ndarray, window_track: np.ndarray,
                     window_start: np.ndarray, window_length: np.ndarray, status: np.ndarray,
                     errors: list[str]) -> None:
        """The windows of the consecutive ``tracks`` (all of their windows, in track then time order) at
        rows ``window_offset:``, and those tracks' status, errors and mean vectors."""
        if pooled.shape[1:] != self.pooled.shape[1:]:
            raise ValueError(f"pooled rows of shape {list(pooled.shape[1:])} do not fit the store's "
                             f"{list(self.pooled.shape[1:])} columns (the widths of its attrs' layers)")
        stop = window_offset + pooled.shape[0]
        if pooled.shape[0]:
            self.pooled[window_offset:stop] = pooled
            self.window_track[window_offset:stop] = window_track
            self.window_start[window_offset:stop] = window_start
            self.window_length[window_offset:stop] = window_length
            self.track_pooled[tracks.start:tracks.stop] = _track_means(pooled, window_track, tracks)
        self.status[tracks.start:tracks.stop] = status
        self.errors[tracks.start:tracks.stop] = list(errors)

    def write_frames(self, window_offset: int, frame_offset: int, frames: np.ndarray, counts: np.ndarray) -> None:
        """Frames of the windows at rows ``window_offset:`` (``counts`` frames each) at ``frame_offset:``."""
        if self.frames is None or self.frame_offsets is None:
            raise ValueError("this store keeps no frames (its attrs name no frame_layers)")
        if frames.shape[0]:
            self.frames[frame_offset:frame_offset + frames.shape[0]] = frames
        self.frame_offsets[window_offset + 1:window_offset + len(counts) + 1] = frame_offset + np.cumsum(counts)

    def finish(self) -> None:
        """Write the per-track tables and the frame offsets, gathered over every run of tracks."""
        if self.status.shape[0]:
            self.track_status[:] = self.status
            self.track_error[:] = np.array(self.errors.tolist(), dtype=str)
        if self.frame_offsets is not None:
            offsets = create_array(self.group, FRAME_OFFSETS, self.frame_offsets.shape, self.frame_offsets.shape)
            offsets[:] = self.frame_offsets


def _track_means(pooled: np.ndarray, window_track: np.ndarray, tracks: range) -> np.ndarray:
    """Mean window row of each track (float64 sums), NaN for a track without windows."""
    local = window_track - tracks.start
    sums = np.zeros((len(tracks),) + pooled.shape[1:], dtype=np.float64)
    np.add.at(sums, local, pooled.astype(np.float64))
    counts = np.bincount(local, minlength=len(tracks))
    means = np.full(sums.shape, np.nan, dtype=np.float16)
    has = counts > 0
    means[has] = (sums[has] / counts[has, None]).astype(np.float16)
    return means


def write_store(path: StoreLocation, attrs: StoreAttrs, track_ids: list[str], *, pooled: np.ndarray,
                window_track: np.ndarray, window_start: np.ndarray | None = None,
                window_length: np.ndarray | None = None, track_status: np.ndarray | None = None,
                track_error: list[str] | None = None, frames: np.ndarray | None = None,
                frame_counts: np.ndarray | None = None) -> None:
    """A complete store in one call, through the extractor's writer (tests, benchmarks, small experiments).
    Defaults: windows of a track one second apart and ``window_s`` long, every track done. ``pooled`` [W, C]
    (or [W, L, D] for layers of one width); ``frames`` [F, C_f] (or [F, K, D]) with ``frame_counts`` [W] (frames
    per window) when the attrs name frame layers."""
    window_track = np.asarray(window_track, np.int32)
    if window_start is None:
        window_start = np.zeros(len(window_track))
        for track in np.unique(window_track):
            window_start[window_track == track] = np.arange((window_track == track).sum())
    if window_length is None:
        window_length = np.full(len(window_track), attrs.window_s)
    status = np.full(len(track_ids), DONE, np.uint8) if track_status is None else np.asarray(track_status, np.uint8)
    group = create_store(path, attrs, track_ids, Layout(block_tracks=max(len(track_ids), 1), num_blocks=1))
    flat = FlatArrays(group, len(window_track), attrs, len(track_ids), 0 if frames is None else len(frames))
    flat.write_tracks(range(len(track_ids)), 0, flat_rows(np.asarray(pooled, np.float16)), window_track,
                      np.asarray(window_start, np.float64), np.asarray(window_length, np.float64), status,
                      track_error or [""] * len(track_ids))
    if frames is not None:
        flat.write_frames(0, 0, flat_rows(np.asarray(frames, np.float16)), np.asarray(frame_counts, np.int64))
    flat.finish()
    mark_finalized(group, path)
    consolidate(path)


@dataclass
class StoreView:
    """A finalised store as numpy arrays (frames stay lazy zarr arrays)."""

    attrs: StoreAttrs
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


@dataclass
class StoreReader:
    """A finalised store, opened read-only; arrays are read on demand. Refuses what is not a complete
    marblekit store, saying what is wrong and how to finish it."""

    path: StoreLocation
    group: zarr.Group = field(init=False, repr=False)
    attrs: StoreAttrs = field(init=False)

    def __post_init__(self) -> None:
        if not exists(self.path):
            raise FileNotFoundError(f"store {self.path} not found")
        self.group = zarr.open_group(str(self.path), mode="r")
        layout = read_layout(self.group, str(self.path))
        if not layout.finalized:
            done = int(self.group[DONE_MARKERS][:].sum()) if DONE_MARKERS in self.group else 0
            raise ValueError(f"store {self.path} is unfinished: {done} of {layout.num_blocks} blocks done; "
                             f"run the same marblekit extract command again to complete it")
        self.attrs = StoreAttrs.from_json(self.group.attrs.get(ATTRS_KEY), str(self.path))

    def has(self, spec: ArraySpec) -> bool:
        return spec.name in self.group

    def array(self, spec: ArraySpec) -> zarr.Array:
        """The zarr array, unread; a store without it is refused."""
        if spec.name not in self.group:
            raise ValueError(f"store {self.path}: missing array {spec.name!r} (see marblekit.core.store_layout)")
        return self.group[spec.name]

    def read(self, spec: ArraySpec) -> np.ndarray:
        """The whole array; feature arrays as ``[rows, columns]`` whatever the format (:func:`flat_rows`)."""
        values = self.array(spec)[...]
        return flat_rows(values) if spec in FEATURE_ARRAYS else values

    def track_ids(self) -> list[str]:
        return [str(track) for track in self.read(TRACK_ID)]

    def status_counts(self) -> tuple[int, int]:
        """``(done, failed)`` tracks."""
        status = self.read(TRACK_STATUS)
        return int((status == DONE).sum()), int((status == FAILED).sum())

    def view(self) -> StoreView:
        """Every pooled-level array in numpy; frames (when stored) as the lazy array and its offsets."""
        arrays = (POOLED, WINDOW_TRACK, WINDOW_START, WINDOW_LENGTH, TRACK_ID, TRACK_STATUS, TRACK_ERROR,
                  TRACK_POOLED)
        view = StoreView(self.attrs, *(self.read(spec) for spec in arrays))
        if self.has(FRAMES):
            view.frames = self.array(FRAMES)
            view.frame_offsets = self.read(FRAME_OFFSETS)
        return view


def open_pooled(path: StoreLocation) -> StoreView:
    """A finalised store's arrays (see :meth:`StoreReader.view`)."""
    return StoreReader(path).view()
