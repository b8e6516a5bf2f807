"""How fast a backbone turns audio into hidden states here: transformers eager fp32 one window at a time (how
the MARBLE reference extracts) against onnxruntime batched in fp32 and with dynamic INT8, in one run."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="backbone name (see marblekit models)")
    weights = parser.add_mutually_exclusive_group(required=True)
    weights.add_argument("--checkpoint", help="local HF-format checkpoint directory")
    weights.add_argument("--random-init", action="store_true", help="seeded random weights")
    parser.add_argument("--windows", type=int, default=8, help="windows per measurement (default 8)")
    parser.add_argument("--window-seconds", type=float, default=5.0, help="window length (default 5 s)")
    parser.add_argument("--batch", type=int, default=4, help="onnxruntime batch size (default 4)")
    parser.add_argument("--threads", type=int, default=0, help="threads for both runtimes (0 = all cores)")
    parser.add_argument("--workdir", default="work/bench", help="where the exported graphs go")


def run(args: argparse.Namespace) -> int:
    from marblekit.export.bench import bench_backbone

    print(bench_backbone(args).render())
    return 0
