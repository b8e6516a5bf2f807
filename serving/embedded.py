"""The embedded Triton: the pytriton wheel's ``tritonserver`` serving a model repository on this machine.

``EmbeddedTriton`` starts the server with explicit model control on loopback addresses, waits until it
reports ready, and stops it with its whole process group (the server and its Python-backend stubs), so no
process outlives it. The group is its own, so a terminal's Ctrl-C reaches only the launcher, which then stops
the server; the session is the caller's, so the server competes for CPU in the caller's scheduling group (a
new session would get its own autogroup share and distort ``marblekit bench serve`` on a busy machine).
It is a context manager for the extractor, the demo and the tests::

    with EmbeddedTriton(Path("model_repository"), ["mert-v1-95m"], grpc_port=0, http_port=0, metrics_port=0) as server:
        client = ModelClient(server.grpc_url, "mert-v1-95m")

A port of 0 picks a free port once, at the first start; restarts keep it so clients can reconnect.
The server is bound to the thread that starts it (Linux parent-death signal): if that thread ends without
stopping it, the server stops too, so start it from the thread that owns its lifetime.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType

from .environment import TritonEnvironment, locate

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
_SHM_DIR = Path("/dev/shm")
_LOG_TAIL_LINES = 40


class TritonStartupError(RuntimeError):
    """The server exited or never became ready; the message ends with the tail of its log. ``crashed``: it
    was killed by a signal rather than exiting with an error of its own."""

    def __init__(self, message: str, crashed: bool = False):
        super().__init__(message)
        self.crashed = crashed


def free_ports(host: str, count: int) -> list[int]:
    """``count`` different ports the OS reports free on ``host`` right now (bound together, so that no two are the
    same: one at a time, the OS may hand the same port out twice)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for _ in range(count)]
        for sock in sockets:
            sock.bind((host, 0))
        return [int(sock.getsockname()[1]) for sock in sockets]


def free_port(host: str) -> int:
    """A port the OS reports free on ``host`` right now."""
    return free_ports(host, 1)[0]


def repository_models(repo: Path) -> list[str]:
    """Names of the models in ``repo`` (directories with a ``config.pbtxt``)."""
    return sorted(path.parent.name for path in repo.glob("*/config.pbtxt"))


def _die_with_parent_hook() -> Callable[[], None]:
    """A pre-exec hook: the server gets SIGTERM if the thread that started it dies without stopping it.

    libc is resolved here, in the parent, so the forked child only makes the one system call.
    """
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    return lambda: prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    try:
        os.killpg(process.pid, signum)  # the group id is the server's pid (process_group=0)
    except ProcessLookupError:
        pass


