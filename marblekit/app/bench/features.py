"""``marblekit bench features``: the feature service against calling Triton directly with the same windows.

One embedded Triton serves ``model``; the feature service runs in this process in front of it. The load comes
from a separate process of N client threads (so the clients do not share the service's GIL), alternating:

- direct: a request is one clip's windows, cut and normalised in advance, in one ``ModelClient.infer`` call
  (``pooled`` only): what an app that prepared the audio itself would send Triton;
- service: a request is the clip's WAV bytes through ``FeatureClient.embed`` with the cache off; the service
  decodes, normalises and windows it and batches windows across callers;
- cache: one clip asked again and again with the cache on: the latency of a hit.

Throughput is audio-seconds answered per second of wall time; latencies are per request. Rates are medians
of the alternating rounds; latency percentiles pool every round's requests.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import dataclasses
import io
import multiprocessing
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from marblekit.core.audio_input import Preparation, assemble, stream_bytes
from marblekit.core.served_model import POOLED
from marblekit.core.windows import Windowing


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="model name in --repo (export it first with marblekit export)")
    parser.add_argument("--repo", default="model_repository", help="model repository (default model_repository/)")
    parser.add_argument("--clients", default="1,8,32", help="concurrent clients per level (default 1,8,32)")
    parser.add_argument("--clip-seconds", type=float, default=10.0, help="audio per request (default 10 s)")
    parser.add_argument("--window-seconds", type=float, default=5.0, help="window length (default 5 s)")
    parser.add_argument("--seconds", type=float, default=8.0, help="length of one timed round (default 8 s)")
    parser.add_argument("--repeats", type=int, default=3, help="alternating rounds per side and level (default 3)")
    parser.add_argument("--batch-delays-ms", default="0,5,20",
                        help="batch windows of the service measured at the most clients (default 0,5,20)")
    parser.add_argument("--triton-env", help="serving venv (default $MARBLEKIT_TRITON_ENV or .venv-triton)")


def run(args: argparse.Namespace) -> int:
    print(bench_features(args).render())
    return 0


@dataclass
class Round:
    """What one timed round of requests gave."""

    latencies: list[float]
    wall_s: float
    clip_s: float

    @property
    def audio_per_s(self) -> float:
        return len(self.latencies) * self.clip_s / self.wall_s


def _percentile(rounds: list[Round], q: float) -> float:
    return 1000.0 * float(np.percentile(np.concatenate([r.latencies for r in rounds]), q))


@dataclass
class Row:
    label: str
    clients: int
    rounds: list[Round]

    @property
    def rate(self) -> float:
        return float(np.median([r.audio_per_s for r in self.rounds]))

    def cells(self) -> str:
        return (f"{self.label:<22}{self.clients:>8}{self.rate:>12.1f}{_percentile(self.rounds, 50):>10.1f}"
                f"{_percentile(self.rounds, 99):>10.1f}")


@dataclass
class FeaturesBenchReport:
    model: str
    clip_s: float
    window_s: float
    seconds: float
    repeats: int
    batch_delay_ms: float
    max_abs_diff: float = 0.0
    rows: list[Row] = field(default_factory=list)
    ratios: dict[int, float] = field(default_factory=dict)

    def render(self) -> str:
        lines = [f"bench features {self.model}: {self.clip_s:g} s clips in {self.window_s:g} s windows, rounds of "
                 f"{self.seconds:g} s, median of {self.repeats} alternating rounds (service batch window "
                 f"{self.batch_delay_ms:g} ms); service vs direct max|diff| {self.max_abs_diff:.2e}",
                 f"{'path':<22}{'clients':>8}{'audio-s/s':>12}{'p50 ms':>10}{'p99 ms':>10}"]
        lines += [row.cells() for row in self.rows]
        lines += [f"service / direct at {clients} clients: {ratio:.2f}x" for clients, ratio in self.ratios.items()]
        return "\n".join(lines)


# --- the load process -------------------------------------------------------------------------------------

_LOAD: dict = {}


def _load_init(triton_url: str, model: str, clips: list[bytes], windows: list[np.ndarray], window_s: float) -> None:
    from marblekit.serving.client import ModelClient

    _LOAD.update(clips=clips, windows=windows, model=model, window_s=window_s, services={},
                 direct=ModelClient(triton_url, model, timeout=300))


def _service(address: str):
    from marblekit.features.client import FeatureClient

    if address not in _LOAD["services"]:
        _LOAD["services"][address] = FeatureClient(address, timeout=300)
    return _LOAD["services"][address]


def _load_round(target: str | None, clients: int, seconds: float, repeat_one: bool) -> tuple[list[float], float]:
    """Every request ``clients`` threads finish in ``seconds`` (each thread starts its next one until then),
    to the feature service at ``target`` or (None) to Triton directly: their latencies and the wall time."""
    latencies: list[float] = []
    lock = threading.Lock()
    started = time.perf_counter()
    deadline = started + seconds
    service = _service(target) if target is not None else None

    def caller(index: int) -> None:
        request = index
        while time.perf_counter() < deadline:
            clip = 0 if repeat_one else request % len(_LOAD["clips"])
            begun = time.perf_counter()
            if service is None:
                _LOAD["direct"].infer(_LOAD["windows"][clip], (POOLED,))
            else:
                service.embed(_LOAD["clips"][clip], _LOAD["model"], window_s=_LOAD["window_s"])
            with lock:
                latencies.append(time.perf_counter() - begun)
            request += clients

    with cf.ThreadPoolExecutor(clients) as pool:
        list(pool.map(caller, range(clients)))
    return latencies, time.perf_counter() - started


# --- the driver -------------------------------------------------------------------------------------------

def _clips(count: int, seconds: float, rate: int, seed: int = 0) -> list[bytes]:
    """Distinct WAV files at the model's rate (the service decodes them; no resampling on either side)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    clips = []
    for _ in range(count):
        audio = 0.3 * np.sin(2 * np.pi * rng.uniform(80, 2000) * t) + 0.05 * rng.standard_normal(t.size)
        buffer = io.BytesIO()
        sf.write(buffer, audio.astype(np.float32), rate, format="WAV", subtype="FLOAT")
        clips.append(buffer.getvalue())
    return clips


