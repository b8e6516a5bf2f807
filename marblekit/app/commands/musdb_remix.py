"""MUSDB18's remixing augmentation (open-unmix's, as MARBLE trains its MUSDB18 probes), drawn once into a new
MUSDB18 folder: train/ holds --per-track remixes per train track, each --chunk-seconds long (every stem from a
random track at a random start, a gain in [0.25, 1.25], channels swapped with probability 0.5); valid/ and
test/ link to the originals; remix.json records the draws. Extract its mixtures.csv with --frames and probe the
store with --data pointing at the new folder and --samples-per-track 1 (each remix is one training chunk)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", type=Path, metavar="DATA", help="the MUSDB18 wav folder (train/, valid/, test/)")
    parser.add_argument("--out", type=Path, required=True, help="the new folder (must not exist or be empty)")
    parser.add_argument("--per-track", type=int, default=64,
                        help="remixes per train track (default 64: one reference epoch's samples per track)")
    parser.add_argument("--chunk-seconds", type=float, default=6.0, help="length of a remix (default 6.0)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every draw (default 0)")


def run(args: argparse.Namespace) -> int:
    from marblekit.probes.tasks.musdb_remix import write_remixed_folder

    started = time.perf_counter()
    count = write_remixed_folder(args.data, args.out, args.per_track, args.chunk_seconds, args.seed)
    print(f"wrote {count} remixes of {args.chunk_seconds:g} s to {args.out / 'train'} in "
          f"{time.perf_counter() - started:.0f} s; next: marblekit extract {args.out / 'mixtures.csv'} --frames "
          f"..., then marblekit probe STORE --task musdb18 --data {args.out} --samples-per-track 1")
    return 0
