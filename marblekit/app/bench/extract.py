"""``marblekit bench extract``: the extractor as users run it, against the bare engine and a MARBLE-style loop, and
where its time goes.

All runs see the same synthetic catalog (44.1 kHz stereo FLAC, so decoding and resampling count) and the same
weights (one seeded random init, exported once), one after the other:

  triton    ``marblekit extract --server`` through the embedded Triton over gRPC: the path users run;
  local     ``marblekit extract --engine local``: the model's runtime in the extracting process;
  engine    that runtime alone on the same windows (prepared beforehand, same batches): the ceiling;
            extract and engine run the exported variant ``--precision`` asks for (fp32, fp16, bf16, int8:
            static with ``--calibration SUITE``, else dynamic), in the runtime ``--runtime`` picks;
  marble    MARBLE v1's loop: one file at a time, transformers eager fp32 one window at a time, one
            [L, n_windows, D] float32 .npy per file.

The bare engine and the Triton server each run one batch before they are timed (a runtime prepares its kernels
on the first call of a shape). Reported: audio-seconds per second of each; efficiency = extract / engine (goal
>= 0.9); the speed-up over the MARBLE loop; the engine's achieved GFLOP/s (its FLOPs counted by torch's
FlopCounterMode on the eager model) against this machine's fp32 GEMM peak measured in the same run (a large
matmul; goal >= 0.7); every stage of the pipeline timed alone on the same catalog, one after another (decode,
mix-down + resample, normalise, windowing, inference, gRPC + Triton, store), so that the bottleneck is named;
and bytes per audio-hour of the store (fp16) against the .npy files (fp32).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from marblekit.core.audio_input import Preparation, assemble, decode, prepare, stream_pcm
from marblekit.core.backbones import BackboneSpec, get_backbone
from marblekit.core.runtimes import RUNTIMES
from marblekit.core.served_model import POOLED
from marblekit.core.store_layout import StoreReader, write_store
from marblekit.core.windows import Windowing
from marblekit.export.calibration import calibration_set
from marblekit.export.loading import load_encoder
from marblekit.export.onnx_export import PRECISIONS
from marblekit.export.pipeline import ExportReport, export_model
from marblekit.export.triton_config import ServingShape
from marblekit.extractor.api import ExtractRequest, extract
from marblekit.extractor.engine import Engine, LocalEngine
from marblekit.extractor.triton import TritonEngine
from marblekit.serving.client import ModelClient, ServerStatistics
from marblekit.serving.embedded import EmbeddedTriton

STAGES = ("decode", "mix-down + resample", "normalise", "windowing", "inference", "gRPC + Triton", "store")
GEMM_SIZE = 2048


@dataclass(frozen=True)
class Run:
    """One way of extracting the catalog: its whole wall time, and its pipeline's alone where it has one."""

    name: str
    seconds: float
    pipeline_s: float | None = None


