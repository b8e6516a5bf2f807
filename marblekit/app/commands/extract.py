"""Extract features of a whole catalog into a Zarr v3 store, as MARBLE does: decode, mono, crop, resample,
z-normalise the clip (when the backbone asks for it), non-overlapping windows (the last one kept at its true
length when >= 1 s), time-mean of every hidden state per window. Resumable: the same command again skips
finished blocks of tracks; several processes (--shard i/n) may write one store at once.

A directory catalog is walked following symbolic links (as find -L; loops and dangling links fail alone);
file names that are not UTF-8 get ids with those bytes as %XX. Exit status: 0 every track of the store done,
1 some tracks of the store failed (this run or an earlier one; --retry-failed tries them again), 2 bad flags or
arguments (a --model the server lacks too), 3 the Triton server stayed unavailable (longer than
--retry-timeout), 5 another error (the message says which)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from marblekit.core.store_location import store_location

if TYPE_CHECKING:  # the extractor is imported when the command runs, not to build the parser
    from marblekit.extractor.api import ExtractRequest


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("catalog", type=Path, metavar="CATALOG",
                        help="a directory of audio files (recursive) or a .csv / .jsonl manifest with "
                             "id, path and optional start, end (seconds)")
    parser.add_argument("--model", required=True, help="model name in the repository / on the server")
    parser.add_argument("--store", required=True, type=store_location,
                        help="Zarr v3 store to write or resume: a folder, or an fsspec URL (s3://bucket/path.zarr; "
                             "credentials from the AWS environment, one writer per block: see --shard)")
    parser.add_argument("--root", type=Path,
                        help="manifest paths are relative to this directory and must stay inside it, by their "
                             "spelling (default: the manifest's directory)")
    transport = parser.add_mutually_exclusive_group(required=True)
    transport.add_argument("--server", metavar="HOST:PORT[,HOST:PORT...]",
                           help="Triton gRPC endpoint (with --ray, several, spread round-robin over the workers)")
    transport.add_argument("--engine", choices=("local",), help="local: onnxruntime in this process, no server")
    parser.add_argument("--repo", type=Path, default=Path("model_repository"),
                        help="model repository for --engine local (default model_repository/)")
    parser.add_argument("--device", default="cpu",
                        help="where --engine local runs the model: cpu, or cuda (needs onnxruntime-gpu; with --ray "
                             "each worker asks Ray for one GPU); default cpu")
    parser.add_argument("--window", type=float, default=30.0, help="window length in seconds (default 30)")
    parser.add_argument("--hop", type=float, help="seconds between window starts (default: the window length)")
    parser.add_argument("--crop", type=float, help="keep only the first CROP seconds of every track")
    parser.add_argument("--normalize-windows", action="store_true",
                        help="z-normalise each window on its own instead of the whole track (for a backbone that "
                             "takes normalised input; GiantSteps key needs it, as its reference normalises each 30 s "
                             "clip)")
    parser.add_argument("--frames", action="store_true", help="also store frame-level features (--layers)")
    parser.add_argument("--layers", help="hidden-state indices stored with --frames, e.g. 0,6,12 (default all)")
    parser.add_argument("--shard", default="0/1", metavar="I/N",
                        help="process only blocks k with k %% N == I (default 0/1)")
    parser.add_argument("--workers", type=int, help="decoding processes (default min(4, cores); with --ray, "
                        "each Ray worker's, and the CPUs it asks Ray for)")
    ray = parser.add_argument_group("on a Ray cluster (pip install 'marblekit[ray]')")
    ray.add_argument("--ray", nargs="?", const="", metavar="ADDRESS",
                     help="run the blocks on Ray: the cluster at ADDRESS (auto, host:6379, ray://host:10001), or "
                          "without ADDRESS a local Ray on this machine; the driver owns the schedule (no --shard)")
    ray.add_argument("--ray-workers", type=int,
                     help="Ray workers, each with its own engine (default: the cluster's CPUs / --workers, or with "
                          "--device cuda its GPUs)")
    parser.add_argument("--batch", type=int, default=4, help="full windows per request (default 4)")
    parser.add_argument("--in-flight", type=int, default=2, help="Triton requests in flight (default 2)")
    parser.add_argument("--deadline", type=float, default=120.0, help="seconds per Triton request (default 120)")
    parser.add_argument("--retry-timeout", type=float, default=120.0,
                        help="seconds to wait for an unreachable or busy Triton, at the start and mid-run, "
                             "before the job stops with status 3 (default 120; 0: no retries)")
    parser.add_argument("--block-tracks", type=int, default=64,
                        help="tracks per block, the unit of work and of writing (default 64)")
    parser.add_argument("--allow-failures", action="store_true",
                        help="exit 0 even when some tracks of the store failed")
    parser.add_argument("--retry-failed", action="store_true",
                        help="extract the store's failed tracks again (a complete store is reopened for it)")
    parser.add_argument("--no-follow-symlinks", action="store_true",
                        help="a directory catalog ignores symbolic links instead of following them")
    parser.add_argument("--scratch", type=Path,
                        help="folder where decoded tracks wait to be windowed: about 350 MB per audio-hour at "
                             "24 kHz, for 2 x workers + 2 tracks at a time (default: the temp folder)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def parse_shard(text: str) -> tuple[int, int]:
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard must look like I/N (e.g. 0/2), got {text!r}") from None
    return index, count


def parse_layers(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise ValueError(f"--layers must be comma-separated integers, got {text!r}") from None


def request_of(args: argparse.Namespace) -> "ExtractRequest":
    """The typed request the flags describe."""
    from marblekit.extractor.api import ExtractRequest

    return ExtractRequest(
        catalog=args.catalog, model=args.model, store=args.store, server=args.server, repo=args.repo,
        window_s=args.window, hop_s=args.hop, crop_s=args.crop, normalize_windows=args.normalize_windows,
        frames=args.frames,
        frame_layers=parse_layers(args.layers), shard=parse_shard(args.shard), workers=args.workers,
        batch=args.batch, in_flight=args.in_flight, deadline_s=args.deadline, retry_timeout_s=args.retry_timeout,
        block_tracks=args.block_tracks, root=args.root, follow_symlinks=not args.no_follow_symlinks,
        retry_failed=args.retry_failed, scratch=args.scratch, progress=not args.no_progress, device=args.device)


def run(args: argparse.Namespace) -> int:
    from marblekit.extractor.api import extract, render_summary

    if args.ray is not None:
        if args.shard != "0/1":
            raise ValueError("--shard with --ray: on Ray the driver gives out every block; drop --shard")
        from marblekit.extractor.ray_runner import RaySettings, extract_on_ray

        summary = extract_on_ray(request_of(args), RaySettings(args.ray or None, args.ray_workers))
    else:
        summary = extract(request_of(args))
    print(render_summary(summary, args.store))
    return 1 if summary.failed_in_store and not args.allow_failures else 0
