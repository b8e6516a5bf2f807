"""``marblekit bench extract-memory``: peak memory of ``marblekit extract`` on tracks of growing length.

Each track is 44.1 kHz stereo 16-bit WAV (default 30 s, 10 minutes and 2 hours), extracted alone by
``marblekit extract --engine local`` in a process of its own; the peak resident memory of the whole process
tree (main process, decoders, onnxruntime) is sampled every 0.1 s. Tracks are streamed, the scratch disk
taking the decoded samples, so memory should not grow with the length (goal: the longest within 2x of the
one before it). A track shorter than one full batch of windows runs smaller batches, so onnxruntime's working
set (its memory arena, sized by the largest batch) is smaller there: compare tracks of at least two batches.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from marblekit.app.bench.measure import run_measured, work_folder
from marblekit.core.backbones import get_backbone
from marblekit.core.store_layout import StoreReader
from marblekit.export.pipeline import export_model

RATE = 44100


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="handcrafted",
                        help="backbone (seeded random weights where it has any; default handcrafted)")
    parser.add_argument("--num-layers", type=int, help="override the depth (a shallower copy of the shape)")
    parser.add_argument("--durations", default="30,600,7200",
                        help="track lengths in seconds, comma-separated (default 30,600,7200)")
    parser.add_argument("--workers", type=int, default=2, help="decoding processes (default 2)")
    parser.add_argument("--workdir", type=Path,
                        help="where the audio, model and stores go (default: a temporary folder; the long track "
                             "takes 1.3 GB, its decoded samples as much again)")


def run(args: argparse.Namespace) -> int:
    print(bench_extract_memory(args))
    return 0


def write_track(path: Path, seconds: float, seed: int) -> None:
    """Tones and noise, written a minute at a time (never whole in memory)."""
    rng = np.random.default_rng(seed)
    total = int(seconds * RATE)
    with sf.SoundFile(path, "w", RATE, 2, subtype="PCM_16") as out:
        for start in tqdm(range(0, total, 60 * RATE), desc=f"writing {path.name}", unit="min", leave=False):
            t = np.arange(start, min(start + 60 * RATE, total)) / RATE
            tone = 0.2 * np.sin(2 * np.pi * 440.0 * t) + 0.1 * np.sin(2 * np.pi * 1234.5 * t)
            out.write((tone[:, None] + 0.05 * rng.standard_normal((t.size, 2))).astype(np.float32))


def bench_extract_memory(args: argparse.Namespace) -> str:
    spec = get_backbone(args.model)
    if args.num_layers:
        spec = spec.with_layers(args.num_layers)
    with work_folder(args.workdir, "marblekit-bench-extract-memory-") as folder:
        repo = folder / "repo"
        export_model(spec, repo, random_init=spec.needs_weights, check_parity=False)
        rows = []
        for index, seconds in enumerate(float(text) for text in args.durations.split(",")):
            name = f"track-{seconds:g}s"
            catalog = folder / name
            catalog.mkdir(exist_ok=True)
            write_track(catalog / f"{name}.wav", seconds, seed=index)
            store = folder / f"{name}.zarr"
            command = [sys.executable, "-m", "marblekit.app.cli", "extract", str(catalog), "--model", spec.name,
                       "--store", str(store), "--engine", "local", "--repo", str(repo), "--workers",
                       str(args.workers), "--scratch", str(folder / "scratch"), "--no-progress"]
            wall, cpu, peak, anonymous = run_measured(command)
            done, failed = StoreReader(store).status_counts()
            if (done, failed) != (1, 0):
                raise RuntimeError(f"{name} was not extracted ({done} done, {failed} failed)")
            rows.append((seconds, wall, cpu, peak, anonymous))
    lines = [f"bench extract-memory: {spec.name}, 44.1 kHz stereo WAV, --workers {args.workers}, peak memory of "
             f"the whole process tree",
             f"  {'audio s':>9}{'wall s':>9}{'CPU s':>8}{'peak RSS MB':>13}{'anonymous MB':>14}"]
    lines += [f"  {seconds:>9.0f}{wall:>9.1f}{cpu:>8.1f}{peak:>13.0f}{anonymous:>14.0f}"
              for seconds, wall, cpu, peak, anonymous in rows]
    if len(rows) >= 2:
        (before_s, *_, before_peak, before_anon), (last_s, *_, last_peak, last_anon) = rows[-2:]
        lines.append(f"  {last_s:g} s vs {before_s:g} s: {last_s / before_s:.0f}x the audio, "
                     f"{last_peak / before_peak:.2f}x the peak RSS, {last_anon / before_anon:.2f}x the anonymous "
                     f"memory (goal: within 2x)")
    return "\n".join(lines)