@dataclass(frozen=True)
class BenchResult:
    model: str
    audio_s: float
    windows: int
    triton: Run
    local: Run
    engine: Run
    marble: Run
    served: ServerStatistics  # the server's own counters over the Triton run
    stages: dict[str, float]
    gflop_per_audio_s: float
    gemm_gflops: float
    store_bytes: int
    npy_bytes: int

    def speed(self, seconds: float) -> float:
        return self.audio_s / seconds

    def render(self) -> str:
        hours = self.audio_s / 3600
        lines = [f"bench extract: {self.model}, {self.audio_s:.0f} audio-s in {self.windows} windows, "
                 f"{os.cpu_count()} CPU cores",
                 f"  {'run':<44}{'wall s':>9}{'audio-s/s':>12}"]
        for run in (self.triton, self.local, self.engine, self.marble):
            lines.append(f"  {run.name:<44}{run.seconds:>9.2f}{self.speed(run.seconds):>12.2f}")
            if run.pipeline_s is not None:
                lines.append(f"  {'  of which the pipeline':<44}{run.pipeline_s:>9.2f}"
                             f"{self.speed(run.pipeline_s):>12.2f}")
        for run in (self.triton, self.local):
            lines.append(f"  efficiency {run.name} / engine: {self.engine.seconds / run.seconds:.2f} whole command, "
                         f"{self.engine.seconds / run.pipeline_s:.2f} pipeline (goal >= 0.9); "
                         f"{self.marble.seconds / run.seconds:.2f}x the MARBLE loop")
        lines.append(f"  Triton (its own statistics): {self.served.requests} requests in {self.served.executions} "
                     f"executions ({self.windows / self.served.executions:.1f} windows each), the model busy "
                     f"{self.served.compute_s:.2f} s of the {self.triton.pipeline_s:.2f} s pipeline "
                     f"({100 * self.served.compute_s / self.triton.pipeline_s:.0f} %)")
        achieved = self.gflop_per_audio_s * self.speed(self.engine.seconds)
        lines.append(f"  compute: the bare engine ran {achieved:.0f} GFLOP/s ({self.gflop_per_audio_s:.1f} GFLOP per "
                     f"audio-second, counted on the eager fp32 model); fp32 GEMM peak {self.gemm_gflops:.0f} GFLOP/s "
                     f"({GEMM_SIZE}x{GEMM_SIZE} matmul, all cores): {achieved / self.gemm_gflops:.2f} of peak "
                     "(goal >= 0.7)")
        total = sum(self.stages.values())
        lines.append("  where the time goes, each stage alone on the same catalog, one after another:")
        for stage, seconds in self.stages.items():
            lines.append(f"    {stage:<22}{seconds:>8.2f} s {100 * seconds / total:>5.1f} %")
        lines.append(f"    bottleneck: {max(self.stages, key=self.stages.__getitem__)}")
        lines.append(f"  storage per audio-hour: store {self.store_bytes / hours / 1e6:.1f} MB (fp16 Zarr), MARBLE "
                     f".npy {self.npy_bytes / hours / 1e6:.1f} MB (fp32); ratio "
                     f"{self.store_bytes / self.npy_bytes:.2f}")
        return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="backbone name (see marblekit models); seeded random weights")
    parser.add_argument("--num-layers", type=int, help="override the depth (a shallower copy of the shape)")
    parser.add_argument("--tracks", type=int, default=6, help="synthetic tracks (default 6)")
    parser.add_argument("--seconds", type=float, default=32.0, help="seconds per track (default 32)")
    parser.add_argument("--window", type=float, default=5.0, help="window length in seconds (default 5)")
    parser.add_argument("--batch", type=int, default=4, help="full windows per request (default 4)")
    parser.add_argument("--workers", type=int, help="decoding processes for extract (default extract's, min(4, cores))")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32",
                        help="the exported variant extract and the bare engine run (default fp32; the MARBLE loop "
                             "is always eager fp32)")
    parser.add_argument("--calibration", type=Path, metavar="SUITE",
                        help="int8: calibrate a static export on this synthetic suite's train clips (as export does)")
    parser.add_argument("--runtime", choices=("auto", *RUNTIMES), default="auto",
                        help="CPU runtime of the export (default auto: the fastest measured at export)")
    parser.add_argument("--instances", type=int, default=1, help="CPU model instances in Triton (default 1)")
    parser.add_argument("--threads", type=int, default=0,
                        help="intra-op threads per instance, in Triton and the bare engine (default 0: all cores)")
    parser.add_argument("--in-flight", type=int, default=ExtractRequest.in_flight,
                        help=f"requests in flight to Triton (default {ExtractRequest.in_flight}, extract's)")
    parser.add_argument("--workdir", type=Path, default=Path("work/bench-extract"),
                        help="where the model, the audio and the outputs go")


def run(args: argparse.Namespace) -> int:
    print(bench_extract(args).render())
    return 0


def _du(path: Path) -> int:
    return sum(entry.stat().st_size for entry in path.rglob("*") if entry.is_file())


def _timed(work: Callable[[], object]) -> tuple[float, object]:
    started = time.perf_counter()
    result = work()
    return time.perf_counter() - started, result


