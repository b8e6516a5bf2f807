"""A minimal Triton server for the extractor's transport test (serving.md §3.2, the nvidia-pytriton binary).

The embedded launcher (``marblekit serve``) is developed separately; this fixture only needs one server on
free ports for the duration of a test module, and skips when the serving environment is not installed.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sysconfig
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import tritonclient.grpc as grpcclient

SERVING_VENV = Path(__file__).resolve().parents[1] / ".venv-triton"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _venv_paths() -> tuple[Path, Path, str]:
    """The serving venv's site-packages, its Python's libdir and version (asked of that Python itself)."""
    python = SERVING_VENV / "bin" / "python"
    code = ("import sys, sysconfig; print(sysconfig.get_paths()['purelib']); "
            "print(sysconfig.get_config_var('LIBDIR')); print('%d.%d' % sys.version_info[:2])")
    purelib, libdir, version = subprocess.run([str(python), "-c", code], capture_output=True, text=True,
                                              check=True).stdout.split()
    return Path(purelib), Path(libdir), version


def available() -> bool:
    return (SERVING_VENV / "bin" / "python").exists() and sysconfig.get_platform().startswith("linux")


@contextmanager
def triton_server(repo: Path, workdir: Path, timeout_s: float = 120.0) -> Iterator[str]:
    """Serve ``repo``; yields the gRPC ``host:port``. SIGTERM and wait on exit."""
    purelib, libdir, version = _venv_paths()
    server_dir = purelib / "pytriton" / "tritonserver"
    backends = workdir / "backends"
    shutil.copytree(server_dir / "backends", backends, dirs_exist_ok=True)
    shutil.copy2(server_dir / "python_backend_stubs" / version / "triton_python_backend_stub", backends / "python")
    grpc_port, http_port, metrics_port = _free_port(), _free_port(), _free_port()
    env = dict(os.environ, PATH=f"{SERVING_VENV / 'bin'}:{os.environ.get('PATH', '')}",
               LD_LIBRARY_PATH=f"{libdir}:{purelib / 'nvidia_pytriton.libs'}")
    env.pop("VIRTUAL_ENV", None)
    log = (workdir / "triton.log").open("w")
    process = subprocess.Popen(
        [str(server_dir / "bin" / "tritonserver"), f"--model-repository={repo}", f"--backend-directory={backends}",
         f"--cache-directory={server_dir / 'caches'}", "--grpc-address=127.0.0.1", "--http-address=127.0.0.1",
         "--metrics-address=127.0.0.1", f"--grpc-port={grpc_port}", f"--http-port={http_port}",
         f"--metrics-port={metrics_port}", "--backend-config=python,shm-default-byte-size=67108864"],
        stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"127.0.0.1:{grpc_port}"
    try:
        client = grpcclient.InferenceServerClient(url)
        give_up = time.monotonic() + timeout_s
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"tritonserver exited with {process.returncode}; see {workdir / 'triton.log'}")
            try:
                if client.is_server_ready():
                    break
            except Exception:  # not listening yet
                pass
            if time.monotonic() > give_up:
                raise RuntimeError(f"tritonserver not ready after {timeout_s:g} s; see {workdir / 'triton.log'}")
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
