"""``marblekit bench scale``: the same catalog through one process and through Ray with 1 and 2 workers.

Every run extracts the same synthetic catalog (44.1 kHz stereo FLAC) with the same exported model
(onnxruntime in the worker, no server) into a fresh store, one after the other in one process:

  single   ``marblekit extract --engine local --workers 1``: one process, one decoder;
  ray-1    ``marblekit extract --ray --ray-workers 1 --workers 1``: the driver and one Ray worker;
  ray-2    the same with two Ray workers.

The local Ray is started once before the Ray runs (its start-up, reported apart, is paid once per job and not
per block). Reported: audio-seconds per second of each run (the whole extraction call: plan, engines, every
block, finalising), ray-1 / single (goal >= 0.9: no engine tax), and the scheduling overhead per block,
(ray-1 wall - single wall) / blocks.
"""

from __future__ import annotations

import argparse
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from marblekit.app.bench.extract import write_catalog
from marblekit.core.backbones import get_backbone
from marblekit.export.pipeline import export_model
from marblekit.extractor.api import ExtractRequest, extract
from marblekit.extractor.ray_runner import RaySettings, extract_on_ray

RUNS = ("single", "ray-1", "ray-2")


@dataclass(frozen=True)
class ModelResult:
    model: str
    audio_s: float
    blocks: int
    wall_s: dict[str, float]

    def render(self) -> list[str]:
        speed = {run: self.audio_s / self.wall_s[run] for run in RUNS}
        overhead = (self.wall_s["ray-1"] - self.wall_s["single"]) / self.blocks
        return [f"  {self.model}: {self.audio_s:.0f} audio-s in {self.blocks} blocks",
                *(f"    {run:<8}{self.wall_s[run]:>9.2f} s{speed[run]:>10.1f} audio-s/s" for run in RUNS),
                f"    ray-1 / single {speed['ray-1'] / speed['single']:.2f} (goal >= 0.9), ray-2 / single "
                f"{speed['ray-2'] / speed['single']:.2f}; scheduling overhead {overhead * 1000:+.0f} ms per block"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", default="handcrafted,mert-v0:2",
                        help="backbones, comma-separated, NAME or NAME:LAYERS for a shallower copy of the shape "
                             "(seeded random weights; default handcrafted,mert-v0:2)")
    parser.add_argument("--tracks", type=int, default=96, help="synthetic tracks (default 96)")
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds per track (default 20)")
    parser.add_argument("--block-tracks", type=int, default=8,
                        help="tracks per block (default 8: a dozen blocks; extract's default is 64)")
    parser.add_argument("--window", type=float, default=5.0, help="window length in seconds (default 5)")
    parser.add_argument("--workdir", type=Path, default=Path("work/bench-scale"),
                        help="where the models, the audio and the stores go")


def run(args: argparse.Namespace) -> int:
    print(bench_scale(args))
    return 0


def bench_scale(args: argparse.Namespace) -> str:
    import ray

    workdir = args.workdir
    shutil.rmtree(workdir, ignore_errors=True)
    (workdir / "audio").mkdir(parents=True)
    audio_s = write_catalog(workdir / "audio", args.tracks, args.seconds)
    started = time.perf_counter()
    ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
    ray_start_s = time.perf_counter() - started
    lines = [f"bench scale: {args.tracks} tracks of {args.seconds:g} s, blocks of {args.block_tracks}, local "
             f"Ray with {int(ray.cluster_resources().get('CPU', 0))} CPUs (started in {ray_start_s:.1f} s)"]
    try:
        for item in args.models.split(","):
            name, _, layers = item.partition(":")
            spec = get_backbone(name)
            spec = spec.with_layers(int(layers)) if layers else spec
            repo = workdir / "repo"
            export_model(spec, repo, random_init=spec.needs_weights, check_parity=False)
            wall = {run: _timed(run, ExtractRequest(workdir / "audio", spec.name, workdir / f"{spec.name}-{run}.zarr",
                                                    repo=repo, window_s=args.window, batch=4, workers=1,
                                                    block_tracks=args.block_tracks, progress=False))
                    for run in RUNS}
            lines += ModelResult(spec.name, audio_s, -(-args.tracks // args.block_tracks), wall).render()
    finally:
        ray.shutdown()
    return "\n".join(lines)


def _timed(run: str, request: ExtractRequest) -> float:
    started = time.perf_counter()
    if run == "single":
        summary = extract(request)
    else:
        summary = extract_on_ray(request, RaySettings(workers=int(run.split("-")[1])))
    wall = time.perf_counter() - started
    if summary.failed or not summary.finalized:
        raise RuntimeError(f"the {run} extraction failed: {summary.failures}")
    return wall