def write_catalog(directory: Path, tracks: int, seconds: float) -> float:
    rng = np.random.default_rng(0)
    rate = 44100
    t = np.arange(int(seconds * rate)) / rate
    for index in range(tracks):
        tones = sum(np.sin(2 * np.pi * f * t) for f in rng.uniform(80, 3000, 4))
        stereo = 0.1 * tones[:, None] + 0.02 * rng.standard_normal((t.size, 2))
        sf.write(directory / f"track{index:03d}.flac", stereo.astype(np.float32), rate)
    return tracks * t.size / rate


def prepared_clips(files: list[Path], preparation: Preparation, stages: dict[str, float]) -> list[np.ndarray]:
    """Each file as the model's input, its decode, mix-down + resample and normalisation timed apart."""
    def decoded(path: Path) -> tuple[np.ndarray, int]:
        blocks, rate = decode(path, 0.0, None)
        return np.concatenate(list(blocks)), rate

    clips = []
    for path in files:
        seconds, (pcm, rate) = _timed(lambda: decoded(path))
        stages["decode"] += seconds
        parts: list[np.ndarray] = []
        seconds, statistics = _timed(lambda: stream_pcm(pcm, rate, preparation, parts.append))
        stages["mix-down + resample"] += seconds
        seconds, clip = _timed(lambda: assemble(parts, statistics, preparation))
        stages["normalise"] += seconds
        clips.append(clip)
    return clips


def window_batches(clips: list[np.ndarray], windowing: Windowing, rate: int, batch: int
                   ) -> tuple[list[np.ndarray], np.ndarray]:
    """Full windows ``batch`` at a time, each shorter last window alone (as the extractor batches them), and
    the clip of every window in batch order."""
    full, tails = [], []
    for index, clip in enumerate(clips):
        for start, stop in windowing.bounds(len(clip), rate):
            (full if stop - start == round(windowing.window_s * rate) else tails).append((index, clip[start:stop]))
    batches = [np.stack([w for _, w in full[i:i + batch]]) for i in range(0, len(full), batch)]
    return batches + [w[None] for _, w in tails], np.array([index for index, _ in full + tails])


def infer_all(engine: Engine, batches: list[np.ndarray]) -> list[np.ndarray]:
    return [engine.infer(batch, (POOLED,))[POOLED] for batch in batches]


def counted_flops(encoder: torch.nn.Module, batches: list[np.ndarray]) -> float:
    """FLOPs of the eager model over these batches (torch's FlopCounterMode, one window per length)."""
    from torch.utils.flop_counter import FlopCounterMode

    per_window = {}
    with torch.inference_mode():
        for length in sorted({batch.shape[1] for batch in batches}):
            counter = FlopCounterMode(display=False)
            with counter:
                encoder(torch.zeros(1, length))
            per_window[length] = counter.get_total_flops()
    return float(sum(per_window[batch.shape[1]] * len(batch) for batch in batches))


def gemm_peak_gflops(size: int = GEMM_SIZE, repeats: int = 8) -> float:
    """fp32 GFLOP/s of the best of ``repeats`` size x size matmuls on every core (after one warm-up)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    best = min(_timed(lambda: torch.mm(a, b))[0] for _ in range(repeats))
    return 2 * size ** 3 / best / 1e9


def marble_loop(encoder: torch.nn.Module, spec: BackboneSpec, files: list[Path], preparation: Preparation,
                windowing: Windowing, out: Path) -> float:
    """MARBLE v1's extraction: eager fp32, one window per call, one [L, n_windows, D] .npy per file."""
    out.mkdir()
    started = time.perf_counter()
    with torch.inference_mode():
        for path in files:
            clip = prepare(path, 0.0, None, preparation)
            pooled = [encoder(torch.from_numpy(clip[None, start:stop])).mean(dim=2)[0]
                      for start, stop in windowing.bounds(len(clip), spec.sample_rate)]
            np.save(out / f"{path.name}.npy", torch.stack(pooled, dim=1).numpy())
    return time.perf_counter() - started


def timed_extraction(request: ExtractRequest, name: str) -> Run:
    seconds, summary = _timed(lambda: extract(request))
    if summary.failed or not summary.finalized:
        raise RuntimeError(f"the benchmark extraction ({name}) failed: {summary.failures}")
    return Run(name, seconds, summary.wall_s)


