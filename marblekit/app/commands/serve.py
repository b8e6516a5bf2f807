"""Serve a model repository with the embedded Triton (the nvidia-pytriton wheel's tritonserver, CPU, Python
backend running onnxruntime). Models load explicitly; the server listens on loopback, logs to a file and
stops with all its processes on Ctrl-C or SIGTERM. On GPUs, run the NGC Triton container instead (README)."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from types import FrameType

from marblekit.app.exit_codes import ExitCode


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repo", type=Path, default=Path("model_repository"),
                        help="Triton model repository written by marblekit export (default model_repository/)")
    parser.add_argument("--models", help="comma-separated models to load (default: every model in --repo)")
    parser.add_argument("--host", default="127.0.0.1", help="address of all endpoints (default 127.0.0.1)")
    parser.add_argument("--grpc-port", type=int, default=8001, help="gRPC port (default 8001; 0 = any free port)")
    parser.add_argument("--http-port", type=int, default=8000, help="HTTP port (default 8000; 0 = any free port)")
    parser.add_argument("--metrics-port", type=int, default=8002,
                        help="Prometheus metrics port (default 8002; 0 = any free port)")
    parser.add_argument("--log", type=Path, default=Path("work/triton.log"),
                        help="server log, appended to (default work/triton.log)")
    parser.add_argument("--triton-env", type=Path,
                        help="serving venv with nvidia-pytriton (default $MARBLEKIT_TRITON_ENV or .venv-triton)")
    parser.add_argument("--startup-timeout", type=float, default=120.0,
                        help="seconds to wait for the server and its models to be ready (default 120)")


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # unwinds into EmbeddedTriton.__exit__, like Ctrl-C


def run(args: argparse.Namespace) -> int:
    from marblekit.serving.embedded import EmbeddedTriton

    models = [name.strip() for name in args.models.split(",") if name.strip()] if args.models else None
    server = EmbeddedTriton(args.repo, models, host=args.host, grpc_port=args.grpc_port, http_port=args.http_port,
                            metrics_port=args.metrics_port, log_path=args.log, triton_env=args.triton_env,
                            startup_timeout=args.startup_timeout)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        with server:
            print(server.describe())
            print("Ctrl-C stops it.", flush=True)
            status = server.wait()
            print(f"tritonserver exited by itself with status {status}\n{server.log_tail()}", file=sys.stderr)
            return ExitCode.ERROR
    except KeyboardInterrupt:
        print("stopped", flush=True)
        return ExitCode.OK
