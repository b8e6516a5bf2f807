"""The feature service: ``marblekit.features.v1.Features`` over gRPC, in front of Triton and the stores.

Audio is prepared exactly as the extractor prepares it (``marblekit.core.audio_input``, ``core.windows``),
windows of concurrent requests are batched into shared Triton calls (``serving.batcher``), answers are cached
by content (``serving.feature_cache``), and ``Lookup`` reads extracted stores without touching Triton. Triton
stays the inference engine: this service never runs a model itself.

Every bad request gets INVALID_ARGUMENT or NOT_FOUND with what was expected, and the service keeps serving.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

import grpc
import numpy as np

from marblekit.core.audio_input import AudioError, Preparation, assemble, stream_bytes, stream_pcm
from marblekit.core.layers import LayerColumns
from marblekit.core.served_model import FRAMES, POOLED, ServedModel
from marblekit.core.store_layout import DONE
from marblekit.core.store_layout import POOLED as STORE_POOLED
from marblekit.core.store_layout import (TRACK_ERROR, TRACK_POOLED, TRACK_STATUS, WINDOW_LENGTH, WINDOW_START,
                                         WINDOW_TRACK, StoreReader, flat_rows)
from marblekit.core.store_location import StoreLocation
from marblekit.core.windows import MIN_WINDOW_S, Windowing
from marblekit.features.tensors import to_tensor
from marblekit.features.v1 import features_pb2 as pb
from marblekit.features.v1 import features_pb2_grpc

from .batcher import Batcher, QueueFull
from .client import ModelClient, ServingError
from .feature_cache import FeatureCache, cache_key
from .feature_metrics import FeatureMetrics

DEFAULT_WINDOW_S = 30.0


@dataclass(frozen=True)
class Limits:
    """What one request may ask of the service."""

    max_audio_s: float = 3600.0
    deadline_s: float = 300.0
    max_chunk_bytes: int = 4 << 20
    max_stream_bytes: int = 2 << 30
    max_queue_windows: int = 1024
    batch_delay_s: float = 0.005


class BadRequest(Exception):
    """A request the service cannot answer as asked; ``code`` is its gRPC status."""

    def __init__(self, message: str, code: grpc.StatusCode = grpc.StatusCode.INVALID_ARGUMENT):
        super().__init__(message)
        self.code = code


@dataclass
class Backbone:
    """A served model: its Triton client, what it expects, and the batcher that feeds it."""

    client: ModelClient
    info: ServedModel
    batcher: Batcher


class FeatureService(features_pb2_grpc.FeaturesServicer):
    def __init__(self, triton_url: str, models: list[str], stores: dict[str, StoreLocation], cache: FeatureCache,
                 limits: Limits = Limits(), metrics: FeatureMetrics | None = None):
        self.limits, self.cache, self.metrics = limits, cache, metrics or FeatureMetrics()
        self.stores = dict(stores)
        self.backbones: dict[str, Backbone] = {}
        for name in models:
            client = ModelClient(triton_url, name, timeout=limits.deadline_s)
            info = client.model_metadata()
            batcher = Batcher(lambda batch, names, c=client: c.infer(batch, names), info.max_batch,
                              limits.batch_delay_s, limits.max_queue_windows, on_batch=self._count_batch)
            self.backbones[name] = Backbone(client, info, batcher)

    def _count_batch(self, windows: int, seconds: float) -> None:
        self.metrics.batch_windows.observe(windows)
        self.metrics.triton_latency.observe(seconds)

    def close(self) -> None:
        for backbone in self.backbones.values():
            backbone.batcher.close()
            backbone.client.close()

    # --- the RPCs -------------------------------------------------------------------------------------------

    def ListModels(self, request: pb.ListModelsRequest, context: grpc.ServicerContext) -> pb.ListModelsResponse:
        with self._call("ListModels", context):
            return pb.ListModelsResponse(models=[self._describe(b.info) for b in self.backbones.values()])

    def Embed(self, request: pb.EmbedRequest, context: grpc.ServicerContext) -> pb.EmbedResponse:
        with self._call("Embed", context):
            kind = request.WhichOneof("audio")
            if kind is None:
                raise BadRequest("the request holds no audio: set 'encoded' (a file's bytes) or 'pcm'")
            return self._embed(request.options, getattr(request, kind), kind == "pcm", request.pcm_format)

    def EmbedStream(self, requests: Iterator[pb.EmbedStreamRequest],
                    context: grpc.ServicerContext) -> pb.EmbedResponse:
        with self._call("EmbedStream", context):
            header, data = self._gather(requests)
            return self._embed(header.options, data, header.pcm, header.pcm_format)

    def Lookup(self, request: pb.LookupRequest, context: grpc.ServicerContext) -> pb.LookupResponse:
        with self._call("Lookup", context):
            return self._lookup(request)

    # --- Embed ------------------------------------------------------------------------------------------------

    def _gather(self, requests: Iterator[pb.EmbedStreamRequest]) -> tuple[pb.StreamHeader, bytes]:
        """The stream's header and its chunks joined, refusing a stream out of order or over the limits."""
        header: pb.StreamHeader | None = None
        chunks, total = [], 0
        for number, message in enumerate(requests):
            part = message.WhichOneof("part")
            if part == "header":
                if number:
                    raise BadRequest(f"message {number} of the stream is a header: the header comes first, once")
                header = message.header
                continue
            if header is None:
                raise BadRequest("the stream must start with a header (options and format), then the chunks")
            if part != "chunk":
                raise BadRequest(f"message {number} of the stream is empty: expected a chunk of audio bytes")
            if len(message.chunk) > self.limits.max_chunk_bytes:
                raise BadRequest(f"chunk {number} has {len(message.chunk)} bytes; chunks may have at most "
                                 f"{self.limits.max_chunk_bytes}")
            total += len(message.chunk)
            if total > self.limits.max_stream_bytes:
                raise BadRequest(f"the stream exceeds {self.limits.max_stream_bytes} bytes of audio")
            chunks.append(message.chunk)
        if header is None:
            raise BadRequest("the stream was empty: expected a header, then the audio in chunks")
        return header, b"".join(chunks)

    def _embed(self, options: pb.EmbedOptions, data: bytes, pcm: bool, pcm_format: pb.PcmFormat) -> pb.EmbedResponse:
        backbone = self._backbone(options.model)
        info = backbone.info
        layers = self._layers(options.layers, info)
        windowing = self._windowing(options, info)
        crop = options.crop_s or None
        if crop is not None and crop < 0:
            raise BadRequest(f"crop_s must be positive (or 0 for the whole clip), got {crop:g}")
        digest = hashlib.sha256(data).hexdigest()
        settings = {"model": info.name, "layers": list(layers), "frames": options.frames,
                    "window_s": windowing.window_s, "hop_s": windowing.hop_s, "crop_s": crop,
                    "pcm": [pcm_format.sample_rate, pcm_format.channels] if pcm else None}
        key = cache_key(digest, info.onnx_sha256, settings)
        cached = self.cache.get(key)
        if cached is not None:
            self.metrics.cache_hits.inc()
            response = pb.EmbedResponse.FromString(cached)
            response.cache_hit = True
            return response
        self.metrics.cache_misses.inc()
        clip = self._prepare(data, pcm, pcm_format, Preparation(info.sample_rate, info.normalize_input, crop))
        response = self._run(backbone, clip, windowing, layers, options.frames)
        response.content_sha256 = digest
        self.cache.put(key, response.SerializeToString())
        self.metrics.audio_seconds.inc(response.audio_seconds)
        return response

    def _backbone(self, name: str) -> Backbone:
        if name not in self.backbones:
            raise BadRequest(f"model {name!r} is not served here; served: {', '.join(self.backbones) or 'none'}",
                             grpc.StatusCode.NOT_FOUND)
        return self.backbones[name]

    @staticmethod
    def _layers(requested: list[int], info: ServedModel) -> tuple[int, ...]:
        return one_width_layers(requested, info.columns, info.name)

    @staticmethod
    def _windowing(options: pb.EmbedOptions, info: ServedModel) -> Windowing:
        window = options.window_s or DEFAULT_WINDOW_S
        if options.hop_s < 0:
            raise BadRequest(f"hop_s must be positive (or 0 for the window length), got {options.hop_s:g}")
        longest = info.max_samples / info.sample_rate
        shortest = max(MIN_WINDOW_S, info.min_samples / info.sample_rate)
        if not shortest <= window <= longest:
            raise BadRequest(f"window_s {window:g} is outside what {info.name} accepts: {shortest:g} to "
                             f"{longest:g} s")
        return Windowing(window, options.hop_s or window).for_model(info.min_samples, info.sample_rate)

    def _prepare(self, data: bytes, pcm: bool, pcm_format: pb.PcmFormat, how: Preparation) -> np.ndarray:
        """The model-rate clip, normalised as the extractor normalises it; refuses audio over the limit."""
        parts: list[np.ndarray] = []
        most = int(self.limits.max_audio_s * how.sample_rate)

        def keep(samples: np.ndarray) -> None:
            parts.append(samples)
            if sum(len(part) for part in parts) > most:
                raise BadRequest(f"the audio is longer than this service takes ({self.limits.max_audio_s:g} s)")

        try:
            if pcm:
                stats = stream_pcm(self._pcm(data, pcm_format), pcm_format.sample_rate, how, keep)
            else:
                stats = stream_bytes(data, how, keep)
        except AudioError as err:
            raise BadRequest(f"the audio cannot be used: {err}") from None
        return assemble(parts, stats, how)

    @staticmethod
    def _pcm(data: bytes, pcm_format: pb.PcmFormat) -> np.ndarray:
        if pcm_format.sample_rate <= 0 or pcm_format.channels <= 0:
            raise BadRequest(f"pcm audio needs pcm_format with a positive sample_rate and channels, got "
                             f"{pcm_format.sample_rate} Hz, {pcm_format.channels} channel(s)")
        if len(data) % (4 * pcm_format.channels):
            raise BadRequest(f"pcm audio has {len(data)} bytes: expected interleaved float32 samples, a multiple of "
                             f"4 x {pcm_format.channels} channel(s)")
        return np.frombuffer(data, "<f4").reshape(-1, pcm_format.channels)

    def _run(self, backbone: Backbone, clip: np.ndarray, windowing: Windowing, layers: tuple[int, ...],
             frames: bool) -> pb.EmbedResponse:
        info = backbone.info
        bounds = windowing.bounds(len(clip), info.sample_rate)
        if not bounds:
            raise BadRequest(f"{len(clip) / info.sample_rate:.2f} s of audio (after cropping): at least "
                             f"{windowing.min_window_s:g} s is needed for one window")
        if frames and set(layers) - set(info.frame_layers):
            raise BadRequest(f"frames: layers {sorted(set(layers) - set(info.frame_layers))} of {info.name} have no "
                             f"frame-level features; those with frames: {list(info.frame_layers)}")
        outputs = (POOLED, FRAMES) if frames else (POOLED,)
        try:
            futures = backbone.batcher.submit([clip[start:stop] for start, stop in bounds], outputs)
        except QueueFull as err:
            raise BadRequest(f"the service is busy: {err}; retry later", grpc.StatusCode.RESOURCE_EXHAUSTED) from None
        self.metrics.queue_depth.set(backbone.batcher.waiting)
        deadline = time.monotonic() + self.limits.deadline_s
        try:
            results = [future.result(timeout=max(deadline - time.monotonic(), 0.0)) for future in futures]
        except FutureTimeout:
            raise BadRequest(f"no answer from Triton within {self.limits.deadline_s:g} s",
                             grpc.StatusCode.DEADLINE_EXCEEDED) from None
        chosen = info.columns.select(layers)
        pooled = chosen.stacked(np.stack([result[POOLED][info.columns.indices(layers)]
                                          for result in results]).astype(np.float32))
        response = pb.EmbedResponse(
            model=info.name, layers=list(layers), frame_rate=info.frame_rate, sample_rate=info.sample_rate,
            random_init=info.random_init, window_start=[start / info.sample_rate for start, _ in bounds],
            window_length=[(stop - start) / info.sample_rate for start, stop in bounds],
            pooled=to_tensor(pooled), track_pooled=to_tensor(pooled.mean(axis=0, dtype=np.float64).astype(np.float32)),
            audio_seconds=len(clip) / info.sample_rate)
        if frames:
            columns = info.frame_columns.indices(layers)
            per_window = [chosen.stacked(result[FRAMES][:, columns].astype(np.float32)) for result in results]
            response.frames.CopyFrom(to_tensor(np.concatenate(per_window)))
            response.frame_offsets.extend(np.concatenate([[0], np.cumsum([len(f) for f in per_window])]).tolist())
        return response

    # --- Lookup -----------------------------------------------------------------------------------------------

    def _lookup(self, request: pb.LookupRequest) -> pb.LookupResponse:
        if request.store not in self.stores:
            raise BadRequest(f"store {request.store!r} is not served here; served: "
                             f"{', '.join(self.stores) or 'none'}", grpc.StatusCode.NOT_FOUND)
        try:
            reader = StoreReader(self.stores[request.store])
        except (OSError, ValueError) as err:
            raise BadRequest(f"store {request.store!r} cannot be read: {err}", grpc.StatusCode.FAILED_PRECONDITION)
        index = {track: row for row, track in enumerate(reader.track_ids())}
        missing = [track for track in request.track_ids if track not in index]
        if missing:
            raise BadRequest(f"store {request.store!r} has no track {', '.join(map(repr, missing[:5]))}"
                             + (f" and {len(missing) - 5} more" if len(missing) > 5 else ""),
                             grpc.StatusCode.NOT_FOUND)
        columns = reader.attrs.columns
        layers = list(one_width_layers(list(request.layers), columns, f"store {request.store!r}"))
        chosen, taken = columns.select(layers), columns.indices(layers)
        rows = [index[track] for track in request.track_ids]
        status, errors = reader.read(TRACK_STATUS), reader.array(TRACK_ERROR)
        means = reader.array(TRACK_POOLED)
        window_track = reader.read(WINDOW_TRACK) if request.windows else None
        response = pb.LookupResponse(model=reader.attrs.model, layers=layers, random_init=reader.attrs.random_init)
        for track, row in zip(request.track_ids, rows):
            features = pb.TrackFeatures(track_id=track, done=bool(status[row] == DONE), error=str(errors[row]),
                                        track_pooled=to_tensor(chosen.stacked(flat_rows(means[row:row + 1])[0, taken])))
            if window_track is not None:
                first, last = np.searchsorted(window_track, [row, row + 1])
                pooled = flat_rows(reader.array(STORE_POOLED)[first:last])[:, taken]
                features.pooled.CopyFrom(to_tensor(chosen.stacked(pooled)))
                features.window_start.extend(reader.array(WINDOW_START)[first:last].tolist())
                features.window_length.extend(reader.array(WINDOW_LENGTH)[first:last].tolist())
            response.tracks.append(features)
        return response

    # --- shared -----------------------------------------------------------------------------------------------

    def _describe(self, info: ServedModel) -> pb.Model:
        spec, provenance = info.spec, info.provenance
        return pb.Model(
            name=info.name, backbone=info.backbone, sample_rate=info.sample_rate, frame_rate=info.frame_rate,
            num_hidden_states=info.num_hidden_states, layer_dims=list(info.layer_dims),
            layer_names=[str(name) for name in spec.get("layer_names", [])], precision=info.precision,
            random_init=info.random_init, weights=str(provenance.get("weights", "")),
            checkpoint_sha256=str(provenance.get("checkpoint_sha256", "")), onnx_sha256=info.onnx_sha256,
            normalize_input=info.normalize_input, default_window_s=DEFAULT_WINDOW_S, default_hop_s=DEFAULT_WINDOW_S,
            min_window_s=max(MIN_WINDOW_S, info.min_samples / info.sample_rate),
            max_window_s=info.max_samples / info.sample_rate)

    def _call(self, method: str, context: grpc.ServicerContext) -> _Call:
        return _Call(self.metrics, method, context)