def exported_for_bench(args: argparse.Namespace, shape: ServingShape) -> tuple[BackboneSpec, ExportReport]:
    """A fresh ``args.workdir`` with ``audio/`` and ``repo/``, the latter holding the ``args.model`` variant
    (seeded random weights, ``args.precision``, ``args.runtime``, calibrated on ``args.calibration``)."""
    spec = get_backbone(args.model)
    if args.num_layers:
        spec = spec.with_layers(args.num_layers)
    shutil.rmtree(args.workdir, ignore_errors=True)
    (args.workdir / "audio").mkdir(parents=True)
    calibration = calibration_set(args.calibration, spec) if args.calibration else None
    exported = export_model(spec, args.workdir / "repo", random_init=spec.needs_weights, precision=args.precision,
                            check_parity=False, runtime=args.runtime, calibration=calibration, shape=shape)
    print(f"  {exported.name}: {exported.runtime}" + (f"; {exported.quantization}" if exported.quantization else ""),
          flush=True)
    return spec, exported


def bench_extract(args: argparse.Namespace) -> BenchResult:
    spec, exported = exported_for_bench(args, ServingShape(cpu_instances=args.instances, cpu_threads=args.threads))
    workdir, repo = args.workdir, args.workdir / "repo"
    model = exported.name
    audio_s = write_catalog(workdir / "audio", args.tracks, args.seconds)
    files = sorted((workdir / "audio").iterdir())
    preparation = Preparation(spec.sample_rate, spec.normalize_input)
    windowing = Windowing(args.window, args.window)

    stages = dict.fromkeys(STAGES, 0.0)
    clips = prepared_clips(files, preparation, stages)
    stages["windowing"], (batches, owners) = _timed(
        lambda: window_batches(clips, windowing, spec.sample_rate, args.batch))
    engine = LocalEngine(repo, model, threads=args.threads)
    infer_all(engine, batches[:1])  # warm-up: the first call plans the graph
    stages["inference"], pooled = _timed(lambda: infer_all(engine, batches))
    engine.close()

    request = ExtractRequest(workdir / "audio", model, workdir / "triton.zarr", repo=repo, window_s=args.window,
                             batch=args.batch, workers=args.workers, in_flight=args.in_flight, progress=False)
    with EmbeddedTriton(repo, [model], grpc_port=0, http_port=0, metrics_port=0,
                        log_path=workdir / "triton.log") as server:
        with ModelClient(server.grpc_url, model) as client:
            client.infer(batches[0], outputs=(POOLED,))  # the warm-up the bare engine had
            warm = client.statistics()
            triton = timed_extraction(dataclasses.replace(request, server=server.grpc_url),
                                      "marblekit extract (embedded Triton)")
            served_statistics = client.statistics().since(warm)
        served = TritonEngine(server.grpc_url, model)
        stages["gRPC + Triton"] = _timed(lambda: infer_all(served, batches))[0] - stages["inference"]
        served.close()
    local = timed_extraction(dataclasses.replace(request, store=workdir / "local.zarr"),
                             "marblekit extract --engine local")

    order = np.argsort(owners, kind="stable")  # the store keeps a track's windows together, in time order
    rows = np.concatenate(pooled)[order]
    stages["store"] = _timed(lambda: write_store(workdir / "timed.zarr", StoreReader(workdir / "triton.zarr").attrs,
                                                 [path.name for path in files], pooled=rows,
                                                 window_track=owners[order]))[0]

    encoder, _ = load_encoder(spec, random_init=spec.needs_weights)
    marble_s = marble_loop(encoder, spec, files, preparation, windowing, workdir / "marble-npy")
    return BenchResult(model, audio_s, len(owners), triton, local,
                       Run(f"bare {exported.runtime.runtime}, same windows", stages["inference"]),
                       Run("MARBLE loop (eager fp32, .npy)", marble_s), served_statistics, stages,
                       counted_flops(encoder, batches) / audio_s / 1e9, gemm_peak_gflops(),
                       _du(workdir / "triton.zarr"), _du(workdir / "marble-npy"))
