"""Benchmarks. Speed goals are met here, never in timed tests; every ratio is measured side by side in one run.

  backbone MODEL   audio-seconds per second: transformers eager fp32 one window at a time (how the MARBLE
                   reference extracts) vs onnxruntime batched, fp32 and dynamic INT8
  extract MODEL    audio-seconds per second: marblekit extract end to end vs the bare engine on the same
                   windows vs a MARBLE-style loop; store bytes per audio-hour vs fp32 .npy
  serve MODEL      windows/s through the embedded Triton vs in-process onnxruntime on the same batches,
                   pooled and full outputs, and the serving overhead
"""

from __future__ import annotations

import argparse

from . import bench_extract


def add_arguments(parser: argparse.ArgumentParser) -> None:
    subparsers = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
    backbone = subparsers.add_parser("backbone", help="reference eager loop vs onnxruntime fp32 / INT8")
    backbone.add_argument("model", help="backbone name (see marblekit models)")
    weights = backbone.add_mutually_exclusive_group(required=True)
    weights.add_argument("--checkpoint", help="local HF-format checkpoint directory")
    weights.add_argument("--random-init", action="store_true", help="seeded random weights")
    backbone.add_argument("--windows", type=int, default=8, help="windows per measurement (default 8)")
    backbone.add_argument("--window-seconds", type=float, default=5.0, help="window length (default 5 s)")
    backbone.add_argument("--batch", type=int, default=4, help="onnxruntime batch size (default 4)")
    backbone.add_argument("--threads", type=int, default=0, help="threads for both runtimes (0 = all cores)")
    backbone.add_argument("--workdir", default="work/bench", help="where the exported graphs go")
    bench_extract.add_arguments(subparsers.add_parser(
        "extract", help="extractor end to end vs bare engine vs MARBLE-style loop; store size"))
    serve = subparsers.add_parser("serve", help="embedded Triton vs in-process onnxruntime, same batches")
    serve.add_argument("model", help="model name in --repo (export it first with marblekit export)")
    serve.add_argument("--repo", default="model_repository", help="model repository (default model_repository/)")
    serve.add_argument("--windows", type=int, default=16, help="windows per measurement (default 16)")
    serve.add_argument("--window-seconds", type=float, default=5.0, help="window length (default 5 s)")
    serve.add_argument("--batch", type=int, default=4, help="windows per request / onnxruntime call (default 4)")
    serve.add_argument("--in-flight", type=int, default=1, help="requests (and calls) in flight (default 1)")
    serve.add_argument("--repeats", type=int, default=3, help="alternating timed rounds per side (default 3)")
    serve.add_argument("--triton-env", help="serving venv (default $MARBLEKIT_TRITON_ENV or .venv-triton)")


def run(args: argparse.Namespace) -> int:
    if args.benchmark == "backbone":
        from marblekit.export.bench import bench_backbone

        print(bench_backbone(args).render())
    if args.benchmark == "extract":
        return bench_extract.run(args)
    if args.benchmark == "serve":
        from marblekit.serving.bench import bench_serve

        print(bench_serve(args).render())
    return 0
