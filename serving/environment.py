"""Finds the Triton server shipped in the nvidia-pytriton wheel of the serving environment (``.venv-triton``).

The serving environment is a separate venv (numpy<2, onnxruntime, nvidia-pytriton) because pytriton pins
numpy below 2 while the main environment runs numpy 2. Everything the launcher needs to run that server
outside pytriton is collected here: the binary, its backends, the Python-backend stub for the venv's
Python minor version, the Python library directory the stub links against, and the bundled shared libs.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

ENV_VARIABLE = "MARBLEKIT_TRITON_ENV"
DEFAULT_ENV_NAME = ".venv-triton"

_PROBE = (
    "import json, sys, sysconfig; print(json.dumps({'purelib': sysconfig.get_paths()['purelib'], "
    "'libdir': sysconfig.get_config_var('LIBDIR'), 'version': '%d.%d' % sys.version_info[:2]}))"
)


def default_env_path() -> Path:
    """``$MARBLEKIT_TRITON_ENV``, else ``.venv-triton`` in the working directory, else beside the source tree."""
    if os.environ.get(ENV_VARIABLE):
        return Path(os.environ[ENV_VARIABLE])
    here = Path.cwd() / DEFAULT_ENV_NAME
    if here.is_dir():
        return here
    return Path(__file__).resolve().parents[1] / DEFAULT_ENV_NAME


@dataclass(frozen=True)
class TritonEnvironment:
    """Paths of one serving environment's Triton installation."""

    venv: Path
    python_version: str  # "3.11": selects the backend stub
    python_libdir: Path  # holds libpython3.X.so, which the stub links
    site_packages: Path

    @property
    def server_root(self) -> Path:
        return self.site_packages / "pytriton" / "tritonserver"

    @property
    def binary(self) -> Path:
        return self.server_root / "bin" / "tritonserver"

    @property
    def backends(self) -> Path:
        return self.server_root / "backends"

    @property
    def caches(self) -> Path:
        return self.server_root / "caches"

    @property
    def stub(self) -> Path:
        return self.server_root / "python_backend_stubs" / self.python_version / "triton_python_backend_stub"

    @property
    def bundled_libs(self) -> Path:
        return self.site_packages / "nvidia_pytriton.libs"

    def process_env(self, base: dict[str, str]) -> dict[str, str]:
        """``base`` adjusted so the server finds its libraries and the stub imports the serving venv's packages.

        The stub picks its site-packages from the first ``python3`` on PATH, so the venv's ``bin`` goes first;
        PYTHONPATH / PYTHONHOME of the caller (often the numpy-2 main venv) must not leak into it.
        """
        env = {key: value for key, value in base.items() if key not in ("PYTHONPATH", "PYTHONHOME")}
        libraries = [str(self.python_libdir), str(self.bundled_libs)]
        if base.get("LD_LIBRARY_PATH"):
            libraries.append(base["LD_LIBRARY_PATH"])
        env["LD_LIBRARY_PATH"] = os.pathsep.join(libraries)
        env["PATH"] = os.pathsep.join([str(self.venv / "bin"), base.get("PATH", os.defpath)])
        env["VIRTUAL_ENV"] = str(self.venv)
        return env


def locate(venv: Path | None = None) -> TritonEnvironment:
    """Inspect the serving venv's interpreter and check every file the server needs is there."""
    venv = (venv or default_env_path()).absolute()
    python = venv / "bin" / "python"
    if not python.exists():
        raise FileNotFoundError(
            f"serving environment {venv} has no bin/python; create it with scripts/install.sh, or pass "
            f"--triton-env / set {ENV_VARIABLE} to a venv with serving/requirements-triton.txt installed")
    probe = subprocess.run([str(python), "-c", _PROBE], capture_output=True, text=True, check=True)
    facts = json.loads(probe.stdout)
    env = TritonEnvironment(venv=venv, python_version=facts["version"], python_libdir=Path(facts["libdir"]),
                            site_packages=Path(facts["purelib"]))
    for required in (env.binary, env.backends / "python", env.stub, env.bundled_libs):
        if not required.exists():
            raise FileNotFoundError(
                f"serving environment {venv} lacks {required}; install nvidia-pytriton there "
                f"(pip install -r serving/requirements-triton.txt)")
    return env


def environment_problem(venv: Path | None = None) -> str | None:
    """None when the serving environment is usable, else why not (tests skip with this reason)."""
    try:
        locate(venv)
    except (FileNotFoundError, subprocess.CalledProcessError) as err:
        return str(err)
    return None
