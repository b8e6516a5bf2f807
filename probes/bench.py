"""``marblekit bench probe``: the whole grid of a GTZAN-sized synthetic task, three ways, in one run.

* reference-style sweep: each of the 84 configurations in its own process, serially, reading one .npy
  per item every epoch through a DataLoader (``reference.py``), as the MARBLE scripts do;
* marblekit ``per-layer`` mode (one layer choice's learning rates per worker process, features shared);
* marblekit ``per-probe`` mode (one probe per worker process);
* marblekit ``vectorised`` mode (all probes stacked in one model).

Wall time, CPU time and the peak resident memory of each (summed over the process tree, sampled every
0.1 s), and whether the selected probe agrees. ``--reference-runs K`` times only K evenly spread configurations and
extrapolates the sweep's time (said so in the output); the winner is then compared among those K only.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from marblekit.probes.features import write_store
from marblekit.probes.grid import LEARNING_RATES, probe_grid
from marblekit.probes.tasks import get_task

SPLIT_SIZES = {"train": 442, "valid": 197, "test": 290}  # GTZAN's filtered split
TASK = "synth-pitch"


@dataclass
class Measured:
    name: str
    seconds: float
    cpu_seconds: float
    peak_mb: float
    winner: str
    note: str = ""


def gtzan_like(layers: int, dim: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """fp16 features [N, layers, dim] whose class signal lives in a 32-d subspace, strongest mid-stack."""
    rng = np.random.default_rng(seed)
    n = sum(SPLIT_SIZES.values())
    labels = rng.integers(0, classes, n)
    centres = rng.normal(size=(classes, 32))
    basis = np.linalg.qr(rng.normal(size=(dim, 32)))[0].T
    strength = np.exp(-0.5 * ((np.arange(layers) - layers * 0.55) / (layers * 0.2)) ** 2)
    features = rng.normal(size=(n, layers, dim)).astype(np.float32)
    features += 0.5 * strength[None, :, None] * (centres[labels] @ basis)[:, None, :]
    splits = [s for s, k in SPLIT_SIZES.items() for _ in range(k)]
    return features.astype(np.float16), labels, splits


def _task_folder(workdir: Path, classes: int, ids: list[str], splits: Any, labels: np.ndarray) -> Path:
    """The benchmark task as a synthetic-suite folder (task.json and manifest.jsonl)."""
    task_dir = workdir / TASK
    task_dir.mkdir(exist_ok=True)
    (task_dir / "task.json").write_text(json.dumps({"kind": "multiclass", "classes": [str(c) for c in range(classes)]}))
    (task_dir / "manifest.jsonl").write_text("\n".join(
        json.dumps({"id": i, "path": i, "split": str(s), "label": int(y)}) for i, s, y in zip(ids, splits, labels))
        + "\n")
    return task_dir


def _store_attrs(layers: int) -> dict[str, Any]:
    """Store metadata matching the benchmark task's extraction."""
    extraction = get_task(TASK).extraction
    return {"model": "bench", "sample_rate": 16000, "frame_rate": 50, "window_s": extraction.window_s,
            "hop_s": extraction.hop_s, "layers": list(range(layers)), "random_init": True, "precision": "fp16"}


