"""List the backbones marblekit knows: sample rate, frame rate, layers, width (the range, where layers differ),
input normalisation and where their weights come from."""

from __future__ import annotations

import argparse
import json

from marblekit.core.backbones import all_backbones


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    rows = [spec.describe() for spec in all_backbones().values()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    header = f"{'name':<20} {'sr':>6} {'fps':>5} {'layers':>6} {'dim':>7} {'normalise':>9}  weights"
    print(header)
    print("-" * len(header))
    for row in rows:
        widths = sorted(set(row["layer_dims"]))
        dim = str(widths[0]) if len(widths) == 1 else f"{widths[0]}-{widths[-1]}"
        print(f"{row['name']:<20} {row['sample_rate']:>6} {row['frame_rate']:>5.3g} {row['layers']:>6} "
              f"{dim:>7} {('z-norm' if row['normalize_input'] else 'raw'):>9}  {row['weights']}")
    return 0
