"""The feature service through a real gRPC server in front of a real embedded Triton, on loopback: its answers
equal the extractor's stores, concurrent callers share Triton batches, bad requests are refused with a reason,
and tokens, TLS and health behave."""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import io
import subprocess
import time
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import pytest
import soundfile as sf
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from marblekit.core.backbones import get_backbone
from marblekit.core.retry import RetryPolicy
from marblekit.core.store_layout import open_pooled
from marblekit.export.pipeline import export_model
from marblekit.extractor.api import ExtractRequest, extract
from marblekit.features.client import FeatureClient, FeatureServiceError
from marblekit.features.v1 import features_pb2 as pb
from marblekit.features.v1 import features_pb2_grpc
from marblekit.serving.client import ModelClient
from marblekit.serving.embedded import EmbeddedTriton
from marblekit.serving.environment import environment_problem
from marblekit.serving.feature_server import FeatureServer, ServerSettings
from marblekit.serving.feature_service import Limits

MISSING = environment_problem()
pytestmark = [pytest.mark.triton, pytest.mark.skipif(MISSING is not None, reason=f"no serving environment: {MISSING}")]
HANDCRAFTED, MERT = "handcrafted", "mert-v1-95m-2l"
WINDOW = 2.0


def wav_bytes(seconds: float, seed: int, rate: int = 44100, channels: int = 2) -> bytes:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    tone = 0.2 * np.sin(2 * np.pi * rng.uniform(100, 2000) * t)[:, None]
    buffer = io.BytesIO()
    sf.write(buffer, (tone + 0.05 * rng.standard_normal((t.size, channels))).astype(np.float32), rate,
             format="WAV", subtype="FLOAT")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("feature-repo")
    export_model(get_backbone(HANDCRAFTED), repo, check_parity=False)
    export_model(get_backbone("mert-v1-95m").with_layers(2), repo, random_init=True, check_parity=False)
    return repo


@pytest.fixture(scope="module")
def triton(repo: Path, tmp_path_factory: pytest.TempPathFactory):
    log = tmp_path_factory.mktemp("feature-triton") / "triton.log"
    with EmbeddedTriton(repo, [HANDCRAFTED, MERT], grpc_port=0, http_port=0, metrics_port=0, log_path=log) as server:
        yield server


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("feature-catalog")
    for index, seconds in enumerate((5.3, 2.4, 7.0)):
        (folder / f"t{index}.wav").write_bytes(wav_bytes(seconds, index))
    return folder


