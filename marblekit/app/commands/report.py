"""Render probe results across backbones: a MARBLE-style markdown table (test scores of the
validation-selected probe, Avg. as the paper computes it) and a per-layer score plot, from every results.json
under the given folders."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dirs", type=Path, nargs="+", help="folders holding results.json files (searched recursively)")
    parser.add_argument("--out", type=Path, default=Path("report"), help="output folder (default: report)")


def run(args: argparse.Namespace) -> int:
    from marblekit.probes.report import write_report

    print(write_report(args.dirs, args.out))
    print(f"wrote {args.out / 'table.md'} and {args.out / 'layers.png'}")
    return 0
