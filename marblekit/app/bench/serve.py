"""``marblekit bench serve``: what serving through the embedded Triton costs over in-process onnxruntime.

Both sides run the same model.onnx on the same seeded batches, one output set at a time (``pooled`` only,
then ``frames`` only); the served results are checked against the in-process ones. Overhead is the
extra wall time per window: gRPC transfer, protobuf, the Python backend's shared-memory copies.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from marblekit.core.served_model import FRAMES, INPUT, POOLED
from marblekit.serving.client import ModelClient
from marblekit.serving.embedded import EmbeddedTriton

OUTPUT_SETS: tuple[tuple[str, ...], ...] = ((POOLED,), (FRAMES,))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="model name in --repo (export it first with marblekit export)")
    parser.add_argument("--repo", default="model_repository", help="model repository (default model_repository/)")
    parser.add_argument("--windows", type=int, default=16, help="windows per measurement (default 16)")
    parser.add_argument("--window-seconds", type=float, default=5.0, help="window length (default 5 s)")
    parser.add_argument("--batch", type=int, default=4, help="windows per request / onnxruntime call (default 4)")
    parser.add_argument("--in-flight", type=int, default=1, help="requests (and calls) in flight (default 1)")
    parser.add_argument("--repeats", type=int, default=3, help="alternating timed rounds per side (default 3)")
    parser.add_argument("--triton-env", help="serving venv (default $MARBLEKIT_TRITON_ENV or .venv-triton)")


def run(args: argparse.Namespace) -> int:
    print(bench_serve(args).render())
    return 0


@dataclass
class ServeRow:
    outputs: str
    mb_per_window: float
    in_process: float  # windows/s
    triton: float  # windows/s
    max_abs_diff: float

    @property
    def overhead_percent(self) -> float:
        return 100.0 * (self.in_process / self.triton - 1.0)


@dataclass
class ServeBenchReport:
    model: str
    windows: int
    window_seconds: float
    batch: int
    in_flight: int
    repeats: int
    rows: list[ServeRow] = field(default_factory=list)

    def render(self) -> str:
        lines = [f"bench serve {self.model}: {self.windows} windows of {self.window_seconds:g} s in batches of "
                 f"{self.batch}, {self.in_flight} request(s) in flight, median of {self.repeats} alternating rounds: "
                 f"embedded Triton (CPU) vs in-process onnxruntime",
                 f"{'outputs':<14}{'MB/window':>10}{'in-process w/s':>16}{'Triton w/s':>12}{'overhead':>10}"
                 f"{'max|diff|':>11}"]
        lines += [f"{row.outputs:<14}{row.mb_per_window:>10.3f}{row.in_process:>16.2f}{row.triton:>12.2f}"
                  f"{row.overhead_percent:>9.1f}%{row.max_abs_diff:>11.2e}" for row in self.rows]
        return "\n".join(lines)


def _windows_per_second(run: Callable[[np.ndarray], dict[str, np.ndarray]], batches: Sequence[np.ndarray],
                        in_flight: int, progress: tqdm) -> tuple[float, list[dict[str, np.ndarray]]]:
    """Time ``run`` over every batch, ``in_flight`` calls at a time."""
    with ThreadPoolExecutor(in_flight) as pool:
        started = time.perf_counter()
        results = []
        for result in pool.map(run, batches):
            results.append(result)
            progress.update()
        elapsed = time.perf_counter() - started
    return sum(len(batch) for batch in batches) / elapsed, results


def bench_serve(args: argparse.Namespace) -> ServeBenchReport:
    """Per output set: one warm-up call each, then ``repeats`` alternating rounds; the median rate of each side."""
    import onnxruntime as ort

    repo = Path(args.repo)
    session = ort.InferenceSession(str(repo / args.model / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    report = ServeBenchReport(args.model, args.windows, args.window_seconds, args.batch, args.in_flight, args.repeats)
    triton_env = Path(args.triton_env) if args.triton_env else None
    server = EmbeddedTriton(repo, [args.model], grpc_port=0, http_port=0, metrics_port=0, triton_env=triton_env)
    with server, ModelClient(server.grpc_url, args.model) as client:
        served = client.model_metadata()
        samples = int(round(args.window_seconds * served.sample_rate))
        rng = np.random.default_rng(0)
        batches = [(0.1 * rng.standard_normal((min(args.batch, args.windows - start), samples))).astype(np.float32)
                   for start in range(0, args.windows, args.batch)]
        total = len(OUTPUT_SETS) * args.repeats * 2 * len(batches)
        with tqdm(total=total, desc=f"bench serve {args.model}", unit="batch") as progress:
            for outputs in OUTPUT_SETS:
                def in_process(batch: np.ndarray, names: tuple[str, ...] = outputs) -> dict[str, np.ndarray]:
                    return dict(zip(names, session.run(list(names), {INPUT: batch})))

                def through_triton(batch: np.ndarray, names: tuple[str, ...] = outputs) -> dict[str, np.ndarray]:
                    return client.infer(batch, outputs=names)

                in_process(batches[0])
                through_triton(batches[0])
                local_rates, triton_rates = [], []
                for _ in range(args.repeats):
                    rate, local = _windows_per_second(in_process, batches, args.in_flight, progress)
                    local_rates.append(rate)
                    rate, remote = _windows_per_second(through_triton, batches, args.in_flight, progress)
                    triton_rates.append(rate)
                diff = max(float(np.max(np.abs(a[name].astype(np.float64) - b[name])))
                           for a, b in zip(local, remote) for name in outputs)
                nbytes = sum(local[0][name].nbytes for name in outputs) / len(batches[0])
                report.rows.append(ServeRow("+".join(outputs), nbytes / 1e6, float(np.median(local_rates)),
                                            float(np.median(triton_rates)), diff))
    return report
