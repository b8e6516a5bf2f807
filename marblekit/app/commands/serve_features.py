"""Serve the feature service (marblekit.features.v1.Features, proto/) for apps: audio in, features out, over
gRPC, with health checking, server reflection, a content cache and Prometheus metrics. Against a running
Triton (--triton HOST:PORT, e.g. the NGC container on a GPU) or, without it, an embedded CPU Triton started
here for the models of --repo (on loopback only, whatever --host says: apps reach models through the
service). Listens on loopback unless --host says otherwise; SIGTERM or Ctrl-C drains in-flight calls, then
stops the service and the embedded Triton."""

from __future__ import annotations

import argparse
import contextlib
import signal
from pathlib import Path
from types import FrameType

from marblekit.app.exit_codes import ExitCode
from marblekit.core.store_location import StoreLocation, store_location


def add_arguments(parser: argparse.ArgumentParser) -> None:
    triton = parser.add_argument_group("Triton")
    triton.add_argument("--triton", metavar="HOST:PORT", help="a running Triton's gRPC endpoint (default: start "
                        "the embedded CPU Triton for --repo)")
    triton.add_argument("--repo", type=Path, default=Path("model_repository"),
                        help="model repository of the embedded Triton (default model_repository/)")
    triton.add_argument("--models", help="comma-separated models to serve (default: every model in --repo; "
                        "required with --triton)")
    triton.add_argument("--triton-env", type=Path, help="serving venv of the embedded Triton (default "
                        "$MARBLEKIT_TRITON_ENV or .venv-triton)")
    triton.add_argument("--triton-log", type=Path, default=Path("work/triton.log"),
                        help="the embedded Triton's log (default work/triton.log)")
    listen = parser.add_argument_group("listening and security")
    listen.add_argument("--host", default="127.0.0.1", help="address of the service and metrics (default 127.0.0.1)")
    listen.add_argument("--port", type=int, default=50051, help="gRPC port (default 50051; 0 = any free port)")
    listen.add_argument("--metrics-port", type=int, default=9464,
                        help="Prometheus metrics port (default 9464; 0 = any free port; -1 = none)")
    listen.add_argument("--tls-cert", type=Path, help="PEM certificate chain: serve TLS (with --tls-key)")
    listen.add_argument("--tls-key", type=Path, help="PEM private key of --tls-cert")
    listen.add_argument("--token-file", type=Path,
                        help="file holding a bearer token every call must present (health checks excepted)")
    data = parser.add_argument_group("stores and cache")
    data.add_argument("--store", action="append", default=[], metavar="NAME=PATH",
                      help="an extracted store Lookup may read, by NAME: a folder or an fsspec URL (s3://...); "
                      "repeat for more")
    data.add_argument("--cache-mb", type=float, default=512.0, help="memory for cached answers (default 512 MB)")
    data.add_argument("--cache-dir", type=Path, help="also keep cached answers in this Zarr group, across restarts")
    limits = parser.add_argument_group("limits")
    limits.add_argument("--max-audio-s", type=float, default=3600.0, help="longest audio a call may send (3600 s)")
    limits.add_argument("--max-message-mb", type=float, default=64.0,
                        help="largest gRPC message (default 64 MB; longer audio goes through EmbedStream)")
    limits.add_argument("--deadline", type=float, default=300.0, help="seconds a call may take (default 300)")
    limits.add_argument("--max-concurrent", type=int, default=128,
                        help="calls served at once; more get RESOURCE_EXHAUSTED (default 128)")
    limits.add_argument("--batch-delay-ms", type=float, default=5.0,
                        help="how long a window waits for others of its length to share a Triton call (default 5)")


def parse_stores(items: list[str]) -> dict[str, StoreLocation]:
    stores = {}
    for item in items:
        name, _, path = item.partition("=")
        if not name or not path:
            raise ValueError(f"--store {item!r}: expected NAME=PATH")
        stores[name] = store_location(path)
    return stores


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    from marblekit.serving.auth import read_token
    from marblekit.serving.embedded import EmbeddedTriton, repository_models
    from marblekit.serving.feature_server import FeatureServer, ServerSettings
    from marblekit.serving.feature_service import Limits

    models = [name.strip() for name in args.models.split(",") if name.strip()] if args.models else None
    if args.triton and not models:
        raise ValueError("--triton needs --models: the models of that server to serve")
    settings = ServerSettings(
        host=args.host, port=args.port, metrics_port=None if args.metrics_port < 0 else args.metrics_port,
        tls_cert=args.tls_cert, tls_key=args.tls_key, token=read_token(args.token_file) if args.token_file else None,
        max_message_bytes=int(args.max_message_mb * 2**20), max_concurrent=args.max_concurrent,
        cache_bytes=int(args.cache_mb * 2**20), cache_dir=args.cache_dir, stores=parse_stores(args.store),
        limits=Limits(max_audio_s=args.max_audio_s, deadline_s=args.deadline, batch_delay_s=args.batch_delay_ms / 1e3))
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    with contextlib.ExitStack() as stack:
        try:
            url = args.triton
            if url is None:
                models = models or repository_models(args.repo)
                triton = stack.enter_context(EmbeddedTriton(args.repo, models, grpc_port=0, http_port=0,
                                                            metrics_port=0, log_path=args.triton_log,
                                                            triton_env=args.triton_env))
                url = triton.grpc_url
            server = stack.enter_context(FeatureServer(url, models, settings))
            print(f"feature service on {server.address} ({'TLS' if args.tls_cert else 'plaintext'}"
                  f"{', token required' if settings.token else ''}) for {', '.join(models)} via Triton at {url}")
            if server.metrics_port is not None:
                print(f"metrics: http://{args.host}:{server.metrics_port}/metrics")
            print("Ctrl-C stops it.", flush=True)
            server.wait()
        except KeyboardInterrupt:
            print("draining in-flight calls, then stopping", flush=True)
    print("stopped", flush=True)
    return ExitCode.OK
