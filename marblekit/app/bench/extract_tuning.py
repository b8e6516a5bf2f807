"""``marblekit bench extract-tuning``: ``marblekit extract`` through the embedded Triton over a grid of the knobs
that share the cores: request batch, requests in flight, decoder processes, and the served model's instances and
intra-op threads; audio-seconds per second of each point, best first, so the defaults (and a larger machine's
settings) are measured, not guessed.

The model is exported once (same weights, precision and runtime as ``bench extract``); each (instances, threads)
pair rewrites its config and restarts Triton; every point extracts the same synthetic catalog into a fresh store.
"""

from __future__ import annotations

import argparse
import itertools
import shutil
from dataclasses import dataclass
from pathlib import Path

from marblekit.core.runtimes import RUNTIMES
from marblekit.export.onnx_export import PRECISIONS
from marblekit.export.repository import write_model_configs
from marblekit.export.triton_config import ServingShape
from marblekit.extractor.api import ExtractRequest
from marblekit.serving.embedded import EmbeddedTriton

from .extract import exported_for_bench, timed_extraction, write_catalog


@dataclass(frozen=True)
class Point:
    instances: int
    threads: int
    batch: int
    in_flight: int
    workers: int
    audio_s_per_s: float = 0.0

    def row(self) -> str:
        return (f"| {self.instances} | {self.threads or 'all'} | {self.batch} | {self.in_flight} | {self.workers} "
                f"| {self.audio_s_per_s:.2f} |")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="backbone name (see marblekit models); seeded random weights")
    parser.add_argument("--num-layers", type=int, help="override the depth (a shallower copy of the shape)")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32", help="exported variant (default fp32)")
    parser.add_argument("--calibration", type=Path, metavar="SUITE", help="int8: calibrate a static export here")
    parser.add_argument("--runtime", choices=("auto", *RUNTIMES), default="auto", help="CPU runtime (default auto)")
    parser.add_argument("--tracks", type=int, default=6, help="synthetic tracks (default 6)")
    parser.add_argument("--seconds", type=float, default=32.0, help="seconds per track (default 32)")
    parser.add_argument("--window", type=float, default=5.0, help="window length in seconds (default 5)")
    parser.add_argument("--batch", type=int, nargs="+", default=[4, 8], help="request batches (default 4 8)")
    parser.add_argument("--in-flight", type=int, nargs="+", default=[1, 2, 4],
                        help="requests in flight (default 1 2 4)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="decoder processes (default 1 2)")
    parser.add_argument("--instances", type=int, nargs="+", default=[1, 2],
                        help="Triton model instances (default 1 2)")
    parser.add_argument("--threads", type=int, nargs="+", default=[0],
                        help="intra-op threads per instance, 0 = all cores (default 0)")
    parser.add_argument("--workdir", type=Path, default=Path("work/bench-extract-tuning"),
                        help="where the model, the audio and the stores go")


def run(args: argparse.Namespace) -> int:
    points = sweep(args)
    print("| instances | threads | batch | in flight | workers | audio-s/s |\n|---|---|---|---|---|---|")
    print("\n".join(point.row() for point in sorted(points, key=lambda p: -p.audio_s_per_s)))
    return 0


def sweep(args: argparse.Namespace) -> list[Point]:
    spec, exported = exported_for_bench(args, ServingShape())
    workdir, repo = args.workdir, args.workdir / "repo"
    audio_s = write_catalog(workdir / "audio", args.tracks, args.seconds)
    points = []
    for instances, threads in itertools.product(args.instances, args.threads):
        write_model_configs(repo, exported.name, spec, args.precision, exported.provenance, exported.runtime,
                            shape=ServingShape(cpu_instances=instances, cpu_threads=threads))
        with EmbeddedTriton(repo, [exported.name], grpc_port=0, http_port=0, metrics_port=0,
                            log_path=workdir / "triton.log") as server:
            for batch, in_flight, workers in itertools.product(args.batch, args.in_flight, args.workers):
                store = workdir / "store.zarr"
                shutil.rmtree(store, ignore_errors=True)
                request = ExtractRequest(workdir / "audio", exported.name, store, server=server.grpc_url,
                                         window_s=args.window, batch=batch, workers=workers, in_flight=in_flight,
                                         progress=False)
                measured = timed_extraction(request, "tuning point")
                point = Point(instances, threads, batch, in_flight, workers, audio_s / measured.pipeline_s)
                print("  " + point.row(), flush=True)
                points.append(point)
    return points