class EmbeddedTriton:
    """One tritonserver process (and its process group) serving ``models`` of ``repo``."""

    def __init__(self, repo: Path, models: Sequence[str] | None = None, *, host: str = "127.0.0.1",
                 grpc_port: int = 8001, http_port: int = 8000, metrics_port: int = 8002,
                 log_path: Path | None = None, triton_env: Path | None = None, startup_timeout: float = 120.0,
                 exit_timeout: int = 10, shm_default_bytes: int = 64 << 20, shm_growth_bytes: int = 64 << 20):
        self.repo = Path(repo).absolute()
        self.models = self._check_models(models)
        self.host = host
        self._requested_ports = {"grpc": grpc_port, "http": http_port, "metrics": metrics_port}
        self.ports: dict[str, int] = {}
        self.log_path = Path(log_path).absolute() if log_path else None
        self.env: TritonEnvironment = locate(triton_env)
        self.startup_timeout = startup_timeout
        self.exit_timeout = exit_timeout
        self.shm_default_bytes = shm_default_bytes
        self.shm_growth_bytes = shm_growth_bytes
        self._process: subprocess.Popen[bytes] | None = None
        self._workdir: Path | None = None
        self._shm_prefix = ""

    def _check_models(self, models: Sequence[str] | None) -> list[str]:
        if not self.repo.is_dir():
            raise FileNotFoundError(f"model repository {self.repo} does not exist; run `marblekit export` first")
        available = repository_models(self.repo)
        if not available:
            raise FileNotFoundError(f"model repository {self.repo} has no model (no */config.pbtxt); "
                                    f"run `marblekit export MODEL --repo {self.repo}` first")
        missing = [name for name in models or () if name not in available]
        if missing:
            raise ValueError(f"--models: {', '.join(missing)} not in {self.repo}; available: {', '.join(available)}")
        return list(models) if models else available

    # ----------------------------------------------------------------------------------------------- endpoints
    @property
    def grpc_url(self) -> str:
        return f"{self.host}:{self.ports['grpc']}"

    @property
    def http_url(self) -> str:
        return f"{self.host}:{self.ports['http']}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.host}:{self.ports['metrics']}/metrics"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def log_file(self) -> Path:
        if self.log_path:
            return self.log_path
        if not self._workdir:
            raise RuntimeError("the server has not been started")
        return self._workdir / "triton.log"

    def describe(self) -> str:
        return "\n".join([
            f"Triton ready (pid {self.pid}), serving {', '.join(self.models)} from {self.repo}",
            f"  gRPC     {self.grpc_url}",
            f"  HTTP     http://{self.http_url}",
            f"  metrics  {self.metrics_url}",
            f"  log      {self.log_file}",
        ])

    # ----------------------------------------------------------------------------------------------- lifecycle
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> "EmbeddedTriton":
        """Launch the server and return once it (and every model) is ready. A server killed by a signal while
        starting (tritonserver 2.51 now and then aborts in its gRPC poller under load, "epoll_wait error: Bad
        file descriptor") is launched once more; one that exits with an error status is not."""
        try:
            return self._launch()
        except TritonStartupError as err:
            if not err.crashed:
                raise
            log.warning("tritonserver crashed while starting; starting it again:\n%s", err)
            return self._launch()

    def _launch(self) -> "EmbeddedTriton":
        if self.running():
            raise RuntimeError(f"Triton is already running (pid {self.pid})")
        self._reap()
        unset = [name for name, port in self._requested_ports.items() if not port and name not in self.ports]
        self.ports.update({name: port for name, port in self._requested_ports.items() if port})
        self.ports.update(zip(unset, free_ports(self.host, len(unset))))
        self._workdir = Path(tempfile.mkdtemp(prefix="marblekit-triton-"))
        self._shm_prefix = f"marblekit{os.getpid()}-{uuid.uuid4().hex[:8]}-"  # this server's python-backend regions
        backends = self._workdir / "backends"
        shutil.copytree(self.env.backends, backends)
        shutil.copy2(self.env.stub, backends / "python" / self.env.stub.name)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as log:
            self._process = process = subprocess.Popen(
                self._command(backends), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=self.env.process_env(dict(os.environ)), process_group=0,
                preexec_fn=_die_with_parent_hook())
        try:
            self._wait_ready(process)
        except BaseException:
            self.stop()
            raise
        return self

    def _command(self, backends: Path) -> list[str]:
        return [
            str(self.env.binary),
            f"--model-repository={self.repo}",
            f"--backend-directory={backends}",
            f"--cache-directory={self.env.caches}",
            "--model-control-mode=explicit",
            *[f"--load-model={name}" for name in self.models],
            "--strict-readiness=true",
            "--exit-on-error=true",
            "--disable-auto-complete-config",
            f"--exit-timeout-secs={self.exit_timeout}",
            f"--grpc-address={self.host}", f"--grpc-port={self.ports['grpc']}",
            f"--http-address={self.host}", f"--http-port={self.ports['http']}",
            f"--metrics-address={self.host}", f"--metrics-port={self.ports['metrics']}",
            "--allow-gpu-metrics=false",
            f"--backend-config=python,shm-default-byte-size={self.shm_default_bytes}",
            f"--backend-config=python,shm-growth-byte-size={self.shm_growth_bytes}",
            f"--backend-config=python,shm-region-prefix-name={self._shm_prefix}",
        ]

    def _wait_ready(self, process: subprocess.Popen[bytes]) -> None:
        url = f"http://{self.http_url}/v2/health/ready"
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never via a proxy
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise TritonStartupError(f"tritonserver exited with status {process.returncode} while "
                                         f"starting\n{self.log_tail()}", crashed=process.returncode < 0)
            try:
                with opener.open(url, timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.25)
        raise TritonStartupError(f"tritonserver was not ready after {self.startup_timeout:.0f} s\n{self.log_tail()}")

    def wait(self) -> int:
        """Block until the server exits; its exit status."""
        if not self._process:
            raise RuntimeError("the server has not been started")
        return self._process.wait()

    def stop(self) -> None:
        """SIGTERM the process group (Triton drains in-flight requests), SIGKILL what is left after the grace."""
        if self._process is not None:
            _signal_group(self._process, signal.SIGTERM)
            try:
                self._process.wait(timeout=self.exit_timeout + 5)
            except subprocess.TimeoutExpired:
                _signal_group(self._process, signal.SIGKILL)
                self._process.wait()
        self._reap()

    def _reap(self) -> None:
        """After the server is gone: kill stragglers of its group, remove the shared-memory regions a killed
        server leaves behind, the backend copy and the default log."""
        if self._process is not None:
            _signal_group(self._process, signal.SIGKILL)
            self._process.wait()
            self._process = None
        if self._shm_prefix:
            for region in _SHM_DIR.glob(f"{self._shm_prefix}*"):
                region.unlink(missing_ok=True)
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        try:
            text = self.log_file.read_text(errors="replace").splitlines()
        except (FileNotFoundError, RuntimeError):
            return "(no log)"
        return f"--- last {min(lines, len(text))} lines of {self.log_file} ---\n" + "\n".join(text[-lines:])

    def __enter__(self) -> "EmbeddedTriton":
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
