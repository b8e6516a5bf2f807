"""Benchmarks. Speed goals are met here, never in timed tests; every ratio is measured side by side in one run.

  backbone MODEL   audio-seconds per second: transformers eager fp32 one window at a time (how the MARBLE
                   reference extracts) vs onnxruntime batched, fp32 and dynamic INT8
"""

from __future__ import annotations

import argparse


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


def run(args: argparse.Namespace) -> int:
    if args.benchmark == "backbone":
        from marblekit.export.bench import bench_backbone

        print(bench_backbone(args).render())
    return 0
