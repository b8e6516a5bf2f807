"""The Triton gRPC transport: a store written through a real server equals the ``--engine local`` one."""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import itertools
import logging
import re
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from extract_helpers import HANDCRAFTED, MERT, local_request, write_tone
from tritonclient.utils import InferenceServerException

from marblekit.core.retry import RetryPolicy, describe
from marblekit.core.served_model import POOLED
from marblekit.core.store_layout import open_pooled
from marblekit.extractor.api import extract
from marblekit.extractor.engine import InferenceError
from marblekit.extractor.triton import TritonEngine
from marblekit.serving.client import DeadlineExceeded, ModelClient, ModelNotServed, ServerUnavailable
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


def test_retries_for_the_budget_saying_so_and_fails_fast_on_bad_requests(server: str) -> None:
    heard: list[str] = []
    engine = TritonEngine(server, MERT, retry_timeout_s=2.0, notify=heard.append)
    engine.client.retry = RetryPolicy(timeout_s=2.0, first_delay_s=0.05, max_delay_s=0.2)
    waveform = np.zeros((1, 48000), dtype=np.float32)
    real = engine.client._client
    engine.client._client = FlakyClient(real, 3, "StatusCode.UNAVAILABLE")
    assert engine.infer(waveform, (POOLED,))[POOLED].shape == (1, 3 * 768)
    assert len(heard) == 4 and all("overloaded: 'mert-v1-95m-2l''s request queue is full" in line
                                   for line in heard[:3])
    assert heard[3].startswith(f"Triton at {server} answered again after")
    engine.client._client = FlakyClient(real, 10**6, "StatusCode.DEADLINE_EXCEEDED")
    with pytest.raises(DeadlineExceeded) as raised:
        engine.infer(waveform, (POOLED,))
    assert re.search(r"DEADLINE_EXCEEDED.*gave up after \d+ failed attempts in \d+ s \(retry budget 2 s\)",
                     describe(raised.value))
    engine.client._client = real
    with pytest.raises(InferenceError, match="accepts"):  # too short for the model: the server says why
        engine.infer(np.zeros((1, 100), dtype=np.float32), (POOLED,))
    with pytest.raises(InferenceError, match=r"must be \[batch, samples\], got shape \[48000\]"):
        engine.infer(np.zeros(48000, dtype=np.float32), (POOLED,))
    engine.close()


def test_an_unreachable_server_is_waited_for_saying_so() -> None:
    heard: list[str] = []
    url = f"127.0.0.1:{free_port('127.0.0.1')}"
    with pytest.raises(ServerUnavailable, match="gave up after 1 s: .*unavailable"):
        TritonEngine(url, MERT, retry_timeout_s=1.0, notify=heard.append)
    assert len(heard) == 1 and heard[0].startswith(f"waiting up to 1 s for Triton at {url} to serve '{MERT}'")


def test_a_model_the_server_lacks_fails_at_once_naming_those_it_has(server: str) -> None:
    started = time.monotonic()
    with pytest.raises(ModelNotServed, match=f"has no model 'nope'; it serves: {HANDCRAFTED}, {MERT}"):
        TritonEngine(server, "nope", retry_timeout_s=60.0)
    assert time.monotonic() - started < 30, "a missing model was waited for"


def test_a_30_s_outage_mid_run_is_ridden_out(model_repo: Path, tmp_path: Path, monkeypatch, caplog) -> None:
    """Triton stops after a few requests and comes back 30 s later, on the same port: the job waits, says so,
    and finishes with the store an uninterrupted run writes."""
    for index in range(6):
        write_tone(tmp_path / "cat" / f"t{index}.wav", 2.5, seed=index)
    common = dict(window_s=2.0, block_tracks=1, batch=1, in_flight=1)
    local = extract(local_request(tmp_path / "cat", tmp_path / "local.zarr", model_repo, **common))
    with EmbeddedTriton(model_repo, [HANDCRAFTED], grpc_port=0, http_port=0, metrics_port=0,
                        log_path=tmp_path / "triton.log") as triton:
        stopped, calls, real_infer = threading.Event(), itertools.count(), ModelClient.infer

        def infer(client: ModelClient, *args, **kwargs):
            if next(calls) == 3:
                triton.stop()
                stopped.set()
            return real_infer(client, *args, **kwargs)

        monkeypatch.setattr(ModelClient, "infer", infer)
        request = dataclasses.replace(local_request(tmp_path / "cat", tmp_path / "triton.zarr", model_repo, **common),
                                      server=triton.grpc_url, retry_timeout_s=120.0)
        with caplog.at_level(logging.WARNING), cf.ThreadPoolExecutor(1) as pool:
            job = pool.submit(extract, request)
            assert stopped.wait(60), "the job never reached its fourth request"
            time.sleep(30)
            triton.start()  # from this thread: the server lives as long as the thread that started it
            remote = job.result(timeout=120)
    assert remote.failures == local.failures == [] and remote.done == local.done == 6
    waits = [record.getMessage() for record in caplog.records if "waiting" in record.getMessage()]
    assert waits and "unavailable" in waits[0]
    assert any("answered again after" in record.getMessage() for record in caplog.records)
    a, b = open_pooled(tmp_path / "local.zarr"), open_pooled(tmp_path / "triton.zarr")
    np.testing.assert_array_equal(a.window_start, b.window_start)
    np.testing.assert_allclose(a.pooled.astype(np.float32), b.pooled.astype(np.float32), rtol=2e-3, atol=1e-3)
