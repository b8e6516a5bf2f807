"""The embedded Triton end to end: one server for the module, on free ports, serving the handcrafted
features, a 2-layer random-init MERT-shaped model (fp32, fp16, int8 and bf16: onnxruntime and OpenVINO) and,
where the musicnn wheel and TensorFlow are installed, musicnn-mtt with its trained weights (layers of different
widths). References are in-process sessions of the runtime each config names, on the same model.onnx files."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from serving_helpers import read_banner

from marblekit.core.backbones import get_backbone
from marblekit.core.runtimes import open_session
from marblekit.export.pipeline import export_model
from marblekit.export.plugins import musicnn_unavailable
from marblekit.export.triton_config import ServingShape
from marblekit.serving.client import ModelClient, ServerUnavailable, ServingError
from marblekit.serving.embedded import EmbeddedTriton, TritonStartupError
from marblekit.serving.environment import environment_problem

pytestmark = pytest.mark.triton

HANDCRAFTED = "handcrafted"
MERT = get_backbone("mert-v1-95m").with_layers(2).name
MERT_FP16 = f"{MERT}-fp16"
MERT_INT8 = f"{MERT}-int8"
MERT_BF16 = f"{MERT}-bf16"  # the fp32 graph computed in BF16 by OpenVINO
MUSICNN = "musicnn-mtt"
OUTPUTS = ("frames", "pooled")


MISSING = environment_problem()
if MISSING:
    pytest.skip(f"no serving environment: {MISSING}", allow_module_level=True)
NO_MUSICNN = musicnn_unavailable(get_backbone(MUSICNN))
MODELS = [HANDCRAFTED, MERT, MERT_FP16, MERT_INT8, MERT_BF16] + ([] if NO_MUSICNN else [MUSICNN])


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("repo")
    export_model(get_backbone(HANDCRAFTED), repo=root, check_parity=False)
    for precision in ("fp32", "fp16", "int8", "bf16"):
        export_model(get_backbone("mert-v1-95m").with_layers(2), repo=root, random_init=True, precision=precision,
                     check_parity=False)
    if not NO_MUSICNN:
        export_model(get_backbone(MUSICNN), repo=root, check_parity=False)  # the wheel's MTT checkpoint
    return root


@pytest.fixture(scope="module")
def server(repo: Path) -> Iterator[EmbeddedTriton]:
    with EmbeddedTriton(repo, MODELS, grpc_port=0, http_port=0, metrics_port=0) as running:
        yield running


@pytest.fixture(scope="module")
def sessions(repo: Path) -> dict[str, object]:
    sessions = {}
    for name in MODELS:
        runtime = json.loads((repo / name / "marblekit.json").read_text())["runtime"]
        sessions[name] = open_session(str(repo / name / "1" / "model.onnx"), runtime["runtime"], 0,
                                      runtime["inference_precision"])
    return sessions


def _audio(seed: int, batch: int, samples: int) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal((batch, samples))).astype(np.float32)


def _reference(session, waveform: np.ndarray) -> dict[str, np.ndarray]:
    return dict(zip(OUTPUTS, session.run(OUTPUTS, waveform)))


@pytest.mark.parametrize("model, rate", [(HANDCRAFTED, 16000), (MERT, 24000), (MERT_FP16, 24000),
                                         (MERT_INT8, 24000), (MERT_BF16, 24000)])
def test_results_equal_in_process_runtime(server: EmbeddedTriton, sessions, model: str, rate: int) -> None:
    with ModelClient(server.grpc_url, model) as client:
        for seed, (batch, samples) in enumerate([(1, rate), (2, int(1.7 * rate))]):
            waveform = _audio(seed, batch, samples)
            served = client.infer(waveform, outputs=OUTPUTS)
            expected = _reference(sessions[model], waveform)
            for name in OUTPUTS:
                assert (served[name].shape, served[name].dtype) == (expected[name].shape, expected[name].dtype)
                np.testing.assert_allclose(served[name], expected[name], rtol=1e-6, atol=1e-6, err_msg=name)


@pytest.mark.skipif(NO_MUSICNN is not None, reason=f"pretrained musicnn-mtt: {NO_MUSICNN}")
def test_pretrained_musicnn_is_served_as_in_process(server: EmbeddedTriton, sessions) -> None:
    """Trained weights, layers 408 to 50 wide side by side: Triton's answer equals its runtime's in process on the
    same graph, over one and two 3 s patches, and the served config describes the layers."""
    spec = get_backbone(MUSICNN)
    with ModelClient(server.grpc_url, MUSICNN) as client:
        served_model = client.model_metadata()
        for seed, (batch, seconds) in enumerate([(1, 3.5), (2, 7.0)]):
            waveform = _audio(seed, batch, int(seconds * 16000))
            served = client.infer(waveform, outputs=OUTPUTS)
            expected = _reference(sessions[MUSICNN], waveform)
            for name in OUTPUTS:
                np.testing.assert_allclose(served[name], expected[name], rtol=1e-6, atol=1e-6, err_msg=name)
            assert served["frames"].shape == (batch, spec.num_frames(waveform.shape[1]), 408 + 153 + 3 * 64)
    assert served_model.layer_dims == spec.dims and served_model.weighted_layers == (2, 3, 4)
    assert served_model.provenance["weights"] == "checkpoint" and not served_model.random_init


def test_model_metadata_comes_from_the_served_config(server: EmbeddedTriton) -> None:
    spec = get_backbone("mert-v1-95m").with_layers(2)
    with ModelClient(server.grpc_url, MERT_FP16) as client:
        served = client.model_metadata()
    assert (served.name, served.backbone, served.sample_rate, served.precision) == (MERT_FP16, spec.name, 24000, "fp16")
    assert served.outputs == {"frames": ("FP16", (-1, spec.num_hidden_states * spec.dim)),
                              "pooled": ("FP16", (spec.num_hidden_states * spec.dim,))}
    assert served.provenance["random_init"] is True
    shape = ServingShape()
    assert served.min_samples == round(shape.min_seconds * spec.sample_rate)
    assert served.max_samples == round(shape.max_seconds * spec.sample_rate)
    with ModelClient(server.grpc_url, MERT_BF16) as client:
        served = client.model_metadata()
    assert (served.precision, served.runtime, served.inference_precision) == ("bf16", "openvino", "bf16")
    assert served.outputs["pooled"][0] == "FP32"


def test_only_requested_outputs_come_back(server: EmbeddedTriton) -> None:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    request = grpcclient.InferInput("waveform", [1, 16000], "FP32")
    request.set_data_from_numpy(_audio(0, 1, 16000))
    result = client.infer(HANDCRAFTED, [request], outputs=[grpcclient.InferRequestedOutput("pooled")])
    assert result.as_numpy("pooled").shape == (1, 4 * 128)
    assert result.as_numpy("frames") is None


def test_concurrent_requests_are_batched_and_correct(server: EmbeddedTriton, sessions) -> None:
    requests = 12
    waveforms = [_audio(100 + i, 1, 24000) for i in range(requests)]
    with ModelClient(server.grpc_url, MERT) as client:
        before = client.statistics()
        with ThreadPoolExecutor(requests) as pool:
            results = list(pool.map(lambda w: client.infer(w, outputs=OUTPUTS), waveforms))
        after = client.statistics()
        deadline = time.monotonic() + 10  # Triton records an execution's statistics after its responses go out
        while after.since(before).requests < requests and time.monotonic() < deadline:
            time.sleep(0.05)
            after = client.statistics()
    for waveform, served in zip(waveforms, results):
        expected = _reference(sessions[MERT], waveform)
        for name in OUTPUTS:  # batched with other requests: the runtime may pick other kernels, so not bitwise
            np.testing.assert_allclose(served[name], expected[name], rtol=1e-4, atol=1e-5, err_msg=name)
    counted = after.since(before)
    assert counted.requests == requests
    assert counted.executions < requests, "the Python backend never batched two requests"
    assert counted.compute_s > 0


@pytest.mark.parametrize("waveform, message", [
    (np.zeros((1, 16000), np.float64), "expects 'FP32'"),
    (np.zeros((1, 16000), np.int16), "expects 'FP32'"),
    (np.zeros(8, np.float32), "must be [batch, samples], got shape [8]"),  # refused before it is sent
    (np.zeros((1, 2, 16000), np.float32), "must be [batch, samples], got shape [1, 2, 16000]"),
    (np.zeros((1, 0), np.float32), "has 0 samples"),
    (np.zeros((1, 30 * 16000 + 1), np.float32), "has 480001 samples; this model accepts 16000 to 480000"),
    (np.full((2, 16000), np.nan, np.float32), "NaN"),
    (np.zeros((17, 16000), np.float32), "batch-size must be <= 16"),
], ids=["float64", "int16", "rank1", "rank3", "empty", "too-long", "nan", "batch-too-big"])
def test_bad_input_gets_a_clear_error_and_the_server_keeps_serving(
        server: EmbeddedTriton, sessions, waveform: np.ndarray, message: str) -> None:
    with ModelClient(server.grpc_url, HANDCRAFTED) as client:
        with pytest.raises(ServingError) as raised:
            client.infer(waveform)
        assert message in str(raised.value)
        assert "INVALID_ARGUMENT" in str(raised.value) or waveform.ndim != 2
        good = _audio(7, 1, 16000)
        np.testing.assert_allclose(client.infer(good)["pooled"], _reference(sessions[HANDCRAFTED], good)["pooled"],
                                   rtol=1e-6, atol=1e-6)


def test_a_model_that_fails_to_load_stops_startup_with_the_log(repo: Path, tmp_path: Path) -> None:
    broken = tmp_path / "repo"
    shutil.copytree(repo / HANDCRAFTED, broken / HANDCRAFTED)
    (broken / HANDCRAFTED / "1" / "model.py").write_text("raise ImportError('broken on purpose')\n")
    with pytest.raises(TritonStartupError, match="(?s)exited with status 1.*last .* lines of .*"
                       f"load failed for model '{HANDCRAFTED}'.*broken on purpose"):
        EmbeddedTriton(broken, grpc_port=0, http_port=0, metrics_port=0).start()


def test_unknown_model_is_refused_before_starting(repo: Path) -> None:
    with pytest.raises(ValueError, match=f"nope not in .*available: {HANDCRAFTED}, {MERT}, {MERT_BF16}, {MERT_FP16}"):
        EmbeddedTriton(repo, ["nope"])


def test_killed_server_is_unavailable_then_serves_again_after_restart(server: EmbeddedTriton, sessions) -> None:
    """Kills the module's server (SIGKILL to its process group, as a crash would) and restarts it."""
    waveform = _audio(3, 2, 16000)
    expected = _reference(sessions[HANDCRAFTED], waveform)["pooled"]
    with ModelClient(server.grpc_url, HANDCRAFTED, timeout=10) as client:
        np.testing.assert_allclose(client.infer(waveform)["pooled"], expected, rtol=1e-6, atol=1e-6)
        ours = f"marblekit{os.getpid()}-*"  # the launcher prefixes its regions with its pid
        regions = set(Path("/dev/shm").glob(ours))
        assert regions, "the Python backend's shared-memory regions were expected under /dev/shm"
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
        with pytest.raises(ServerUnavailable, match="UNAVAILABLE.*marblekit serve"):
            client.infer(waveform)
        server.start()
        back = time.monotonic()
        assert not regions & set(Path("/dev/shm").glob(ours)), "the killed server's regions leaked"
        client.wait_ready(timeout=30)
        # the same channel reconnects within its ~1 s reconnect backoff (gRPC's default took 6-10 s here)
        assert time.monotonic() - back < 3.0, f"reconnected {time.monotonic() - back:.1f} s after the restart"
        np.testing.assert_allclose(client.infer(waveform)["pooled"], expected, rtol=1e-6, atol=1e-6)