def _tree_memory_mb(pid: int) -> tuple[float, float]:
    """Resident memory of a process and all its descendants (Linux /proc), in all and anonymous only (what
    the processes allocated themselves, without the page cache they map)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    total, anonymous, stack = 0, 0, [pid]
    while stack:
        current = stack.pop()
        stack.extend(children.get(current, []))
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
                elif line.startswith("RssAnon:"):
                    anonymous += int(line.split()[1])
        except OSError:
            continue
    return total / 1024, anonymous / 1024


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_measured(command: list[str], env: dict[str, str] | None = None) -> tuple[float, float, float, float]:
    """Wall seconds, CPU seconds (user + system of the whole tree), peak tree RSS and peak tree anonymous
    RSS (MB) of a command; raises with its stderr if it fails. CPU time is the fair figure on a machine
    shared with other jobs."""
    cpu_before = _children_cpu()
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    peak, peak_anonymous = 0.0, 0.0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak, peak_anonymous
        while not done.is_set():
            rss, anonymous = _tree_memory_mb(process.pid)
            peak, peak_anonymous = max(peak, rss), max(peak_anonymous, anonymous)
            done.wait(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, err = process.communicate()
    done.set()
    sampler.join()
    if process.returncode:
        raise RuntimeError(f"{' '.join(command[:4])} ... failed:\n{err[-2000:]}")
    return time.perf_counter() - started, _children_cpu() - cpu_before, peak, peak_anonymous


def bench_probe(layers: int = 13, dim: int = 768, classes: int = 10, reference_runs: int = 84,
                max_epochs: int | None = None, workers: int = 0,
                modes: tuple[str, ...] = ("per-layer", "per-probe", "vectorised"), workdir: Path | None = None,
                seed: int = 1234) -> str:
    from tqdm import tqdm

    with _work_folder(workdir, "marblekit-bench-probe-") as workdir:
        features, labels, splits = gtzan_like(layers, dim, classes, seed)
        ids = [f"audio/{i:04d}.wav" for i in range(len(labels))]
        task_dir = _task_folder(workdir, classes, ids, splits, labels)
        store = workdir / "store.zarr"
        write_store(store, ids, _store_attrs(layers), pooled=features, window_track=np.arange(len(ids)))
        schedule = get_task(TASK).schedule
        epochs = max_epochs or schedule.max_epochs
        # the reference layout: one [L+1, windows, D] float32 file per item
        npy = workdir / "reference"
        npy.mkdir(exist_ok=True)
        split_items = {s: [i for i, x in enumerate(splits) if x == s] for s in SPLIT_SIZES}
        for i in range(len(ids)):
            np.save(npy / f"{i}.npy", features[i].astype(np.float32)[:, None, :])
        (npy / "meta.json").write_text(json.dumps({
            "dim": dim, "hidden_states": layers, "classes": classes,
            **{s: {"items": items, "labels": labels[items].tolist()} for s, items in split_items.items()}}))

        rows: list[Measured] = []
        python = sys.executable
        for mode in modes:
            out = workdir / f"marblekit-{mode}"
            command = [python, "-m", "marblekit.cli", "probe", str(store), "--task", TASK, "--data", str(task_dir),
                       "--out", str(out), "--mode", mode, "--workers", str(workers), "--max-epochs", str(epochs),
                       "--seed", str(seed)]
            seconds, cpu, peak, _ = run_measured(command)
            report = json.loads((out / "results.json").read_text())
            rows.append(Measured(f"marblekit {mode}", seconds, cpu, peak, report["winner"]["config"]["name"],
                                 f"test acc {report['winner']['test']['acc']:.3f}"))

        configs = probe_grid(layers, LEARNING_RATES)
        chosen = np.unique(np.linspace(0, len(configs) - 1, min(reference_runs, len(configs))).round().astype(int))
        results, total, total_cpu, peak = {}, 0.0, 0.0, 0.0
        spec = f"{schedule.loss},{epochs},{schedule.plateau_patience},{schedule.stop_patience}"
        env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
        for index in tqdm(chosen, desc="reference sweep runs"):
            config = configs[index]
            out = workdir / f"reference-{index}.json"
            command = [python, "-m", "marblekit.probes.reference", str(npy), "--layer",
                       "all" if config.layer is None else str(config.layer), "--lr", str(config.lr),
                       "--schedule", spec, "--seed", str(seed), "--out", str(out)]
            seconds, cpu, run_peak, _ = run_measured(command, env)
            total += seconds
            total_cpu += cpu
            peak = max(peak, run_peak)
            results[index] = json.loads(out.read_text())
        best = max(results, key=lambda i: (results[i]["valid"], -i))
        scale = len(configs) / len(chosen)
        note = f"test acc {results[best]['test']:.3f}"
        if len(chosen) < len(configs):
            note += (f"; {len(chosen)} of {len(configs)} runs timed ({total:.0f} s), time extrapolated, winner "
                     "among those")
        rows.append(Measured("reference-style sweep", total * scale, total_cpu * scale, peak, configs[best].name, note))
        return render(rows, len(configs), epochs)


def render(rows: list[Measured], n_probes: int, epochs: int) -> str:
    baseline, baseline_cpu = rows[-1].seconds, rows[-1].cpu_seconds
    lines = [f"bench probe: GTZAN-sized synthetic task ({sum(SPLIT_SIZES.values())} items), {n_probes} probes, "
             f"up to {epochs} epochs, {os.cpu_count()} CPU cores",
             f"{'variant':<26}{'wall s':>9}{'speed-up':>10}{'CPU s':>9}{'CPU ratio':>10}{'peak MB':>9}  winner"]
    for row in rows:
        lines.append(f"{row.name:<26}{row.seconds:>9.1f}{baseline / row.seconds:>9.1f}x{row.cpu_seconds:>9.1f}"
                     f"{baseline_cpu / row.cpu_seconds:>9.1f}x{row.peak_mb:>9.0f}  {row.winner} ({row.note})")
    return "\n".join(lines)


def bench_probe_memory(windows: int = 477_000, windows_per_track: int = 9, layers: int = 25, dim: int = 1024,
                       memory_gb: float = 4.0, classes: int = 10, max_epochs: int = 1,
                       learning_rates: tuple[float, ...] = (1e-3,), workdir: Path | None = None,
                       seed: int = 1234) -> str:
    """A store larger than the memory budget (default MTG-sized with MERT-330M: 477k windows x 25 x 1024,
    24 GB) probed with ``--memory-gb``: peak resident and anonymous memory against the store's size. Without
    ``workdir`` the store goes to a temporary folder, removed afterwards."""
    with _work_folder(workdir, "marblekit-bench-probe-memory-") as folder:
        store, task_dir = _large_store(folder, windows, windows_per_track, layers, dim, classes, seed)
        out = folder / "probe"
        command = [sys.executable, "-m", "marblekit.cli", "probe", str(store), "--task", TASK, "--data", str(task_dir),
                   "--out", str(out), "--memory-gb", str(memory_gb), "--scratch", str(folder / "scratch"),
                   "--max-epochs", str(max_epochs), "--seed", str(seed), "--learning-rates",
                   *[str(lr) for lr in learning_rates]]
        seconds, cpu, peak, peak_anonymous = run_measured(command)
        report = json.loads((out / "results.json").read_text())
    rows = windows // windows_per_track * windows_per_track
    return (f"bench probe-memory: {rows} windows x {layers} hidden states x {dim} fp16 = "
            f"{rows * layers * dim * 2 / 1e9:.1f} GB of features, {len(report['probes'])} probes, {max_epochs} "
            f"epoch(s), mode {report['mode']}, --memory-gb {memory_gb}, {os.cpu_count()} CPU cores, "
            f"{_total_memory_gib():.1f} GiB RAM\n"
            f"wall {seconds:.0f} s, CPU {cpu:.0f} s; peak resident {peak / 1e3:.1f} GB (anonymous "
            f"{peak_anonymous / 1e3:.1f} GB, the rest mapped page cache); selected "
            f"{report['winner']['config']['name']} (test acc {report['winner']['test']['acc']:.3f})")


def _large_store(folder: Path, windows: int, windows_per_track: int, layers: int, dim: int, classes: int,
                 seed: int) -> tuple[Path, Path]:
    """A pooled store written chunk by chunk (never whole in RAM) whose class signal sits in the middle
    layer, and its task folder."""
    import zarr
    from tqdm import tqdm

    rng = np.random.default_rng(seed)
    n_tracks = windows // windows_per_track
    labels = rng.integers(0, classes, n_tracks)
    splits = rng.choice(["train", "valid", "test"], n_tracks, p=[0.7, 0.15, 0.15])
    ids = [f"audio/{i:06d}.mp3" for i in range(n_tracks)]
    window_track = np.repeat(np.arange(n_tracks), windows_per_track)
    store = folder / "store.zarr"
    write_store(store, ids, _store_attrs(layers), pooled=None, window_track=window_track,
                window_start=np.tile(np.arange(windows_per_track) * get_task(TASK).extraction.hop_s, n_tracks))
    pooled = zarr.open_group(str(store), mode="r+").create_array(
        "pooled", shape=(len(window_track), layers, dim), dtype="float16", chunks=(512, layers, dim),
        compressors=None)
    centres = rng.normal(size=(classes, dim)).astype(np.float32)
    for start in tqdm(range(0, len(window_track), 512), desc="writing the store"):
        rows = window_track[start:start + 512]
        block = rng.standard_normal((len(rows), layers, dim), np.float32)
        block[:, layers // 2] += centres[labels[rows]]
        pooled[start:start + len(rows)] = block.astype(np.float16)
    return store, _task_folder(folder, classes, ids, splits, labels)


@contextlib.contextmanager
def _work_folder(workdir: Path | None, prefix: str) -> Iterator[Path]:
    """``workdir`` (created if missing), or a temporary folder removed afterwards."""
    if workdir is None:
        with tempfile.TemporaryDirectory(prefix=prefix) as folder:
            yield Path(folder)
    else:
        Path(workdir).mkdir(parents=True, exist_ok=True)
        yield Path(workdir)


def _total_memory_gib() -> float:
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30
