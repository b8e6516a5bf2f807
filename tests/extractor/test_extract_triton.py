"""The Triton gRPC transport: a store written through a real server equals the ``--engine local`` one."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from extract_helpers import MERT, local_request, write_tone
from tritonclient.utils import InferenceServerException

from marblekit.core.served_model import POOLED
from marblekit.core.store_layout import open_pooled
from marblekit.extractor.api import extract
from marblekit.extractor.engine import InferenceError
from marblekit.extractor.triton import TritonEngine
from marblekit.serving.embedded import EmbeddedTriton, free_port
from marblekit.serving.environment import environment_problem

MISSING = environment_problem()
pytestmark = [pytest.mark.triton, pytest.mark.skipif(MISSING is not None, reason=f"no serving environment: {MISSING}")]


@pytest.fixture(scope="module")
def server(model_repo: Path, tmp_path_factory: pytest.TempPathFactory):
    log = tmp_path_factory.mktemp("triton") / "triton.log"
    with EmbeddedTriton(model_repo, grpc_port=0, http_port=0, metrics_port=0, log_path=log) as triton:
        yield triton.grpc_url


def test_triton_store_equals_local_store(server: str, model_repo: Path, tmp_path: Path) -> None:
    for index, (seconds, rate, channels) in enumerate([(5.3, 44100, 2), (2.2, 16000, 1), (4.0, 24000, 1),
                                                       (1.4, 22050, 2)]):
        write_tone(tmp_path / "cat" / f"t{index}.wav", seconds, rate=rate, channels=channels, seed=index)
    (tmp_path / "cat" / "junk.wav").write_text("not audio")
    common = dict(window_s=2.0, frames=True, frame_layers=(1, 2), block_tracks=2, batch=2)
    local, remote = tmp_path / "local.zarr", tmp_path / "triton.zarr"
    local_summary = extract(local_request(tmp_path / "cat", local, model_repo, MERT, **common))
    remote_summary = extract(dataclasses.replace(local_request(tmp_path / "cat", remote, model_repo, MERT, **common),
                                                 server=server))
    assert local_summary.failures == remote_summary.failures == [("junk.wav", local_summary.failures[0][1])]
    a, b = open_pooled(local), open_pooled(remote)
    assert a.attrs == b.attrs
    for name in ("window_track", "window_start", "window_length", "track_id", "track_status", "track_error",
                 "frame_offsets"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    for name in ("pooled", "track_pooled"):  # the server may batch differently: equal up to fp16 rounding
        x, y = getattr(a, name).astype(np.float32), getattr(b, name).astype(np.float32)
        np.testing.assert_allclose(x, y, rtol=2e-3, atol=2e-3 * np.nanmax(np.abs(x)), err_msg=name)
    frames_a, frames_b = a.frames[...].astype(np.float32), b.frames[...].astype(np.float32)
    np.testing.assert_allclose(frames_a, frames_b, rtol=2e-3, atol=2e-3 * np.abs(frames_a).max())


class FlakyClient:
    """Wraps a real client; the first ``failures`` infer calls fail with ``status`` as a busy server would."""

    def __init__(self, client, failures: int, status: str):
        self.client, self.failures, self.status, self.calls = client, failures, status, 0

    def infer(self, *args, **kwargs):
        self.calls += 1
        if self.calls <= self.failures:
            raise InferenceServerException(msg="Exceeds maximum queue size", status=self.status)
        return self.client.infer(*args, **kwargs)


def test_retries_unavailable_and_fails_fast_on_bad_requests(server: str, monkeypatch) -> None:
    monkeypatch.setattr("marblekit.serving.client.time.sleep", lambda _: None)
    engine = TritonEngine(server, MERT, attempts=4)
    waveform = np.zeros((1, 48000), dtype=np.float32)
    real = engine.client._client
    engine.client._client = FlakyClient(real, 3, "StatusCode.UNAVAILABLE")
    assert engine.infer(waveform, (POOLED,))[POOLED].shape == (1, 3, 768)
    engine.client._client = FlakyClient(real, 4, "StatusCode.DEADLINE_EXCEEDED")
    with pytest.raises(ConnectionError, match="DEADLINE_EXCEEDED.*4 failed attempts in a row"):
        engine.infer(waveform, (POOLED,))
    engine.client._client = real
    with pytest.raises(InferenceError, match="accepts"):  # too short for the model: the server says why
        engine.infer(np.zeros((1, 100), dtype=np.float32), (POOLED,))
    engine.close()


def test_unreachable_server_is_a_clear_error() -> None:
    with pytest.raises(ConnectionError, match="not ready: gave up after"):
        TritonEngine(f"127.0.0.1:{free_port('127.0.0.1')}", MERT, startup_timeout_s=1.0)