def _live_members(pgid: int) -> list[int]:
    """Processes of group ``pgid`` that are not zombies (a reaped-later zombie holds nothing)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_serve_command_stops_with_all_its_processes(repo: Path, tmp_path: Path, signum: int) -> None:
    command = [sys.executable, "-m", "marblekit.app.cli", "serve", "--repo", str(repo), "--models", HANDCRAFTED,
               "--grpc-port", "0", "--http-port", "0", "--metrics-port", "0", "--log", str(tmp_path / "triton.log")]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as serve:
        try:
            text = read_banner(serve)
            pid = int(re.search(r"Triton ready \(pid (\d+)\)", text).group(1))
            grpc_url = re.search(r"gRPC\s+(\S+)", text).group(1)
            assert (tmp_path / "triton.log").stat().st_size > 0
            with ModelClient(grpc_url, HANDCRAFTED) as client:
                assert client.infer(_audio(0, 1, 16000))["pooled"].shape == (1, 4 * 128)
            assert _live_members(pid)
        except BaseException:
            serve.send_signal(signal.SIGINT)  # a failed check must not leave the server for the with to wait on
            raise
        serve.send_signal(signum)
        rest = serve.communicate(timeout=60)[0]
    assert serve.returncode == 0, text + rest
    assert "stopped" in rest
    assert _live_members(pid) == [], "tritonserver or a backend stub outlived marblekit serve"


def test_a_server_that_crashes_while_starting_is_launched_once_more(repo: Path, tmp_path: Path, monkeypatch) -> None:
    real, launches = EmbeddedTriton._command, []

    def crash_first(self, backends: Path) -> list[str]:
        launches.append(1)
        return ["sh", "-c", "kill -ABRT $$"] if len(launches) == 1 else real(self, backends)

    monkeypatch.setattr(EmbeddedTriton, "_command", crash_first)
    with EmbeddedTriton(repo, [HANDCRAFTED], grpc_port=0, http_port=0, metrics_port=0,
                        log_path=tmp_path / "triton.log") as server:
        with ModelClient(server.grpc_url, HANDCRAFTED) as client:
            assert client.infer(_audio(1, 1, 16000))["pooled"].shape == (1, 4 * 128)
    assert len(launches) == 2
    monkeypatch.setattr(EmbeddedTriton, "_command", lambda self, backends: ["sh", "-c", "kill -ABRT $$"])
    with pytest.raises(TritonStartupError, match="exited with status -6"):  # crashing twice: give up
        EmbeddedTriton(repo, [HANDCRAFTED], grpc_port=0, http_port=0, metrics_port=0).start()
