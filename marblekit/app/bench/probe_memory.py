"""A feature store larger than the memory budget (default MTG-sized: 477k windows x 25 hidden states x 1024,
24 GB) probed with --memory-gb: peak resident and anonymous memory of the whole job against the store's size.
Needs twice the store's size on disk (the store and the memory-mapped scratch copy)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from marblekit.app.bench.measure import run_measured, total_memory_gib, work_folder
from marblekit.app.bench.probe import TASK, store_attrs, task_folder
from marblekit.core.store_layout import (DONE, ROW_CHUNK, FlatArrays, Layout, consolidate, create_store, flat_rows,
                                         mark_finalized)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--windows", type=int, default=477_000, help="pooled windows in the store (default 477000)")
    parser.add_argument("--windows-per-track", type=int, default=9, help="windows of each track (default 9)")
    parser.add_argument("--layers", type=int, default=25, help="hidden states L+1 (default 25)")
    parser.add_argument("--dim", type=int, default=1024, help="feature width (default 1024)")
    parser.add_argument("--memory-gb", type=float, default=4.0, help="marblekit probe --memory-gb (default 4)")
    parser.add_argument("--max-epochs", type=int, default=1, help="epochs of every probe (default 1)")
    parser.add_argument("--learning-rates", type=float, nargs="+", default=[1e-3],
                        help="learning rates of the grid (default 1e-3 only: the memory does not depend on them)")
    parser.add_argument("--workdir", help="where the store and scratch go (default: a temporary folder)")


def run(args: argparse.Namespace) -> int:
    print(bench_probe_memory(args.windows, args.windows_per_track, args.layers, args.dim, args.memory_gb,
                             max_epochs=args.max_epochs, learning_rates=tuple(args.learning_rates),
                             workdir=args.workdir))
    return 0


def bench_probe_memory(windows: int = 477_000, windows_per_track: int = 9, layers: int = 25, dim: int = 1024,
                       memory_gb: float = 4.0, classes: int = 10, max_epochs: int = 1,
                       learning_rates: tuple[float, ...] = (1e-3,), workdir: Path | None = None,
                       seed: int = 1234) -> str:
    """A store larger than the memory budget (default MTG-sized with MERT-330M: 477k windows x 25 x 1024,
    24 GB) probed with ``--memory-gb``: peak resident and anonymous memory against the store's size. Without
    ``workdir`` the store goes to a temporary folder, removed afterwards."""
    with work_folder(workdir, "marblekit-bench-probe-memory-") as folder:
        store, task_dir = _large_store(folder, windows, windows_per_track, layers, dim, classes, seed)
        out = folder / "probe"
        command = [sys.executable, "-m", "marblekit.app.cli", "probe", str(store), "--task", TASK,
                   "--data", str(task_dir), "--out", str(out), "--memory-gb", str(memory_gb),
                   "--scratch", str(folder / "scratch"),
                   "--max-epochs", str(max_epochs), "--seed", str(seed), "--learning-rates",
                   *[str(lr) for lr in learning_rates]]
        seconds, cpu, peak, peak_anonymous = run_measured(command)
        report = json.loads((out / "results.json").read_text())
    rows = windows // windows_per_track * windows_per_track
    return (f"bench probe-memory: {rows} windows x {layers} hidden states x {dim} fp16 = "
            f"{rows * layers * dim * 2 / 1e9:.1f} GB of features, {len(report['probes'])} probes, {max_epochs} "
            f"epoch(s), mode {report['mode']}, --memory-gb {memory_gb}, {os.cpu_count()} CPU cores, "
            f"{total_memory_gib():.1f} GiB RAM\n"
            f"wall {seconds:.0f} s, CPU {cpu:.0f} s; peak resident {peak / 1e3:.1f} GB (anonymous "
            f"{peak_anonymous / 1e3:.1f} GB, the rest mapped page cache); selected "
            f"{report['winner']['config']['name']} (test acc {report['winner']['test']['acc']:.3f})")


def _large_store(folder: Path, windows: int, windows_per_track: int, layers: int, dim: int, classes: int,
                 seed: int) -> tuple[Path, Path]:
    """A pooled store written chunk by chunk (never whole in RAM) whose class signal sits in the middle
    layer, and its task folder."""
    rng = np.random.default_rng(seed)
    n_tracks = windows // windows_per_track
    labels = rng.integers(0, classes, n_tracks)
    splits = rng.choice(["train", "valid", "test"], n_tracks, p=[0.7, 0.15, 0.15])
    ids = [f"audio/{i:06d}.mp3" for i in range(n_tracks)]
    window_track = np.repeat(np.arange(n_tracks), windows_per_track)
    store = folder / "store.zarr"
    attrs = store_attrs(layers, dim)
    group = create_store(store, attrs, ids, Layout(block_tracks=n_tracks, num_blocks=1))
    flat = FlatArrays(group, len(window_track), attrs, n_tracks)
    centres = rng.normal(size=(classes, dim)).astype(np.float32)
    starts = np.arange(windows_per_track) * attrs.hop_s
    tracks_per_write = max(ROW_CHUNK // windows_per_track, 1)
    for first in tqdm(range(0, n_tracks, tracks_per_write), desc="writing the store"):
        tracks = range(first, min(first + tracks_per_write, n_tracks))
        rows = np.repeat(np.arange(tracks.start, tracks.stop), windows_per_track)
        block = rng.standard_normal((len(rows), layers, dim), np.float32)
        block[:, layers // 2] += centres[labels[rows]]
        flat.write_tracks(tracks, first * windows_per_track, flat_rows(block.astype(np.float16)),
                          rows.astype(np.int32), np.tile(starts, len(tracks)), np.full(len(rows), attrs.window_s),
                          np.full(len(tracks), DONE, np.uint8), [""] * len(tracks))
    flat.finish()
    mark_finalized(group, store)
    consolidate(store)
    return store, task_folder(folder, classes, ids, splits, labels)