@pytest.fixture(scope="module")
def stores(catalog: Path, repo: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The extractor's stores of the catalog, one per model (in-process onnxruntime)."""
    folder = tmp_path_factory.mktemp("feature-stores")
    for model in (HANDCRAFTED, MERT):
        extract(ExtractRequest(catalog, model, folder / f"{model}.zarr", repo=repo, window_s=WINDOW, frames=True,
                               frame_layers=(0, 2), progress=False))
    return {model: folder / f"{model}.zarr" for model in (HANDCRAFTED, MERT)}


def serve(triton: EmbeddedTriton, stores: dict[str, Path], **settings) -> FeatureServer:
    defaults = dict(port=0, metrics_port=0, stores=stores, cache_bytes=0)
    return FeatureServer(triton.grpc_url, [HANDCRAFTED, MERT], ServerSettings(**{**defaults, **settings}))


@pytest.fixture(scope="module")
def service(triton: EmbeddedTriton, stores: dict[str, Path]):
    with serve(triton, stores) as server:
        yield server


def assert_close(a: np.ndarray, b: np.ndarray) -> None:
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    np.testing.assert_allclose(a, b, rtol=2e-3, atol=2e-3 * float(np.nanmax(np.abs(b))))


@pytest.mark.parametrize("model", [HANDCRAFTED, MERT])
def test_embed_stream_and_lookup_equal_the_extractor_store(service: FeatureServer, catalog: Path,
                                                           stores: dict[str, Path], model: str,
                                                           tmp_path: Path) -> None:
    view = open_pooled(stores[model])
    with FeatureClient(service.address) as client:
        for track, track_id in enumerate(view.track_id.tolist()):
            rows = view.window_track == track
            data = (catalog / track_id).read_bytes()
            whole = client.embed(data, model, window_s=WINDOW)
            np.testing.assert_array_equal(whole.window_start, view.window_start[rows])
            np.testing.assert_array_equal(whole.window_length, view.window_length[rows])
            columns = view.attrs.columns
            assert_close(whole.pooled, columns.stacked(view.pooled[rows]))
            assert_close(whole.track_pooled, columns.stacked(view.track_pooled[track]))
            assert whole.random_init is (model == MERT) and whole.layers == list(columns.layers)
            framed = client.embed(data, model, window_s=WINDOW, layers=(0, 2), frames=True)
            first, last = np.flatnonzero(rows)[[0, -1]]
            edges = view.frame_offsets[first:last + 2]
            np.testing.assert_array_equal(framed.frame_offsets, edges - edges[0])
            assert_close(framed.frames, view.attrs.frame_columns.stacked(view.frames[edges[0]:edges[-1]]))
            assert_close(framed.pooled, columns.stacked(view.pooled[rows])[:, [0, 2]])
            streamed = client.embed_file(catalog / track_id, model, chunk_bytes=64 << 10, window_s=WINDOW)
            np.testing.assert_allclose(streamed.pooled, whole.pooled, rtol=1e-5, atol=1e-6)
            assert not streamed.cache_hit and streamed.content_sha256 == whole.content_sha256
        looked_up = client.lookup(model, view.track_id.tolist(), windows=True)
    for track, features in enumerate(looked_up.tracks):
        rows = view.window_track == track
        assert features.done and features.track_id == view.track_id[track]
        np.testing.assert_array_equal(np.frombuffer(features.track_pooled.data, np.float16).reshape(
            tuple(features.track_pooled.shape)), view.attrs.columns.stacked(view.track_pooled[track]))
        np.testing.assert_array_equal(np.frombuffer(features.pooled.data, np.float16).reshape(
            tuple(features.pooled.shape)), view.attrs.columns.stacked(view.pooled[rows]))


def test_raw_pcm_equals_the_same_samples_encoded(service: FeatureServer) -> None:
    data = wav_bytes(3.0, 9)
    samples, rate = sf.read(io.BytesIO(data), dtype="float32")
    with FeatureClient(service.address) as client:
        encoded = client.embed(data, HANDCRAFTED, window_s=WINDOW, layers=(1, 3))
        raw = client.embed(samples, HANDCRAFTED, sample_rate=rate, window_s=WINDOW, layers=(1, 3))
    assert raw.layers == [1, 3] and raw.pooled.shape[1] == 2
    np.testing.assert_allclose(raw.pooled, encoded.pooled, rtol=1e-5, atol=1e-6)


def test_a_hundred_concurrent_callers_share_batches(service: FeatureServer, triton: EmbeddedTriton,
                                                    catalog: Path, stores: dict[str, Path]) -> None:
    files = sorted(catalog.iterdir())
    with FeatureClient(service.address) as client:
        expected = {path.name: client.embed(path.read_bytes(), HANDCRAFTED, window_s=WINDOW).pooled for path in files}
    view = open_pooled(stores[HANDCRAFTED])
    with ModelClient(triton.grpc_url, HANDCRAFTED) as counts:
        before = counts.statistics()

        def caller(index: int) -> bool:
            path = files[index % len(files)]
            with FeatureClient(service.address, timeout=120) as client:
                kind = index % 3
                if kind == 0:
                    got = client.embed(path.read_bytes(), HANDCRAFTED, window_s=WINDOW).pooled
                elif kind == 1:
                    got = client.embed_file(path, HANDCRAFTED, chunk_bytes=256 << 10, window_s=WINDOW).pooled
                else:
                    [track] = client.lookup(HANDCRAFTED, [path.name]).tracks
                    row = view.track_id.tolist().index(path.name)
                    return np.array_equal(np.frombuffer(track.track_pooled.data, np.float16),
                                          view.track_pooled[row].ravel())
                np.testing.assert_allclose(got, expected[path.name], rtol=1e-4, atol=1e-5)
                return True

        started = time.monotonic()
        with cf.ThreadPoolExecutor(100) as pool:
            answers = list(pool.map(caller, range(100)))
        assert time.monotonic() - started < 120
        after = counts.statistics()
    assert all(answers)
    windows_per_track = dict(zip(view.track_id.tolist(), np.bincount(view.window_track).tolist()))
    windows_asked = sum(windows_per_track[files[index % len(files)].name] for index in range(100) if index % 3 != 2)
    triton_requests = after.requests - before.requests
    assert after.executions - before.executions <= triton_requests
    assert 0 < triton_requests < windows_asked / 2, (triton_requests, windows_asked)


def test_the_cache_answers_repeats_and_counts_them(triton: EmbeddedTriton, stores: dict[str, Path]) -> None:
    data = wav_bytes(4.0, 21)
    with serve(triton, stores, cache_bytes=16 << 20) as server, FeatureClient(server.address) as client:
        first = client.embed(data, MERT, window_s=WINDOW)
        again = client.embed(data, MERT, window_s=WINDOW)
        other = client.embed(data, MERT, window_s=1.0)
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=10).read().decode()
    assert (first.cache_hit, again.cache_hit, other.cache_hit) == (False, True, False)
    np.testing.assert_array_equal(again.pooled, first.pooled)
    assert "marblekit_feature_cache_hits_total 1.0" in metrics
    assert 'marblekit_feature_requests_total{code="OK",method="Embed"} 3.0' in metrics


