"""``marblekit bench probe``: the whole grid of a GTZAN-sized synthetic task, three ways, in one run.

* reference-style sweep: each of the 84 configurations in its own process, serially, reading one .npy
  per item every epoch through a DataLoader (``reference.py``), as the MARBLE scripts do;
* marblekit ``per-layer`` mode (one layer choice's learning rates per worker process, features shared);
* marblekit ``per-probe`` mode (one probe per worker process);
* marblekit ``vectorised`` mode (all probes stacked in one model).

Wall time, CPU time and the peak resident memory of each (summed over the process tree, sampled every
0.1 s), whether the selected probe agrees, and each mode's largest per-probe difference from the sweep's
validation curves (the sweep shares marblekit's item order and dropout masks, so the curves should agree to
float rounding). ``--reference-runs K`` times only K evenly spread configurations and
extrapolates the sweep's time (said so in the output); the winner is then compared among those K only.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from marblekit.app.bench.measure import run_measured, work_folder
from marblekit.core.store_layout import StoreAttrs, write_store
from marblekit.core.task_format import write_task
from marblekit.probes.tasks import get_task
from marblekit.probes.types import LEARNING_RATES, probe_grid

SPLIT_SIZES = {"train": 442, "valid": 197, "test": 290}  # GTZAN's filtered split
TASK = "synth-pitch"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reference-runs", type=int, default=84,
                        help="reference configurations to time (fewer: extrapolated; default all 84)")
    parser.add_argument("--max-epochs", type=int, help="cap every run's epochs (default: the task's 100)")
    parser.add_argument("--layers", type=int, default=13, help="hidden states L+1 (default 13)")
    parser.add_argument("--dim", type=int, default=768, help="feature width (default 768)")
    parser.add_argument("--workers", type=int, default=0,
                        help="workers of the per-layer and per-probe modes (0 = all cores)")
    parser.add_argument("--workdir", help="where the synthetic data goes (default: a temporary folder)")


def run(args: argparse.Namespace) -> int:
    print(bench_probe(args.layers, args.dim, reference_runs=args.reference_runs, max_epochs=args.max_epochs,
                      workers=args.workers, workdir=args.workdir))
    return 0


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


def task_folder(workdir: Path, classes: int, ids: list[str], splits: Any, labels: np.ndarray) -> Path:
    """The benchmark task as a synthetic-suite folder (task.json and manifest.jsonl)."""
    task_dir = workdir / TASK
    task_dir.mkdir(exist_ok=True)
    write_task(task_dir, {"name": TASK, "kind": "multiclass", "metric": "accuracy",
                          "classes": [str(c) for c in range(classes)]},
               [{"id": i, "path": i, "split": str(s), "label": int(y)} for i, s, y in zip(ids, splits, labels)])
    return task_dir


def store_attrs(layers: int, dim: int) -> StoreAttrs:
    """Store metadata matching the benchmark task's extraction."""
    needs = get_task(TASK).features
    return StoreAttrs(model="bench", sample_rate=16000, frame_rate=50, window_s=needs.window_s, hop_s=needs.hop_s,
                      layers=tuple(range(layers)), layer_dims=(dim,) * layers,
                      weighted_layers=tuple(range(1, layers)), random_init=True, precision="fp16")


def bench_probe(layers: int = 13, dim: int = 768, classes: int = 10, reference_runs: int = 84,
                max_epochs: int | None = None, workers: int = 0,
                modes: tuple[str, ...] = ("per-layer", "per-probe", "vectorised"), workdir: Path | None = None,
                seed: int = 1234) -> str:
    from tqdm import tqdm

    with work_folder(workdir, "marblekit-bench-probe-") as workdir:
        features, labels, splits = gtzan_like(layers, dim, classes, seed)
        ids = [f"audio/{i:04d}.wav" for i in range(len(labels))]
        task_dir = task_folder(workdir, classes, ids, splits, labels)
        store = workdir / "store.zarr"
        write_store(store, store_attrs(layers, dim), ids, pooled=features, window_track=np.arange(len(ids)))
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
        curves: dict[str, list[list[float]]] = {}
        python = sys.executable
        for mode in modes:
            out = workdir / f"marblekit-{mode}"
            command = [python, "-m", "marblekit.app.cli", "probe", str(store), "--task", TASK, "--data", str(task_dir),
                       "--out", str(out), "--mode", mode, "--workers", str(workers), "--max-epochs", str(epochs),
                       "--seed", str(seed)]
            seconds, cpu, peak, _ = run_measured(command)
            report = json.loads((out / "results.json").read_text())
            name = f"marblekit {mode}"
            curves[name] = [p["valid_curve"] for p in report["probes"]]
            rows.append(Measured(name, seconds, cpu, peak, report["winner"]["config"]["name"],
                                 f"test acc {report['winner']['test']['acc']:.3f}"))

        configs = probe_grid(range(layers), LEARNING_RATES)
        chosen = np.unique(np.linspace(0, len(configs) - 1, min(reference_runs, len(configs))).round().astype(int))
        results, total, total_cpu, peak = {}, 0.0, 0.0, 0.0
        spec = f"{schedule.loss},{epochs},{schedule.plateau_patience},{schedule.stop_patience}"
        env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
        for index in tqdm(chosen, desc="reference sweep runs"):
            config = configs[index]
            out = workdir / f"reference-{index}.json"
            command = [python, "-m", "marblekit.app.bench.reference_probe", str(npy), "--layer",
                       "all" if config.layer is None else str(config.layer), "--lr", str(config.lr),
                       "--schedule", spec, "--seed", str(seed), "--probe-id", str(index), "--out", str(out)]
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
        for row in rows[:-1]:
            row.note += "; " + curve_difference(curves[row.name], {i: r["valid_curve"] for i, r in results.items()})
        return render(rows, len(configs), epochs)


def curve_difference(mode_curves: list[list[float]], sweep_curves: dict[int, list[float]]) -> str:
    """The largest per-probe difference between a mode's validation curves and the sweep's, and how many
    probes stopped after a different number of epochs."""
    largest, lengths = 0.0, 0
    for index, sweep in sweep_curves.items():
        mine = mode_curves[index]
        lengths += len(mine) != len(sweep)
        common = min(len(mine), len(sweep))
        largest = max(largest, float(np.abs(np.subtract(mine[:common], sweep[:common])).max(initial=0.0)))
    text = f"valid curves vs sweep: max |diff| {largest:.2g} over {len(sweep_curves)} probes"
    return text + (f", {lengths} of other length" if lengths else "")


def render(rows: list[Measured], n_probes: int, epochs: int) -> str:
    baseline, baseline_cpu = rows[-1].seconds, rows[-1].cpu_seconds
    lines = [f"bench probe: GTZAN-sized synthetic task ({sum(SPLIT_SIZES.values())} items), {n_probes} probes, "
             f"up to {epochs} epochs, {os.cpu_count()} CPU cores",
             f"{'variant':<26}{'wall s':>9}{'speed-up':>10}{'CPU s':>9}{'CPU ratio':>10}{'peak MB':>9}  winner"]
    for row in rows:
        lines.append(f"{row.name:<26}{row.seconds:>9.1f}{baseline / row.seconds:>9.1f}x{row.cpu_seconds:>9.1f}"
                     f"{baseline_cpu / row.cpu_seconds:>9.1f}x{row.peak_mb:>9.0f}  {row.winner} ({row.note})")
    return "\n".join(lines)
