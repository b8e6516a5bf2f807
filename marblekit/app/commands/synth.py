"""Render the synthetic labelled music suite: MARBLE-shaped tasks (pitch, instrument, key, beat, tagging,
regression, separation) played by a General MIDI soundfont through FluidSynth, labels known by construction.
Writes OUT/<task>/task.json, manifest.jsonl and 44.1 kHz WAVs; the same seed gives byte-identical output.
Needs Debian's fluidsynth and fluid-soundfont-gm (scripts/install.sh installs both)."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from marblekit.synth.plan import SCALES
from marblekit.synth.registry import TASKS

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", type=Path, metavar="OUT", help="output folder; each task goes to OUT/<task>/")
    parser.add_argument("--tasks", nargs="+", choices=list(TASKS), default=list(TASKS), metavar="TASK",
                        help=f"tasks to render (default: all of {', '.join(TASKS)})")
    parser.add_argument("--scale", choices=SCALES, default="small",
                        help="tiny: CI (< 1 min), small: demo (default, a few minutes), full: >= 500 items a task")
    parser.add_argument("--seed", type=int, default=0, help="seed of all random choices (default 0)")
    parser.add_argument("--jobs", type=int, default=2, help="FluidSynth processes at once (default 2)")
    parser.add_argument("--soundfont", type=Path, help="General MIDI .sf2 file (default: FluidR3_GM, then TimGM6mb)")


def run(args: argparse.Namespace) -> int:
    from marblekit.synth.fluid import Renderer
    from marblekit.synth.suite import render_task

    if args.jobs < 1:
        raise ValueError(f"--jobs must be at least 1, got {args.jobs}")
    renderer = Renderer.locate(args.soundfont)
    log.info("rendering %s at %s scale, seed %d, with %s", ", ".join(args.tasks), args.scale, args.seed,
             renderer.soundfont)
    started = time.perf_counter()
    for name in args.tasks:
        summary = render_task(TASKS[name](args.seed, args.scale), args.out, renderer, args.seed, args.scale,
                              args.jobs)
        counts = " ".join(f"{split} {n}" for split, n in summary.counts.items())
        print(f"{name:18s} {counts:32s} {summary.audio_seconds / 60:7.1f} min audio  {summary.wall_seconds:6.1f} s")
    print(f"wrote {args.out} in {time.perf_counter() - started:.1f} s")
    return 0
