from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Model(_message.Message):
    __slots__ = ("name", "backbone", "sample_rate", "frame_rate", "num_hidden_states", "layer_dims", "layer_names", "precision", "random_init", "weights", "checkpoint_sha256", "onnx_sha256", "normalize_input", "default_window_s", "default_hop_s", "min_window_s", "max_window_s")
    NAME_FIELD_NUMBER: _ClassVar[int]
    BACKBONE_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    FRAME_RATE_FIELD_NUMBER: _ClassVar[int]
    NUM_HIDDEN_STATES_FIELD_NUMBER: _ClassVar[int]
    LAYER_DIMS_FIELD_NUMBER: _ClassVar[int]
    LAYER_NAMES_FIELD_NUMBER: _ClassVar[int]
    PRECISION_FIELD_NUMBER: _ClassVar[int]
    RANDOM_INIT_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_SHA256_FIELD_NUMBER: _ClassVar[int]
    ONNX_SHA256_FIELD_NUMBER: _ClassVar[int]
    NORMALIZE_INPUT_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_WINDOW_S_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_HOP_S_FIELD_NUMBER: _ClassVar[int]
    MIN_WINDOW_S_FIELD_NUMBER: _ClassVar[int]
    MAX_WINDOW_S_FIELD_NUMBER: _ClassVar[int]
    name: str
    backbone: str
    sample_rate: int
    frame_rate: float
    num_hidden_states: int
    layer_dims: _containers.RepeatedScalarFieldContainer[int]
    layer_names: _containers.RepeatedScalarFieldContainer[str]
    precision: str
    random_init: bool
    weights: str
    checkpoint_sha256: str
    onnx_sha256: str
    normalize_input: bool
    default_window_s: float
    default_hop_s: float
    min_window_s: float
    max_window_s: float
    def __init__(self, name: _Optional[str] = ..., backbone: _Optional[str] = ..., sample_rate: _Optional[int] = ..., frame_rate: _Optional[float] = ..., num_hidden_states: _Optional[int] = ..., layer_dims: _Optional[_Iterable[int]] = ..., layer_names: _Optional[_Iterable[str]] = ..., precision: _Optional[str] = ..., random_init: bool = ..., weights: _Optional[str] = ..., checkpoint_sha256: _Optional[str] = ..., onnx_sha256: _Optional[str] = ..., normalize_input: bool = ..., default_window_s: _Optional[float] = ..., default_hop_s: _Optional[float] = ..., min_window_s: _Optional[float] = ..., max_window_s: _Optional[float] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[Model]
    def __init__(self, models: _Optional[_Iterable[_Union[Model, _Mapping]]] = ...) -> None: ...

class Tensor(_message.Message):
    __slots__ = ("shape", "dtype", "data")
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    shape: _containers.RepeatedScalarFieldContainer[int]
    dtype: str
    data: bytes
    def __init__(self, shape: _Optional[_Iterable[int]] = ..., dtype: _Optional[str] = ..., data: _Optional[bytes] = ...) -> None: ...

class PcmFormat(_message.Message):
    __slots__ = ("sample_rate", "channels")
    SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    sample_rate: int
    channels: int
    def __init__(self, sample_rate: _Optional[int] = ..., channels: _Optional[int] = ...) -> None: ...

class EmbedOptions(_message.Message):
    __slots__ = ("model", "layers", "frames", "window_s", "hop_s", "crop_s")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    WINDOW_S_FIELD_NUMBER: _ClassVar[int]
    HOP_S_FIELD_NUMBER: _ClassVar[int]
    CROP_S_FIELD_NUMBER: _ClassVar[int]
    model: str
    layers: _containers.RepeatedScalarFieldContainer[int]
    frames: bool
    window_s: float
    hop_s: float
    crop_s: float
    def __init__(self, model: _Optional[str] = ..., layers: _Optional[_Iterable[int]] = ..., frames: bool = ..., window_s: _Optional[float] = ..., hop_s: _Optional[float] = ..., crop_s: _Optional[float] = ...) -> None: ...

class EmbedRequest(_message.Message):
    __slots__ = ("options", "encoded", "pcm", "pcm_format")
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    ENCODED_FIELD_NUMBER: _ClassVar[int]
    PCM_FIELD_NUMBER: _ClassVar[int]
    PCM_FORMAT_FIELD_NUMBER: _ClassVar[int]
    options: EmbedOptions
    encoded: bytes
    pcm: bytes
    pcm_format: PcmFormat
    def __init__(self, options: _Optional[_Union[EmbedOptions, _Mapping]] = ..., encoded: _Optional[bytes] = ..., pcm: _Optional[bytes] = ..., pcm_format: _Optional[_Union[PcmFormat, _Mapping]] = ...) -> None: ...

class StreamHeader(_message.Message):
    __slots__ = ("options", "pcm", "pcm_format")
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    PCM_FIELD_NUMBER: _ClassVar[int]
    PCM_FORMAT_FIELD_NUMBER: _ClassVar[int]
    options: EmbedOptions
    pcm: bool
    pcm_format: PcmFormat
    def __init__(self, options: _Optional[_Union[EmbedOptions, _Mapping]] = ..., pcm: bool = ..., pcm_format: _Optional[_Union[PcmFormat, _Mapping]] = ...) -> None: ...

class EmbedStreamRequest(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: StreamHeader
    chunk: bytes
    def __init__(self, header: _Optional[_Union[StreamHeader, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class EmbedResponse(_message.Message):
    __slots__ = ("model", "layers", "frame_rate", "sample_rate", "random_init", "window_start", "window_length", "pooled", "track_pooled", "frames", "frame_offsets", "cache_hit", "content_sha256", "audio_seconds")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    FRAME_RATE_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    RANDOM_INIT_FIELD_NUMBER: _ClassVar[int]
    WINDOW_START_FIELD_NUMBER: _ClassVar[int]
    WINDOW_LENGTH_FIELD_NUMBER: _ClassVar[int]
    POOLED_FIELD_NUMBER: _ClassVar[int]
    TRACK_POOLED_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    FRAME_OFFSETS_FIELD_NUMBER: _ClassVar[int]
    CACHE_HIT_FIELD_NUMBER: _ClassVar[int]
    CONTENT_SHA256_FIELD_NUMBER: _ClassVar[int]
    AUDIO_SECONDS_FIELD_NUMBER: _ClassVar[int]
    model: str
    layers: _containers.RepeatedScalarFieldContainer[int]
    frame_rate: float
    sample_rate: int
    random_init: bool
    window_start: _containers.RepeatedScalarFieldContainer[float]
    window_length: _containers.RepeatedScalarFieldContainer[float]
    pooled: Tensor
    track_pooled: Tensor
    frames: Tensor
    frame_offsets: _containers.RepeatedScalarFieldContainer[int]
    cache_hit: bool
    content_sha256: str
    audio_seconds: float
    def __init__(self, model: _Optional[str] = ..., layers: _Optional[_Iterable[int]] = ..., frame_rate: _Optional[float] = ..., sample_rate: _Optional[int] = ..., random_init: bool = ..., window_start: _Optional[_Iterable[float]] = ..., window_length: _Optional[_Iterable[float]] = ..., pooled: _Optional[_Union[Tensor, _Mapping]] = ..., track_pooled: _Optional[_Union[Tensor, _Mapping]] = ..., frames: _Optional[_Union[Tensor, _Mapping]] = ..., frame_offsets: _Optional[_Iterable[int]] = ..., cache_hit: bool = ..., content_sha256: _Optional[str] = ..., audio_seconds: _Optional[float] = ...) -> None: ...

class LookupRequest(_message.Message):
    __slots__ = ("store", "track_ids", "layers", "windows")
    STORE_FIELD_NUMBER: _ClassVar[int]
    TRACK_IDS_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    WINDOWS_FIELD_NUMBER: _ClassVar[int]
    store: str
    track_ids: _containers.RepeatedScalarFieldContainer[str]
    layers: _containers.RepeatedScalarFieldContainer[int]
    windows: bool
    def __init__(self, store: _Optional[str] = ..., track_ids: _Optional[_Iterable[str]] = ..., layers: _Optional[_Iterable[int]] = ..., windows: bool = ...) -> None: ...

class TrackFeatures(_message.Message):
    __slots__ = ("track_id", "done", "error", "track_pooled", "pooled", "window_start", "window_length")
    TRACK_ID_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    TRACK_POOLED_FIELD_NUMBER: _ClassVar[int]
    POOLED_FIELD_NUMBER: _ClassVar[int]
    WINDOW_START_FIELD_NUMBER: _ClassVar[int]
    WINDOW_LENGTH_FIELD_NUMBER: _ClassVar[int]
    track_id: str
    done: bool
    error: str
    track_pooled: Tensor
    pooled: Tensor
    window_start: _containers.RepeatedScalarFieldContainer[float]
    window_length: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, track_id: _Optional[str] = ..., done: bool = ..., error: _Optional[str] = ..., track_pooled: _Optional[_Union[Tensor, _Mapping]] = ..., pooled: _Optional[_Union[Tensor, _Mapping]] = ..., window_start: _Optional[_Iterable[float]] = ..., window_length: _Optional[_Iterable[float]] = ...) -> None: ...

class LookupResponse(_message.Message):
    __slots__ = ("model", "layers", "random_init", "tracks")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    RANDOM_INIT_FIELD_NUMBER: _ClassVar[int]
    TRACKS_FIELD_NUMBER: _ClassVar[int]
    model: str
    layers: _containers.RepeatedScalarFieldContainer[int]
    random_init: bool
    tracks: _containers.RepeatedCompositeFieldContainer[TrackFeatures]
    def __init__(self, model: _Optional[str] = ..., layers: _Optional[_Iterable[int]] = ..., random_init: bool = ..., tracks: _Optional[_Iterable[_Union[TrackFeatures, _Mapping]]] = ...) -> None: ...