def _windows(clip: bytes, how: Preparation, windowing: Windowing) -> np.ndarray:
    """The clip's windows as the service cuts them: one [windows, samples] request."""
    parts: list[np.ndarray] = []
    audio = assemble(parts, stream_bytes(clip, how, parts.append), how)
    return np.stack([audio[a:b] for a, b in windowing.bounds(len(audio), how.sample_rate)])


def bench_features(args: argparse.Namespace) -> FeaturesBenchReport:
    from marblekit.features.client import FeatureClient
    from marblekit.serving.client import ModelClient
    from marblekit.serving.embedded import EmbeddedTriton
    from marblekit.serving.feature_server import FeatureServer, ServerSettings
    from marblekit.serving.feature_service import Limits

    levels = [int(part) for part in args.clients.split(",")]
    delays = [float(part) for part in args.batch_delays_ms.split(",")]
    chosen_delay = Limits().batch_delay_s * 1000
    report = FeaturesBenchReport(args.model, args.clip_seconds, args.window_seconds, args.seconds, args.repeats,
                                 chosen_delay)
    triton_env = Path(args.triton_env) if args.triton_env else None
    with EmbeddedTriton(Path(args.repo), [args.model], grpc_port=0, http_port=0, metrics_port=0,
                        triton_env=triton_env) as triton:
        with ModelClient(triton.grpc_url, args.model) as client:
            info = client.model_metadata()
        how = Preparation(info.sample_rate, info.normalize_input)
        windowing = Windowing(args.window_seconds, args.window_seconds)
        clips = _clips(max(levels) * 2, args.clip_seconds, info.sample_rate)
        windows = [_windows(clip, how, windowing) for clip in clips]
        rounds = 2 + len(levels) * args.repeats * 2 + len(delays) + 3

        def server(batch_delay_ms: float, cache_bytes: int = 0) -> FeatureServer:
            limits = dataclasses.replace(Limits(), batch_delay_s=batch_delay_ms / 1000)
            return FeatureServer(triton.grpc_url, [args.model],
                                 ServerSettings(port=0, cache_bytes=cache_bytes, limits=limits))

        with server(chosen_delay) as service, server(chosen_delay, 64 << 20) as cached, \
                cf.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"), initializer=_load_init,
                                       initargs=(triton.grpc_url, args.model, clips, windows,
                                                 args.window_seconds)) as load, \
                tqdm(total=rounds, desc=f"bench features {args.model}", unit="round") as progress:
            with FeatureClient(service.address) as check, ModelClient(triton.grpc_url, args.model) as direct:
                got = check.embed(clips[0], args.model, window_s=args.window_seconds).pooled  # [W, layers, dim]
                want = direct.infer(windows[0], (POOLED,))[POOLED].reshape(got.shape)
                report.max_abs_diff = float(np.max(np.abs(got - want)))

            def timed(target: str | None, clients: int, seconds: float = args.seconds,
                      repeat_one: bool = False) -> Round:
                latencies, wall = load.submit(_load_round, target, clients, seconds, repeat_one).result()
                progress.update()
                return Round(latencies, wall, args.clip_seconds)

            timed(None, 1, 1.0)  # warm-up: connections, Triton's first executions
            timed(service.address, 1, 1.0)
            for clients in levels:
                direct_rounds, service_rounds = [], []
                for _ in range(args.repeats):
                    direct_rounds.append(timed(None, clients))
                    service_rounds.append(timed(service.address, clients))
                direct_row = Row("direct Triton", clients, direct_rounds)
                service_row = Row("feature service", clients, service_rounds)
                report.rows += [direct_row, service_row]
                report.ratios[clients] = service_row.rate / direct_row.rate
            for delay in delays:
                with server(delay) as other:
                    report.rows.append(Row(f"service, batch {delay:g} ms", max(levels),
                                           [timed(other.address, max(levels))]))
            cached_address = cached.address
            timed(cached_address, 1, 0.5, repeat_one=True)  # the first answer fills the cache
            for clients in (1, 8):
                report.rows.append(Row("cache hit", clients,
                                       [timed(cached_address, clients, args.seconds / 2, repeat_one=True)]))
    return report
