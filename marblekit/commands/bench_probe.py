"""The probe grid of a GTZAN-sized synthetic task: a reference-style sweep (one process per configuration,
one .npy per item read every epoch) against marblekit's per-layer, per-probe and vectorised modes; wall time, CPU time,
peak memory and the selected probe of each."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reference-runs", type=int, default=84,
                        help="reference configurations to time (fewer: extrapolated; default all 84)")
    parser.add_argument("--max-epochs", type=int, help="cap every run's epochs (default: the task's 100)")
    parser.add_argument("--layers", type=int, default=13, help="hidden states L+1 (default 13)")
    parser.add_argument("--dim", type=int, default=768, help="feature width (default 768)")
    parser.add_argument("--workers", type=int, default=0,
                        help="workers of the per-layer and per-probe modes (0 = all cores)")
    parser.add_argument("--workdir", help="where the synthetic data goes (default: a temporary folder)")


def run(args: argparse.Namespace) -> int:
    from marblekit.probes.bench import bench_probe

    print(bench_probe(args.layers, args.dim, reference_runs=args.reference_runs, max_epochs=args.max_epochs,
                      workers=args.workers, workdir=args.workdir))
    return 0
