"""Benchmarks. Speed goals are met here, never in timed tests; every ratio is measured side by side in one run.

  backbone MODEL   audio-seconds per second: transformers eager fp32 one window at a time (how the MARBLE
                   reference extracts) vs onnxruntime batched, fp32 and dynamic INT8
  probe            the probe grid of a GTZAN-sized synthetic task: a reference-style sweep (one process
                   per configuration, one .npy per item read every epoch) vs marblekit's per-probe and
                   vectorised modes; wall time, peak memory and the selected probe
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
    probe = subparsers.add_parser("probe", help="reference-style probe sweep vs marblekit's grid modes")
    probe.add_argument("--reference-runs", type=int, default=84,
                       help="reference configurations to time (fewer: extrapolated; default all 84)")
    probe.add_argument("--max-epochs", type=int, help="cap every run's epochs (default: the task's 100)")
    probe.add_argument("--layers", type=int, default=13, help="hidden states L+1 (default 13)")
    probe.add_argument("--dim", type=int, default=768, help="feature width (default 768)")
    probe.add_argument("--workers", type=int, default=0, help="per-probe workers (0 = all cores)")
    probe.add_argument("--workdir", help="where the synthetic data goes (default: a temporary folder)")


def run(args: argparse.Namespace) -> int:
    if args.benchmark == "backbone":
        from marblekit.export.bench import bench_backbone

        print(bench_backbone(args).render())
    elif args.benchmark == "probe":
        from marblekit.probes.bench import bench_probe

        print(bench_probe(args.layers, args.dim, reference_runs=args.reference_runs, max_epochs=args.max_epochs,
                          workers=args.workers, workdir=args.workdir))
    return 0
