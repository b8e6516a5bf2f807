"""One meaning per exit code, and one error line without a traceback for every expected failure."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from marblekit.app.cli import main
from marblekit.app.exit_codes import ExitCode
from marblekit.core.backbones import get_backbone
from marblekit.export import pipeline
from marblekit.export.parity import ParityResult
from marblekit.serving.environment import environment_problem


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "marblekit.app.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_usage_errors_exit_2_without_a_traceback(tmp_path: Path) -> None:
    missing_flag = cli("extract", str(tmp_path))
    assert missing_flag.returncode == ExitCode.USAGE and "required" in missing_flag.stderr
    missing_catalog = cli("extract", str(tmp_path / "nowhere"), "--model", "m", "--store", str(tmp_path / "s"),
                          "--engine", "local")
    assert missing_catalog.returncode == ExitCode.USAGE
    assert missing_catalog.stderr.startswith("marblekit extract: error: catalog")
    assert "Traceback" not in missing_catalog.stderr


def test_a_failed_parity_gate_exits_4(tmp_path: Path, monkeypatch, capsys) -> None:
    def failing(*_args, **_kwargs) -> list[ParityResult]:
        return [ParityResult((1, 16000), "fp32", max_abs=1.0, min_cosine=0.5)]

    monkeypatch.setattr(pipeline, "check_parity_of", failing)
    assert main(["export", "handcrafted", "--repo", str(tmp_path)]) == ExitCode.GATE_FAILED
    assert "PARITY FAILED" in capsys.readouterr().out


@pytest.mark.triton
@pytest.mark.skipif(environment_problem() is not None, reason=f"no serving environment: {environment_problem()}")
def test_a_server_that_does_not_start_exits_5_with_its_log(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    pipeline.export_model(get_backbone("handcrafted"), repo, check_parity=False)
    (repo / "handcrafted" / "1" / "model.py").write_text("raise ImportError('broken on purpose')\n")
    result = cli("serve", "--repo", str(repo), "--grpc-port", "0", "--http-port", "0", "--metrics-port", "0",
                 "--log", str(tmp_path / "triton.log"))
    assert result.returncode == ExitCode.ERROR, result.stderr
    # one error line from marblekit (then the server log's tail, which names the cause), no traceback of ours
    assert result.stderr.startswith("marblekit serve: error:") and "broken on purpose" in result.stderr
    assert "marblekit/app/cli.py" not in result.stderr


def test_an_unreachable_server_exits_3_after_the_retry_budget(tmp_path: Path) -> None:
    from marblekit.serving.embedded import free_port

    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "a.wav").write_bytes(b"RIFF")
    url = f"127.0.0.1:{free_port('127.0.0.1')}"
    result = cli("extract", str(tmp_path / "cat"), "--model", "handcrafted", "--store", str(tmp_path / "s.zarr"),
                 "--server", url, "--retry-timeout", "1", "--no-progress")
    assert result.returncode == ExitCode.SERVER_UNAVAILABLE, result.stderr
    assert f"waiting up to 1 s for Triton at {url} to serve 'handcrafted'" in result.stderr
    assert result.stderr.splitlines()[-1].startswith("marblekit extract: error: gave up after 1 s")
    assert "Traceback" not in result.stderr and not (tmp_path / "s.zarr").exists()
