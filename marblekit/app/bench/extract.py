"""``marblekit bench extract``: the extractor end to end against the bare engine and a MARBLE-style loop.

All three runs see the same synthetic catalog (44.1 kHz stereo FLAC, so decoding and resampling count) and
the same weights (one seeded random init, exported once), in one process, one after the other:

  extract   ``marblekit extract --engine local`` as a user runs it (the extractor's API): decode workers,
            batching, store writes;
  engine    onnxruntime alone on the same windows (prepared beforehand, same batches): the ceiling;
  marble    MARBLE v1's loop: one file at a time, transformers eager fp32 one window at a time, one
            [L, n_windows, D] float32 .npy per file.

Reported: audio-seconds per second of each, efficiency = extract / engine (goal >= 0.9), speed-up over the
MARBLE loop, and bytes per audio-hour of the Zarr store (fp16) against the .npy files (fp32).
"""

from __future__ import annotations

import argparse
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from marblekit.core.audio_input import Preparation, prepare
from marblekit.core.backbones import get_backbone
from marblekit.core.served_model import POOLED
from marblekit.core.windows import Windowing
from marblekit.export.loading import load_encoder
from marblekit.export.pipeline import export_model
from marblekit.extractor.api import ExtractRequest, extract
from marblekit.extractor.engine import LocalEngine


@dataclass(frozen=True)
class BenchResult:
    audio_s: float
    extract_s: float  # the whole command: model load, worker start-up, pipeline, finalising
    pipeline_s: float  # the pipeline alone (what a long catalog converges to)
    engine_s: float
    marble_s: float
    store_bytes: int
    npy_bytes: int
    windows: int
    model: str

    def render(self) -> str:
        hours = self.audio_s / 3600
        speed = {name: self.audio_s / seconds for name, seconds in
                 (("extract", self.extract_s), ("pipeline", self.pipeline_s), ("engine", self.engine_s),
                  ("marble", self.marble_s))}
        lines = [f"bench extract: {self.model}, {self.audio_s:.0f} audio-s in {self.windows} windows",
                 f"  {'run':<34}{'wall s':>9}{'audio-s/s':>12}",
                 f"  {'marblekit extract --engine local':<34}{self.extract_s:>9.2f}{speed['extract']:>12.2f}",
                 f"  {'  of which the pipeline':<34}{self.pipeline_s:>9.2f}{speed['pipeline']:>12.2f}",
                 f"  {'bare onnxruntime, same windows':<34}{self.engine_s:>9.2f}{speed['engine']:>12.2f}",
                 f"  {'MARBLE loop (eager fp32, .npy)':<34}{self.marble_s:>9.2f}{speed['marble']:>12.2f}",
                 f"  efficiency extract / engine: {speed['extract'] / speed['engine']:.2f} whole command, "
                 f"{speed['pipeline'] / speed['engine']:.2f} pipeline (goal >= 0.9)",
                 f"  speed-up over the MARBLE loop: {speed['extract'] / speed['marble']:.2f}x",
                 f"  storage per audio-hour: store {self.store_bytes / hours / 1e6:.1f} MB (fp16 Zarr), "
                 f"MARBLE .npy {self.npy_bytes / hours / 1e6:.1f} MB (fp32); ratio "
                 f"{self.store_bytes / self.npy_bytes:.2f}"]
        return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="backbone name (see marblekit models); seeded random weights")
    parser.add_argument("--num-layers", type=int, help="override the depth (a shallower copy of the shape)")
    parser.add_argument("--tracks", type=int, default=6, help="synthetic tracks (default 6)")
    parser.add_argument("--seconds", type=float, default=32.0, help="seconds per track (default 32)")
    parser.add_argument("--window", type=float, default=5.0, help="window length in seconds (default 5)")
    parser.add_argument("--batch", type=int, default=4, help="full windows per request (default 4)")
    parser.add_argument("--workers", type=int, default=1, help="decoding processes for extract (default 1)")
    parser.add_argument("--workdir", type=Path, default=Path("work/bench-extract"),
                        help="where the model, the audio and the outputs go")


def run(args: argparse.Namespace) -> int:
    print(bench_extract(args).render())
    return 0


def _du(path: Path) -> int:
    return sum(entry.stat().st_size for entry in path.rglob("*") if entry.is_file())


def write_catalog(directory: Path, tracks: int, seconds: float) -> float:
    rng = np.random.default_rng(0)
    rate = 44100
    t = np.arange(int(seconds * rate)) / rate
    for index in range(tracks):
        tones = sum(np.sin(2 * np.pi * f * t) for f in rng.uniform(80, 3000, 4))
        stereo = 0.1 * tones[:, None] + 0.02 * rng.standard_normal((t.size, 2))
        sf.write(directory / f"track{index:03d}.flac", stereo.astype(np.float32), rate)
    return tracks * t.size / rate


def bench_extract(args: argparse.Namespace) -> BenchResult:
    spec = get_backbone(args.model)
    if args.num_layers:
        spec = spec.with_layers(args.num_layers)
    workdir = args.workdir
    shutil.rmtree(workdir, ignore_errors=True)
    (workdir / "audio").mkdir(parents=True)
    repo = workdir / "repo"
    export_model(spec, repo, random_init=spec.needs_weights, check_parity=False)
    audio_s = write_catalog(workdir / "audio", args.tracks, args.seconds)
    files = sorted((workdir / "audio").iterdir())

    request = ExtractRequest(workdir / "audio", spec.name, workdir / "store.zarr", repo=repo, window_s=args.window,
                             batch=args.batch, workers=args.workers, progress=False)
    started = time.perf_counter()
    summary = extract(request)
    extract_s = time.perf_counter() - started
    if summary.failed or not summary.finalized:
        raise RuntimeError(f"the benchmark extraction failed: {summary.failures}")

    engine = LocalEngine(repo, spec.name)
    preparation = Preparation(spec.sample_rate, spec.normalize_input)
    windowing = Windowing(args.window, args.window)
    full, tails = [], []
    for path in files:
        clip = prepare(path, 0.0, None, preparation)
        for start, stop in windowing.bounds(len(clip), spec.sample_rate):
            (full if stop - start == round(args.window * spec.sample_rate) else tails).append(clip[start:stop])
    batches = [np.stack(full[i:i + args.batch]) for i in range(0, len(full), args.batch)]
    batches += [tail[None] for tail in tails]
    started = time.perf_counter()
    for batch in batches:
        engine.infer(batch, (POOLED,))
    engine_s = time.perf_counter() - started
    engine.close()

    encoder, _ = load_encoder(spec, random_init=spec.needs_weights)
    npy_dir = workdir / "marble-npy"
    npy_dir.mkdir()
    started = time.perf_counter()
    with torch.inference_mode():
        for path in files:
            clip = prepare(path, 0.0, None, preparation)
            pooled = [encoder(torch.from_numpy(clip[None, start:stop])).mean(dim=2)[0]
                      for start, stop in windowing.bounds(len(clip), spec.sample_rate)]
            np.save(npy_dir / f"{path.name}.npy", torch.stack(pooled, dim=1).numpy())
    marble_s = time.perf_counter() - started
    return BenchResult(audio_s, extract_s, summary.wall_s, engine_s, marble_s, _du(workdir / "store.zarr"),
                       _du(npy_dir), len(full) + len(tails), spec.name)
