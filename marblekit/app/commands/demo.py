"""The main job: render the synthetic suite, export handcrafted, a MERT-shaped backbone and the pretrained
musicnn-mtt, serve them with the embedded CPU Triton, extract every task through it into Zarr stores, run the
probe grid of every task and print a MARBLE-style leaderboard with a per-layer plot. Without --checkpoint the
MERT-shaped backbone has seeded random weights, and every output says so."""

from __future__ import annotations

import argparse
from pathlib import Path

from marblekit.core.backbones import all_backbones

#: Depth of the random-init MERT-shaped backbone: the published front end and width, two transformer layers.
RANDOM_INIT_LAYERS = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="working folder (default runs/demo)")
    parser.add_argument("--scale", choices=("tiny", "small"), default="small",
                        help="synthetic suite size: small (default, the demo) or tiny (CI)")
    parser.add_argument("--seed", type=int, default=0, help="suite and random-init seed (default 0)")
    parser.add_argument("--mert", default="mert-v0", choices=[n for n in all_backbones() if n != "handcrafted"],
                        help="the MERT-shaped backbone (default mert-v0: 16 kHz, the cheapest MERT front end)")
    parser.add_argument("--mert-layers", type=int, metavar="N",
                        help="depth of the random-init MERT-shaped copy (default 2: random weights carry no "
                             "information and depth only costs CPU time; the published depth with --checkpoint)")
    parser.add_argument("--checkpoint", type=Path, metavar="DIR",
                        help="real weights for --mert: a local HF-format directory (default: random-init)")
    parser.add_argument("--tasks", nargs="+", metavar="TASK", help="synthetic tasks to run (default: all)")
    parser.add_argument("--max-epochs", type=int, help="cap the probes' epochs (default: each task's own)")
    parser.add_argument("--workers", type=int, default=0, help="probe worker processes (0 = all cores)")
    parser.add_argument("--no-pretrained", action="store_true",
                        help="leave out the pretrained musicnn-mtt row (it runs when the musicnn wheel is installed)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (logs, CI)")


def run(args: argparse.Namespace) -> int:
    from marblekit.app.demo import DemoSettings, run_demo
    from marblekit.synth.registry import TASKS

    unknown = sorted(set(args.tasks or ()) - set(TASKS))
    if unknown:
        raise ValueError(f"--tasks: unknown {', '.join(unknown)}; expected some of {', '.join(TASKS)}")
    if args.mert_layers and args.checkpoint:
        raise ValueError("--mert-layers builds a shallower random-init copy; it cannot be used with --checkpoint")
    mert_layers = args.mert_layers or (None if args.checkpoint else RANDOM_INIT_LAYERS)
    run_demo(DemoSettings(out=args.out, scale=args.scale, seed=args.seed, mert=args.mert,
                          mert_layers=mert_layers, checkpoint=args.checkpoint, tasks=tuple(args.tasks or TASKS),
                          max_epochs=args.max_epochs, workers=args.workers, progress=not args.no_progress,
                          pretrained=not args.no_pretrained))
    return 0