def one_width_layers(requested: list[int], columns: LayerColumns, owner: str) -> tuple[int, ...]:
    """The hidden states a call asks for (every one when empty): unique, known, and of one width, since the
    responses hold them as ``[..., layers, dim]`` tensors."""
    layers = tuple(requested) or columns.layers
    bad = [layer for layer in layers if layer not in columns.layers]
    if bad or len(set(layers)) != len(layers):
        raise BadRequest(f"layers {list(layers)}: each must be unique and one of {owner}'s hidden states "
                         f"{columns.layers[0]}..{columns.layers[-1]}",
                         grpc.StatusCode.NOT_FOUND if bad else grpc.StatusCode.INVALID_ARGUMENT)
    chosen = columns.select(layers)
    if not chosen.uniform:
        groups = "; ".join(",".join(map(str, group)) for group in columns.width_groups())
        raise BadRequest(f"layers {list(layers)} of {owner} have different widths ({chosen.describe()}); one call "
                         f"returns layers of one width: ask for one of these groups at a time: {groups}")
    return layers


class _Call:
    """Times a call, counts it by status code, and turns expected failures into gRPC statuses."""

    def __init__(self, metrics: FeatureMetrics, method: str, context: grpc.ServicerContext):
        self.metrics, self.method, self.context = metrics, method, context

    def __enter__(self) -> _Call:
        self.started = time.perf_counter()
        self.metrics.in_flight.inc()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, _trace: object) -> bool:
        self.metrics.in_flight.dec()
        code, message = grpc.StatusCode.OK, ""
        if isinstance(error, BadRequest):
            code, message = error.code, str(error)
        elif isinstance(error, ServingError):
            code, message = grpc.StatusCode.UNAVAILABLE, f"Triton: {error}"
        elif error is not None and not isinstance(error, grpc.RpcError):
            code, message = grpc.StatusCode.INTERNAL, f"{type(error).__name__}: {error}"
        self.metrics.requests.labels(self.method, code.name).inc()
        self.metrics.latency.labels(self.method).observe(time.perf_counter() - self.started)
        if error is not None and code is not grpc.StatusCode.OK:
            self.context.abort(code, message)
        return False
