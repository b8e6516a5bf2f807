"""``marblekit serve-features`` as a user runs it: one command brings up the embedded Triton and the service
on loopback, and SIGTERM lets the call in flight finish before everything stops."""

from __future__ import annotations

import concurrent.futures as cf
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from serving_helpers import read_banner
from test_feature_service import HANDCRAFTED, WINDOW, wav_bytes

from marblekit.core.backbones import get_backbone
from marblekit.export.pipeline import export_model
from marblekit.features.client import FeatureClient
from marblekit.serving.environment import environment_problem

MISSING = environment_problem()
pytestmark = [pytest.mark.triton, pytest.mark.skipif(MISSING is not None, reason=f"no serving environment: {MISSING}")]


def _in_flight(metrics_url: str) -> float:
    text = urllib.request.urlopen(metrics_url, timeout=10).read().decode()
    return float(re.search(r"^marblekit_feature_requests_in_flight (\S+)$", text, re.M).group(1))


def test_one_command_serves_and_sigterm_drains_the_call_in_flight(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    export_model(get_backbone(HANDCRAFTED), repo, check_parity=False)
    command = [sys.executable, "-m", "marblekit.app.cli", "serve-features", "--repo", str(repo), "--port", "0",
               "--metrics-port", "0", "--triton-log", str(tmp_path / "triton.log")]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as serve:
        text = read_banner(serve)
        address = re.search(r"feature service on (127\.0\.0\.1:\d+)", text).group(1)
        metrics_url = re.search(r"metrics: (\S+)", text).group(1)
        with FeatureClient(address) as client, cf.ThreadPoolExecutor(1) as pool:
            assert [model.name for model in client.list_models()] == [HANDCRAFTED]
            long_call = pool.submit(client.embed, wav_bytes(600.0, 4, rate=16000, channels=1), HANDCRAFTED,
                                    window_s=WINDOW)
            deadline = time.monotonic() + 60
            while _in_flight(metrics_url) < 1:
                assert time.monotonic() < deadline and not long_call.done(), "the call never reached the service"
                time.sleep(0.01)
            serve.send_signal(signal.SIGTERM)
            answer = long_call.result(timeout=120)
        rest = serve.communicate(timeout=60)[0]
    assert answer.pooled.shape == (300, 4, 128)
    assert serve.returncode == 0, text + rest
    assert "draining in-flight calls" in rest and rest.rstrip().endswith("stopped")
    triton = subprocess.run(["pgrep", "-f", f"--model-repository={repo}"], capture_output=True, text=True)
    assert triton.stdout == "", "the embedded Triton outlived serve-features"