def _status(call, *args) -> tuple[grpc.StatusCode, str]:
    try:
        call(*args)
    except grpc.RpcError as err:
        return err.code(), err.details()
    return grpc.StatusCode.OK, ""


def test_bad_requests_get_a_status_and_a_reason_and_the_service_goes_on(triton: EmbeddedTriton,
                                                                        stores: dict[str, Path]) -> None:
    good = wav_bytes(3.0, 5)
    limits = dataclasses.replace(Limits(), max_audio_s=10.0, max_chunk_bytes=1 << 16)
    nan = np.full((16000, 1), np.nan, np.float32).tobytes()

    def embed(model=HANDCRAFTED, layers=(), **audio) -> pb.EmbedRequest:
        return pb.EmbedRequest(options=pb.EmbedOptions(model=model, layers=list(layers), window_s=WINDOW), **audio)

    def stream(*messages: pb.EmbedStreamRequest):
        return iter(messages)

    header = pb.EmbedStreamRequest(header=pb.StreamHeader(options=pb.EmbedOptions(model=HANDCRAFTED)))
    cases = [
        (embed(encoded=b"not audio at all"), grpc.StatusCode.INVALID_ARGUMENT, "not decodable as audio"),
        (embed(encoded=b""), grpc.StatusCode.INVALID_ARGUMENT, "empty audio (0 bytes)"),
        (embed(pcm=nan, pcm_format=pb.PcmFormat(sample_rate=16000, channels=1)), grpc.StatusCode.INVALID_ARGUMENT,
         "NaN or infinite"),
        (embed(pcm=good[:1000], pcm_format=pb.PcmFormat(sample_rate=0, channels=1)),
         grpc.StatusCode.INVALID_ARGUMENT, "positive sample_rate"),
        (embed(model="nope", encoded=good), grpc.StatusCode.NOT_FOUND, "'nope' is not served here"),
        (embed(layers=(7,), encoded=good), grpc.StatusCode.NOT_FOUND, "hidden states 0..3"),
        (embed(encoded=wav_bytes(11.0, 1)), grpc.StatusCode.INVALID_ARGUMENT, "longer than this service takes"),
        (embed(encoded=wav_bytes(0.5, 1)), grpc.StatusCode.INVALID_ARGUMENT, "at least 1 s is needed"),
        (pb.EmbedRequest(options=pb.EmbedOptions(model=HANDCRAFTED, window_s=45.0), encoded=good),
         grpc.StatusCode.INVALID_ARGUMENT, "window_s 45 is outside"),
    ]
    streams = [
        (stream(pb.EmbedStreamRequest(chunk=good[:100]), header), "must start with a header"),
        (stream(header, header), "the header comes first, once"),
        (stream(header, pb.EmbedStreamRequest(chunk=good)), "chunks may have at most 65536"),
        (stream(), "the stream was empty"),
    ]
    with serve(triton, stores, limits=limits) as server, grpc.insecure_channel(server.address) as channel:
        stub = features_pb2_grpc.FeaturesStub(channel)
        for request, code, fragment in cases:
            got, message = _status(stub.Embed, request)
            assert got == code and fragment in message, (fragment, got, message)
        for messages, fragment in streams:
            got, message = _status(stub.EmbedStream, messages)
            assert got == grpc.StatusCode.INVALID_ARGUMENT and fragment in message, (fragment, message)
        got, message = _status(stub.Lookup, pb.LookupRequest(store="elsewhere", track_ids=["t0.wav"]))
        assert got == grpc.StatusCode.NOT_FOUND and "store 'elsewhere' is not served" in message
        got, message = _status(stub.Lookup, pb.LookupRequest(store=HANDCRAFTED, track_ids=["absent.wav"]))
        assert got == grpc.StatusCode.NOT_FOUND and "no track 'absent.wav'" in message
        assert stub.Embed(embed(encoded=good)).pooled.shape == [2, 4, 128]  # still serving


