"""A feature store larger than the memory budget (default MTG-sized: 477k windows x 25 hidden states x 1024,
24 GB) probed with --memory-gb: peak resident and anonymous memory of the whole job against the store's size.
Needs twice the store's size on disk (the store and the memory-mapped scratch copy)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--windows", type=int, default=477_000, help="pooled windows in the store (default 477000)")
    parser.add_argument("--windows-per-track", type=int, default=9, help="windows of each track (default 9)")
    parser.add_argument("--layers", type=int, default=25, help="hidden states L+1 (default 25)")
    parser.add_argument("--dim", type=int, default=1024, help="feature width (default 1024)")
    parser.add_argument("--memory-gb", type=float, default=4.0, help="marblekit probe --memory-gb (default 4)")
    parser.add_argument("--max-epochs", type=int, default=1, help="epochs of every probe (default 1)")
    parser.add_argument("--learning-rates", type=float, nargs="+", default=[1e-3],
                        help="learning rates of the grid (default 1e-3 only: the memory does not depend on them)")
    parser.add_argument("--workdir", help="where the store and scratch go (default: a temporary folder)")


def run(args: argparse.Namespace) -> int:
    from marblekit.probes.bench import bench_probe_memory

    print(bench_probe_memory(args.windows, args.windows_per_track, args.layers, args.dim, args.memory_gb,
                             max_epochs=args.max_epochs, learning_rates=tuple(args.learning_rates),
                             workdir=args.workdir))
    return 0
