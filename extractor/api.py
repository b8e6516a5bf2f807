"""The extractor's API: an :class:`ExtractRequest` in, a :class:`Summary` out.

``extract`` checks the request against the model it will run (window length, batch size, layers), opens or
resumes the store and runs this process's shard of the catalog. The CLI, the demo, the benchmarks and the
tests all come through here.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from marblekit.core.audio_input import Preparation
from marblekit.core.served_model import ServedModel
from marblekit.core.store_layout import StoreAttrs, StoreReader
from marblekit.core.store_location import StoreLocation, is_url
from marblekit.core.windows import Windowing

from .catalog import Entry, load_catalog
from .engine import DEVICE_PROVIDERS, Engine
from .job import ExtractionJob, JobSettings, Summary
from .progress import Progress
from .store import Store


@dataclass(frozen=True)
class ExtractRequest:
    """One extraction: ``catalog`` (a folder or a .csv/.jsonl manifest) through ``model`` into ``store``.

    ``server`` is a Triton gRPC endpoint (``host:port``); without it the model runs in this process from
    ``repo`` (onnxruntime); ``retry_timeout_s`` is how long an unreachable or busy server is waited for, at
    the start and mid-run. ``hop_s`` None: the window length. ``frame_layers`` None with ``frames``: every
    hidden state. ``shard``: (I, N) processes blocks k with k % N == I. ``scratch``: where decoded tracks
    wait to be windowed (4 bytes per sample at the model's rate, a few tracks at a time; None: the temp folder).
    ``device``: where the local engine runs (``engine.DEVICE_PROVIDERS``; on Ray each worker asks for a GPU).
    ``normalize_windows``: a backbone that takes z-normalised input gets each window normalised on its own.
    """

    catalog: Path
    model: str
    store: StoreLocation
    server: str | None = None
    repo: Path = Path("model_repository")
    window_s: float = 30.0
    hop_s: float | None = None
    crop_s: float | None = None
    normalize_windows: bool = False
    frames: bool = False
    frame_layers: tuple[int, ...] | None = None
    shard: tuple[int, int] = (0, 1)
    workers: int | None = None  # decoding processes; None: min(4, cores)
    #: measured best on a 2-core VM (bench extract-tuning, MERT-95M INT8 through the embedded Triton): batch 4 with 2
    #: decoders ran 24.3-25.4 audio-s/s at 1-4 requests in flight, batch 8 22.7-24.6
    batch: int = 4
    in_flight: int = 2
    deadline_s: float = 120.0
    retry_timeout_s: float = 120.0
    block_tracks: int = 64
    root: Path | None = None
    follow_symlinks: bool = True
    retry_failed: bool = False
    scratch: Path | None = None
    progress: bool = True
    device: str = "cpu"

    def check(self) -> None:
        """Refuse values no model could accept, naming the flag."""
        for flag, value in (("--workers", self.decoders), ("--batch", self.batch), ("--in-flight", self.in_flight),
                            ("--block-tracks", self.block_tracks)):
            if value < 1:
                raise ValueError(f"{flag} must be at least 1, got {value}")
        index, count = self.shard
        if not (count >= 1 and 0 <= index < count):
            raise ValueError(f"--shard {index}/{count}: need 0 <= I < N")
        if self.deadline_s <= 0:
            raise ValueError(f"--deadline must be positive, got {self.deadline_s:g}")
        if self.retry_timeout_s < 0:
            raise ValueError(f"--retry-timeout must be 0 (no retries) or more, got {self.retry_timeout_s:g}")
        if self.crop_s is not None and self.crop_s <= 0:
            raise ValueError(f"--crop must be positive, got {self.crop_s:g}")
        if self.device not in DEVICE_PROVIDERS:
            raise ValueError(f"--device must be one of {', '.join(DEVICE_PROVIDERS)}, got {self.device!r}")
        if self.server and self.device != "cpu":
            raise ValueError(f"--device {self.device} is for --engine local: a Triton server runs on its own devices")

    @property
    def servers(self) -> list[str]:
        """The Triton endpoints ``server`` names (comma-separated; several only on Ray)."""
        return [url.strip() for url in (self.server or "").split(",") if url.strip()]

    @property
    def decoders(self) -> int:
        return self.workers if self.workers is not None else min(4, os.cpu_count() or 1)

    @property
    def windowing(self) -> Windowing:
        return Windowing(self.window_s, self.hop_s if self.hop_s is not None else self.window_s)


def extract(request: ExtractRequest) -> Summary:
    """Run this process's shard of the extraction the request describes and return its summary."""
    request.check()
    if len(request.servers) > 1:
        raise ValueError(f"--server names {len(request.servers)} endpoints; one process uses one (several "
                         f"are spread over the workers of --ray)")
    entries = catalog_entries(request)
    with contextlib.closing(Progress(enabled=request.progress)) as progress, \
            contextlib.closing(open_engine(request, progress.waiting)) as engine:
        plan = plan_extraction(request, entries, engine.info)
        index, count = request.shard
        progress.plan(sum(len(plan.store.block_range(k)) for k in range(index, plan.store.num_blocks, count)))
        # on object storage (no locks) two finalisers could race: there the run without --shard finalises
        finalize = not (is_url(request.store) and count > 1)
        summary = ExtractionJob(plan.entries, plan.store, engine, plan.settings, progress).run(finalize=finalize)
    summary.retried = plan.retried
    return summary


@dataclass
class Plan:
    """What every runner (this process, or a Ray driver) settles before the first block: the catalog, the job
    settings the served model allows, and the store, opened or created (``retried``: failed tracks reopened)."""

    entries: list[Entry]
    settings: JobSettings
    store: Store
    retried: int


def catalog_entries(request: ExtractRequest) -> list[Entry]:
    """The catalog's tracks, read before any engine starts (a wrong catalog is the cheaper mistake to report)."""
    entries = load_catalog(request.catalog, request.root, request.follow_symlinks)
    if not entries:
        raise ValueError(f"catalog {request.catalog} lists no audio files")
    return entries


def plan_extraction(request: ExtractRequest, entries: list[Entry], info: ServedModel) -> Plan:
    check_model(request, info)
    frame_layers = checked_layers(request.frame_layers, info) if request.frames else ()
    settings = JobSettings(request.windowing.for_model(info.min_samples, info.sample_rate),
                           Preparation(info.sample_rate, info.normalize_input, request.crop_s,
                                       info.normalize_input and request.normalize_windows),
                           frame_layers, request.batch, request.decoders, request.shard, request.scratch)
    store = Store(request.store, store_attrs(info, settings), len(entries), request.block_tracks,
                  [entry.id for entry in entries])
    retried = store.reopen_failed() if request.retry_failed else 0
    return Plan(entries, settings, store, retried)


def open_engine(request: ExtractRequest, notify: Callable[[str], None]) -> Engine:
    """The engine the request asks for (imported lazily: the Triton client is not needed to run locally);
    ``notify`` hears what a server engine waits for."""
    if request.server:
        from .triton import TritonEngine

        return TritonEngine(request.server, request.model, max_in_flight=request.in_flight,
                            deadline_s=request.deadline_s, retry_timeout_s=request.retry_timeout_s, notify=notify)
    from .engine import LocalEngine

    return LocalEngine(request.repo, request.model, device=request.device)


def check_model(request: ExtractRequest, info: ServedModel) -> None:
    """The request's windows and batches must fit what the served model accepts."""
    window = int(round(request.window_s * info.sample_rate))
    if not info.min_samples <= window <= info.max_samples:
        raise ValueError(f"--window {request.window_s:g} s is {window} samples; model {info.name!r} accepts "
                         f"{info.min_samples} to {info.max_samples}")
    if request.batch > info.max_batch:
        raise ValueError(f"--batch {request.batch} exceeds model {info.name!r}'s max_batch_size {info.max_batch}")


def checked_layers(layers: tuple[int, ...] | None, info: ServedModel) -> tuple[int, ...]:
    """The frame layers to keep (every layer with frames when None); each unique and one with frames."""
    if layers is None:
        return info.frame_layers
    bad = [layer for layer in layers if layer not in info.frame_layers]
    if bad or len(set(layers)) != len(layers):
        raise ValueError(f"--layers {','.join(map(str, layers))}: each index must be unique and one of the "
                         f"hidden states with frames: {', '.join(map(str, info.frame_layers))}")
    return tuple(layers)


def store_attrs(info: ServedModel, settings: JobSettings) -> StoreAttrs:
    """What the store records about its features: the served model's provenance and this run's settings."""
    return StoreAttrs(
        model=info.name, backbone=info.backbone, onnx_sha256=info.onnx_sha256, random_init=info.random_init,
        weights=str(info.provenance.get("weights", "")),
        precision=info.precision, sample_rate=info.sample_rate, frame_rate=info.frame_rate,
        window_s=settings.windowing.window_s, hop_s=settings.windowing.hop_s,
        min_window_s=settings.windowing.min_window_s,
        crop_s=settings.preparation.crop_s, normalize_input=info.normalize_input,
        normalize_windows=settings.preparation.normalize_windows,
        layers=tuple(range(info.num_hidden_states)), layer_dims=info.layer_dims, frame_layers=settings.frame_layers,
        weighted_layers=info.weighted_layers, layer_names=tuple(info.spec.get("layer_names") or ()),
    )


def render_summary(summary: Summary, store: StoreLocation) -> str:
    """What a run did, its failures (the first 50) and the state of the whole store."""
    speed = summary.audio_s / summary.wall_s if summary.wall_s else 0.0
    lines = [f"extract: {summary.done} done, {summary.failed} failed, {summary.skipped} skipped (already done), "
             f"{summary.elsewhere} left to other processes; {summary.audio_s / 3600:.3f} audio-h in "
             f"{summary.wall_s:.1f} s ({speed:.1f} audio-s/s)"]
    lines += [f"  failed {track_id}: {error}" for track_id, error in summary.failures[:50]]
    if len(summary.failures) > 50:
        lines.append(f"  ... and {len(summary.failures) - 50} more (see track_error in the store)")
    if summary.retried:
        lines.append(f"  retried {summary.retried} failed track(s) (--retry-failed)")
    if summary.finalized:
        done, failed = StoreReader(store).status_counts()
        lines.append(f"store {store}: complete, {done} tracks done and {failed} failed in all")
    elif is_url(store):
        lines.append(f"store {store}: incomplete; once every shard is done, the same command without --shard "
                     f"completes it (on object storage shards do not finalise: no locks there)")
    else:
        lines.append(f"store {store}: incomplete (blocks of other shards pending; rerun or wait for them); "
                     f"{summary.failed_in_store} failed in the blocks done so far")
    return "\n".join(lines)