def test_a_token_is_required_and_health_stays_open(triton: EmbeddedTriton, stores: dict[str, Path]) -> None:
    with serve(triton, stores, token="s3cret") as server:
        with FeatureClient(server.address) as anonymous, pytest.raises(FeatureServiceError, match="UNAUTHENTICATED"):
            anonymous.list_models()
        with FeatureClient(server.address, token="wrong") as wrong, pytest.raises(FeatureServiceError,
                                                                                   match="UNAUTHENTICATED"):
            wrong.list_models()
        with FeatureClient(server.address, token="s3cret") as client:
            assert [model.name for model in client.list_models()] == [HANDCRAFTED, MERT]
        with grpc.insecure_channel(server.address) as channel:
            check = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
            assert check.status in (health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.UNKNOWN)


def test_tls_with_a_self_signed_certificate(triton: EmbeddedTriton, stores: dict[str, Path], tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", str(key),
                    "-out", str(cert)], check=True, capture_output=True, timeout=60)
    with serve(triton, stores, tls_cert=cert, tls_key=key) as server:
        with FeatureClient(server.address, tls_ca=cert) as client:
            assert client.embed(wav_bytes(2.0, 3), HANDCRAFTED, window_s=WINDOW).pooled.shape == (1, 4, 128)
        with FeatureClient(server.address, retry=dataclasses.replace(client.retry, timeout_s=0)) as plain, \
                pytest.raises(FeatureServiceError, match="UNAVAILABLE"):
            plain.list_models()


def test_reflection_lists_the_services(service: FeatureServer) -> None:
    with grpc.insecure_channel(service.address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        [answer] = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    names = {service.name for service in answer.list_services_response.service}
    assert {"marblekit.features.v1.Features", "grpc.health.v1.Health"} <= names


def test_health_follows_triton(repo: Path, stores: dict[str, Path], tmp_path: Path) -> None:
    def status(channel: grpc.Channel) -> int:
        return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=10).status

    def wait_for(channel: grpc.Channel, wanted: int, seconds: float = 60) -> None:
        deadline = time.monotonic() + seconds
        while status(channel) != wanted:
            assert time.monotonic() < deadline, f"health never became {wanted}"
            time.sleep(0.2)

    with EmbeddedTriton(repo, [HANDCRAFTED], grpc_port=0, http_port=0, metrics_port=0,
                        log_path=tmp_path / "triton.log") as triton:
        server = FeatureServer(triton.grpc_url, [HANDCRAFTED], ServerSettings(port=0, stores=stores))
        with server, grpc.insecure_channel(server.address) as channel:
            wait_for(channel, health_pb2.HealthCheckResponse.SERVING)
            triton.stop()
            wait_for(channel, health_pb2.HealthCheckResponse.NOT_SERVING)
            triton.start()
            wait_for(channel, health_pb2.HealthCheckResponse.SERVING)


def test_over_the_limits_of_load_calls_get_resource_exhausted(triton: EmbeddedTriton, stores: dict[str, Path]) -> None:
    long_audio, short = wav_bytes(300.0, 6, rate=16000, channels=1), wav_bytes(3.0, 7)
    request = pb.EmbedRequest(options=pb.EmbedOptions(model=HANDCRAFTED, window_s=WINDOW), encoded=short)
    with serve(triton, stores, max_concurrent=1) as server, grpc.insecure_channel(server.address) as channel, \
            FeatureClient(server.address, retry=RetryPolicy(timeout_s=0)) as client, \
            cf.ThreadPoolExecutor(1) as pool:
        busy = pool.submit(client.embed, long_audio, HANDCRAFTED, window_s=WINDOW)
        while server.metrics.registry.get_sample_value("marblekit_feature_requests_in_flight") < 1:
            assert not busy.done(), "the long call ended before the second was sent"
            time.sleep(0.005)
        got, message = _status(features_pb2_grpc.FeaturesStub(channel).Embed, request)
        assert got == grpc.StatusCode.RESOURCE_EXHAUSTED, (got, message)
        assert busy.result(timeout=120).pooled.shape[0] == 150
    limits = dataclasses.replace(Limits(), max_queue_windows=4)
    with serve(triton, stores, limits=limits) as server, grpc.insecure_channel(server.address) as channel:
        got, message = _status(features_pb2_grpc.FeaturesStub(channel).Embed, pb.EmbedRequest(
            options=pb.EmbedOptions(model=HANDCRAFTED, window_s=WINDOW), encoded=wav_bytes(12.0, 8)))
        assert got == grpc.StatusCode.RESOURCE_EXHAUSTED and "the service is busy" in message, message
