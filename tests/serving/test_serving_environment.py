"""Locating the serving environment and the environment its server runs in (no server started)."""

from __future__ import annotations

from pathlib import Path

import pytest

from marblekit.serving.embedded import EmbeddedTriton
from marblekit.serving.environment import TritonEnvironment, locate


def test_missing_serving_environment_names_the_path_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=f"{tmp_path / 'nowhere'} has no bin/python.*scripts/install.sh"):
        locate(tmp_path / "nowhere")


def test_server_environment_puts_the_serving_venv_first_and_drops_foreign_python_paths() -> None:
    env = TritonEnvironment(venv=Path("/srv/venv"), python_version="3.11", python_libdir=Path("/py/lib"),
                            site_packages=Path("/srv/venv/lib/python3.11/site-packages"))
    base = {"PATH": "/usr/bin", "PYTHONPATH": "/main/site-packages", "LD_LIBRARY_PATH": "/opt/lib", "HOME": "/root"}
    result = env.process_env(base)
    assert result["PATH"].split(":") == ["/srv/venv/bin", "/usr/bin"]
    assert result["LD_LIBRARY_PATH"].split(":") == [
        "/py/lib", "/srv/venv/lib/python3.11/site-packages/nvidia_pytriton.libs", "/opt/lib"]
    assert "PYTHONPATH" not in result and result["HOME"] == "/root"


def test_empty_repository_is_refused_with_the_export_hint(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="has no model.*marblekit export"):
        EmbeddedTriton(tmp_path)
