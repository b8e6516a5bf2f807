"""A Python client of the feature service that returns numpy arrays.

Every call has a deadline; UNAVAILABLE and RESOURCE_EXHAUSTED (a restarting or busy service) are retried as the
shared ``RetryPolicy`` says, the same policy the extractor's Triton client follows; anything else raises
``FeatureServiceError`` with the server's code and message.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import grpc
import numpy as np

from marblekit.core.retry import RECONNECT_OPTIONS, RetryPolicy
from marblekit.features.tensors import from_tensor
from marblekit.features.v1 import features_pb2 as pb
from marblekit.features.v1 import features_pb2_grpc

RETRYABLE_CODES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED)
STREAM_CHUNK_BYTES = 2 << 20
T = TypeVar("T")


class FeatureServiceError(RuntimeError):
    """The service refused or failed a call; ``code`` is the gRPC status."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(f"{code.name}: {message}")
        self.code = code


@dataclass
class Embedding:
    """Features of one piece of audio: per window, per track and (when asked) per frame, layer rows as asked."""

    model: str
    layers: list[int]
    frame_rate: float
    sample_rate: int
    random_init: bool
    window_start: np.ndarray  # [W] seconds
    window_length: np.ndarray  # [W] seconds
    pooled: np.ndarray  # [W, layers, dim]
    track_pooled: np.ndarray  # [layers, dim]
    frames: np.ndarray | None  # [F, layers, dim]; window w: frames[frame_offsets[w]:frame_offsets[w + 1]]
    frame_offsets: np.ndarray | None
    cache_hit: bool
    content_sha256: str

    @classmethod
    def from_response(cls, response: pb.EmbedResponse) -> Embedding:
        frames = response.HasField("frames")
        return cls(response.model, list(response.layers), response.frame_rate, response.sample_rate,
                   response.random_init, np.array(response.window_start), np.array(response.window_length),
                   from_tensor(response.pooled), from_tensor(response.track_pooled),
                   from_tensor(response.frames) if frames else None,
                   np.array(response.frame_offsets, np.int64) if frames else None, response.cache_hit,
                   response.content_sha256)


class FeatureClient:
    """``target`` is ``host:port``; ``token`` the bearer token; ``tls_ca`` a PEM file to trust (TLS on)."""

    def __init__(self, target: str, token: str | None = None, tls_ca: Path | None = None, timeout: float = 300.0,
                 retry: RetryPolicy = RetryPolicy(timeout_s=30.0), max_message_bytes: int = 64 << 20):
        options = [("grpc.max_receive_message_length", max_message_bytes),
                   ("grpc.max_send_message_length", max_message_bytes),
                   *RECONNECT_OPTIONS]
        if tls_ca is not None:
            self.channel = grpc.secure_channel(target, grpc.ssl_channel_credentials(Path(tls_ca).read_bytes()),
                                               options)
        else:
            self.channel = grpc.insecure_channel(target, options)
        self.stub = features_pb2_grpc.FeaturesStub(self.channel)
        self.metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self.timeout, self.retry = timeout, retry

    def list_models(self) -> list[pb.Model]:
        return list(self._call(lambda: self.stub.ListModels(pb.ListModelsRequest(), timeout=self.timeout,
                                                            metadata=self.metadata)).models)

    def embed(self, audio: bytes | np.ndarray, model: str, sample_rate: int | None = None,
              layers: tuple[int, ...] = (), frames: bool = False, window_s: float = 0.0, hop_s: float = 0.0,
              crop_s: float = 0.0) -> Embedding:
        """``audio``: a file's bytes, or float32 samples ``[samples]`` / ``[samples, channels]`` at
        ``sample_rate``."""
        request = pb.EmbedRequest(options=_options(model, layers, frames, window_s, hop_s, crop_s))
        if isinstance(audio, np.ndarray):
            samples = audio.reshape(len(audio), -1).astype("<f4")
            if sample_rate is None:
                raise ValueError("raw samples need their sample_rate")
            request.pcm = samples.tobytes()
            request.pcm_format.CopyFrom(pb.PcmFormat(sample_rate=sample_rate, channels=samples.shape[1]))
        else:
            request.encoded = bytes(audio)
        response = self._call(lambda: self.stub.Embed(request, timeout=self.timeout, metadata=self.metadata))
        return Embedding.from_response(response)

    def embed_file(self, path: Path, model: str, chunk_bytes: int = STREAM_CHUNK_BYTES, layers: tuple[int, ...] = (),
                   frames: bool = False, window_s: float = 0.0, hop_s: float = 0.0, crop_s: float = 0.0) -> Embedding:
        """A file of any length, streamed in chunks (``EmbedStream``)."""
        header = pb.StreamHeader(options=_options(model, layers, frames, window_s, hop_s, crop_s))

        def messages() -> Iterator[pb.EmbedStreamRequest]:
            yield pb.EmbedStreamRequest(header=header)
            with open(path, "rb") as handle:
                while chunk := handle.read(chunk_bytes):
                    yield pb.EmbedStreamRequest(chunk=chunk)

        response = self._call(lambda: self.stub.EmbedStream(messages(), timeout=self.timeout,
                                                            metadata=self.metadata))
        return Embedding.from_response(response)

    def lookup(self, store: str, track_ids: list[str], layers: tuple[int, ...] = (),
               windows: bool = False) -> pb.LookupResponse:
        request = pb.LookupRequest(store=store, track_ids=track_ids, layers=list(layers), windows=windows)
        return self._call(lambda: self.stub.Lookup(request, timeout=self.timeout, metadata=self.metadata))

    def _call(self, call: Callable[[], T]) -> T:
        def once() -> T:
            try:
                return call()
            except grpc.RpcError as err:
                raise FeatureServiceError(err.code(), err.details() or "") from None

        return self.retry.call(once, lambda error: isinstance(error, FeatureServiceError)
                               and error.code in RETRYABLE_CODES, subject="the feature service")

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> FeatureClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _options(model: str, layers: tuple[int, ...], frames: bool, window_s: float, hop_s: float,
             crop_s: float) -> pb.EmbedOptions:
    return pb.EmbedOptions(model=model, layers=list(layers), frames=frames, window_s=window_s, hop_s=hop_s,
                           crop_s=crop_s)
