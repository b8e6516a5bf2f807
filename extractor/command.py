"""Extract features of a whole catalog into a Zarr v3 store, as MARBLE does: decode, mono, crop, resample,
z-normalise the clip (when the backbone asks for it), non-overlapping windows (the last one kept at its true
length when >= 1 s), time-mean of every hidden state per window. Resumable: the same command again skips
finished blocks of tracks; several processes (--shard i/n) may write one store at once."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

from marblekit import __version__

from .windows import MIN_WINDOW_S

if TYPE_CHECKING:
    from .engine import Engine, ModelInfo
    from .pipeline import Settings, Summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("catalog", type=Path, metavar="CATALOG",
                        help="a directory of audio files (recursive) or a .csv / .jsonl manifest with "
                             "id, path and optional start, end (seconds)")
    parser.add_argument("--model", required=True, help="model name in the repository / on the server")
    parser.add_argument("--store", required=True, type=Path, help="Zarr v3 store directory to write or resume")
    parser.add_argument("--root", type=Path,
                        help="manifest paths are relative to this directory and must stay inside it "
                             "(default: the manifest's directory, not enforced)")
    transport = parser.add_mutually_exclusive_group(required=True)
    transport.add_argument("--server", metavar="HOST:PORT", help="Triton gRPC endpoint")
    transport.add_argument("--engine", choices=("local",), help="local: onnxruntime in this process, no server")
    parser.add_argument("--repo", type=Path, default=Path("model_repository"),
                        help="model repository for --engine local (default model_repository/)")
    parser.add_argument("--window", type=float, default=30.0, help="window length in seconds (default 30)")
    parser.add_argument("--hop", type=float, help="seconds between window starts (default: the window length)")
    parser.add_argument("--crop", type=float, help="keep only the first CROP seconds of every track")
    parser.add_argument("--frames", action="store_true", help="also store frame-level features (--layers)")
    parser.add_argument("--layers", help="hidden-state indices stored with --frames, e.g. 0,6,12 (default all)")
    parser.add_argument("--shard", default="0/1", metavar="I/N",
                        help="process only blocks k with k %% N == I (default 0/1)")
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1),
                        help="decoding processes (default min(4, cores))")
    parser.add_argument("--batch", type=int, default=8, help="full windows per request (default 8)")
    parser.add_argument("--in-flight", type=int, default=4, help="Triton requests in flight (default 4)")
    parser.add_argument("--deadline", type=float, default=120.0, help="seconds per Triton request (default 120)")
    parser.add_argument("--block-tracks", type=int, default=64,
                        help="tracks per block, the unit of work and of writing (default 64)")
    parser.add_argument("--allow-failures", action="store_true",
                        help="exit 0 even when some files could not be extracted")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def parse_shard(text: str) -> tuple[int, int]:
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard must look like I/N (e.g. 0/2), got {text!r}") from None
    if not (count >= 1 and 0 <= index < count):
        raise ValueError(f"--shard {text}: need 0 <= I < N")
    return index, count


def parse_layers(text: str | None, num_hidden_states: int) -> tuple[int, ...]:
    if text is None:
        return tuple(range(num_hidden_states))
    try:
        layers = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise ValueError(f"--layers must be comma-separated integers, got {text!r}") from None
    bad = [layer for layer in layers if not 0 <= layer < num_hidden_states]
    if bad or len(set(layers)) != len(layers):
        raise ValueError(f"--layers {text}: each index must be unique and in 0..{num_hidden_states - 1}")
    return layers


def run(args: argparse.Namespace) -> int:
    summary = extract(args)
    print(render_summary(summary, args.store))
    return 1 if summary.failed and not args.allow_failures else 0


def extract(args: argparse.Namespace) -> "Summary":
    """Run the extraction the parsed flags describe and return its summary."""
    from .audio import Preparation
    from .catalog import load_catalog
    from .pipeline import Extraction, Settings
    from .progress import Progress
    from .store import Store
    from .windows import Windowing

    for name in ("workers", "batch", "in_flight", "block_tracks"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1")
    shard = parse_shard(args.shard)
    windowing = Windowing(args.window, args.hop if args.hop is not None else args.window)
    if args.crop is not None and args.crop <= 0:
        raise ValueError(f"--crop must be positive, got {args.crop:g}")
    entries = load_catalog(args.catalog, args.root)
    if not entries:
        raise ValueError(f"catalog {args.catalog} lists no audio files")
    engine = open_engine(args)
    try:
        info = engine.info
        window = int(round(args.window * info.sample_rate))
        if not info.min_samples <= window <= info.max_samples:
            raise ValueError(f"--window {args.window:g} s is {window} samples; model {info.name!r} accepts "
                             f"{info.min_samples} to {info.max_samples}")
        if args.batch > info.max_batch:
            raise ValueError(f"--batch {args.batch} exceeds model {info.name!r}'s max_batch_size {info.max_batch}")
        frame_layers = parse_layers(args.layers, info.num_hidden_states) if args.frames else ()
        settings = Settings(windowing, Preparation(info.sample_rate, info.normalize_input, args.crop),
                            frame_layers, args.batch, args.workers, shard)
        metadata = store_metadata(info, settings)
        store = Store(args.store, metadata, [entry.id for entry in entries], args.block_tracks, len(frame_layers))
        planned = sum(len(store.block_range(k)) for k in range(shard[0], store.num_blocks, shard[1]))
        progress = Progress(planned, enabled=not args.no_progress)
        try:
            summary = Extraction(entries, store, engine, settings, progress).run()
        finally:
            progress.close()
    finally:
        engine.close()
    return summary


def open_engine(args: argparse.Namespace) -> "Engine":
    """The engine the flags ask for (imported lazily: the Triton client is not needed for --engine local)."""
    if args.server:
        from .triton import TritonEngine

        return TritonEngine(args.server, args.model, max_in_flight=args.in_flight, deadline_s=args.deadline)
    from .engine import LocalEngine

    return LocalEngine(args.repo, args.model)


def store_metadata(info: "ModelInfo", settings: "Settings") -> dict[str, object]:
    """attrs["marblekit"]: everything needed to interpret the store and to refuse resuming it differently."""
    return {
        "model": info.name, "backbone": info.backbone, "onnx_sha256": info.onnx_sha256,
        "random_init": info.random_init, "precision": info.precision, "store_dtype": "float16",
        "sample_rate": info.sample_rate, "frame_rate": info.frame_rate,
        "window_s": settings.windowing.window_s, "hop_s": settings.windowing.hop_s,
        "min_window_s": MIN_WINDOW_S, "crop_s": settings.preparation.crop_s,
        "normalize_input": info.normalize_input, "layers": list(range(info.num_hidden_states)),
        "frame_layers": list(settings.frame_layers), "dim": info.dim, "pooling": "mean over frames",
        "marblekit_version": __version__,
    }


def render_summary(summary: "Summary", store: Path) -> str:
    speed = summary.audio_s / summary.wall_s if summary.wall_s else 0.0
    lines = [f"extract: {summary.done} done, {summary.failed} failed, {summary.skipped} skipped (already done), "
             f"{summary.elsewhere} left to other processes; {summary.audio_s / 3600:.3f} audio-h in "
             f"{summary.wall_s:.1f} s ({speed:.1f} audio-s/s)"]
    lines += [f"  failed {track_id}: {error}" for track_id, error in summary.failures[:50]]
    if len(summary.failures) > 50:
        lines.append(f"  ... and {len(summary.failures) - 50} more (see track_error in the store)")
    if summary.finalized:
        from .store import status_counts

        done, failed = status_counts(store)
        lines.append(f"store {store}: complete, {done} tracks done and {failed} failed in all")
    else:
        lines.append(f"store {store}: incomplete (blocks of other shards pending; rerun or wait for them)")
    return "\n".join(lines)
