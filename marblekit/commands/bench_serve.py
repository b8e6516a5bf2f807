"""What serving costs: windows per second through the embedded Triton against in-process onnxruntime on the
same batches, for the pooled and the full outputs, and the overhead in percent."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="model name in --repo (export it first with marblekit export)")
    parser.add_argument("--repo", default="model_repository", help="model repository (default model_repository/)")
    parser.add_argument("--windows", type=int, default=16, help="windows per measurement (default 16)")
    parser.add_argument("--window-seconds", type=float, default=5.0, help="window length (default 5 s)")
    parser.add_argument("--batch", type=int, default=4, help="windows per request / onnxruntime call (default 4)")
    parser.add_argument("--in-flight", type=int, default=1, help="requests (and calls) in flight (default 1)")
    parser.add_argument("--repeats", type=int, default=3, help="alternating timed rounds per side (default 3)")
    parser.add_argument("--triton-env", help="serving venv (default $MARBLEKIT_TRITON_ENV or .venv-triton)")


def run(args: argparse.Namespace) -> int:
    from marblekit.serving.bench import bench_serve

    print(bench_serve(args).render())
    return 0
