"""One task's grid on one store, end to end: read, join, train every probe, select, write the results."""

from __future__ import annotations

import dataclasses
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from marblekit.core.store_location import StoreLocation
from marblekit.probes import lr_finder, scheduling, types
from marblekit.probes.assemble import probe_data
from marblekit.probes.features import read_store
from marblekit.probes.matrix import MemoryBudget
from marblekit.probes.selection import select_winner
from marblekit.probes.separation import SeparationSettings
from marblekit.probes.slabs import Slabs
from marblekit.probes.tasks import Dataset, Task, get_task

SEPARATION_MODE = "sequential"


@dataclasses.dataclass
class ProbeRequest:
    store: StoreLocation
    task: str
    data: Path
    out: Path
    mode: str | None = None
    workers: int = 0
    seed: int = types.SEED
    device: str | None = None
    max_epochs: int | None = None
    learning_rates: tuple[float, ...] = types.LEARNING_RATES
    separation: SeparationSettings = dataclasses.field(default_factory=SeparationSettings)
    memory_gb: float | None = None  # features in RAM at most; None: half the available memory
    scratch: Path | None = None  # where features over the budget are memory-mapped; None: the temp folder
    lr_find: bool | None = None  # a range test per probe instead of the rate grid; None: as the task's reference


@dataclasses.dataclass
class Trained:
    """What either trainer hands back for the report."""

    results: list[types.ProbeResult]
    monitor: str
    schedule: types.Schedule
    mode: str
    items: dict[str, int]
    seconds: float
    winner: dict[str, Any]  # the selected probe as results.json reports it (separation: each stem's own)
    separation: dict[str, Any] | None = None  # the separation trainer's settings
    lr_range_test: dict[str, Any] | None = None  # each probe's range test, by probe name


def _with_epochs(schedule: types.Schedule, max_epochs: int | None) -> types.Schedule:
    return dataclasses.replace(schedule, max_epochs=max_epochs) if max_epochs else schedule


def _train_grid(request: ProbeRequest, task: Task, dataset: Dataset, features: Any, budget: MemoryBudget,
                progress: bool) -> Trained:
    """The MLP grid of every non-separation task."""
    mode = request.mode or scheduling.default_mode()
    data = probe_data(task, dataset, features, str(request.store), budget, mode != "vectorised", progress)
    data.schedule = _with_epochs(data.schedule, request.max_epochs)
    started = time.perf_counter()
    range_tests = None
    if task.finds_lr if request.lr_find is None else request.lr_find:
        configs, tests = _range_tested(data, request, budget)
        range_tests = {config.name: test.to_json() for config, test in zip(configs, tests)}
    else:
        configs = types.probe_grid(data.features.layers, request.learning_rates, bool(data.mixed_layers))
    results = scheduling.run_grid(data, configs, request.seed, mode, request.workers, request.device, progress,
                                  budget.bytes)
    items = {"train": data.train.n_items, "valid": data.valid.n_items, "test": data.test.n_items}
    best = select_winner(results, data.evaluator.monitor)
    return Trained(results, data.evaluator.monitor, data.schedule, mode, items, time.perf_counter() - started,
                   {"index": best, **results[best].to_json()}, lr_range_test=range_tests)


def _range_tested(data: types.ProbeData, request: ProbeRequest, budget: MemoryBudget
                  ) -> tuple[list[types.ProbeConfig], list[lr_finder.RangeTest]]:
    """One probe per layer choice at the rate its range test suggests, and the tests."""
    base = types.probe_grid(data.features.layers, (lr_finder.FALLBACK_LR,), bool(data.mixed_layers))
    slabs = Slabs(data.features, data.mixed_layers, budget.bytes)
    device = request.device or scheduling.default_device()
    tests: dict[int, lr_finder.RangeTest] = {}
    for group in scheduling.width_groups(data, base):
        tests.update(zip(group, lr_finder.range_tests(data, [base[i] for i in group], request.seed, device, slabs)))
    ordered = [tests[i] for i in range(len(base))]
    return [types.ProbeConfig(c.layer, test.lr) for c, test in zip(base, ordered)], ordered


def _train_separation(request: ProbeRequest, task: Task, dataset: Dataset, features: Any, budget: MemoryBudget,
                      progress: bool) -> Trained:
    """Mask heads per stem and grid point, one after another (``marblekit.probes.separation``)."""
    from marblekit.probes import separation
    from marblekit.probes.separation_data import separation_data

    data = separation_data(task, dataset, features, request.data, str(request.store), budget, progress)
    data.schedule = _with_epochs(data.schedule, request.max_epochs)
    settings = request.separation
    configs = types.probe_grid(data.features.layers, request.learning_rates, bool(data.mixed_layers))
    started = time.perf_counter()
    results = separation.run_separation_grid(data, configs, settings, request.seed, request.device, progress)
    items = {split: len(tracks) for split, tracks in data.splits.items()}
    return Trained(results, separation.MONITOR, data.schedule, SEPARATION_MODE, items,
                   time.perf_counter() - started, separation.per_stem_winner(results),
                   separation={**dataclasses.asdict(settings), "n_fft": data.spectrogram.n_fft,
                               "hop": data.spectrogram.hop})


def run_probe(request: ProbeRequest, progress: bool = True) -> dict[str, Any]:
    """Train the grid and write ``results.json`` and ``leaderboard.md`` into ``request.out``."""
    task = get_task(request.task)
    try:
        dataset = task.load(request.data)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{err} (--data for {task.name}: {task.data_help})") from err
    features = read_store(request.store, task.features.level)
    train = _train_separation if task.kind == "separation" else _train_grid
    if request.scratch is not None:
        request.scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="marblekit-probe-", dir=request.scratch) as scratch:
        budget = MemoryBudget.default(Path(scratch))
        if request.memory_gb is not None:
            budget = dataclasses.replace(budget, bytes=int(request.memory_gb * 1e9))
        trained = train(request, task, dataset, features, budget, progress)
    results = trained.results
    report = {
        "task": task.name, "kind": task.kind, "monitor": trained.monitor, "outputs": list(dataset.outputs),
        "store": str(request.store), "store_metadata": features.attrs.to_json(), "data": str(request.data),
        "schedule": dataclasses.asdict(trained.schedule), "mode": trained.mode, "workers": request.workers,
        "seed": request.seed, "learning_rates": sorted({r.config.lr for r in results}), "memory_bytes": budget.bytes,
        "train_seconds": round(trained.seconds, 2), "items": trained.items,
        "winner": trained.winner,
        "probes": [r.to_json() for r in results],
    }
    if trained.lr_range_test is not None:
        report["lr_range_test"] = trained.lr_range_test
    if trained.separation is not None:
        report["separation"] = trained.separation
    request.out.mkdir(parents=True, exist_ok=True)
    (request.out / "results.json").write_text(json.dumps(report, indent=1))
    (request.out / "leaderboard.md").write_text(leaderboard(report))
    return report


def leaderboard(report: dict[str, Any]) -> str:
    """Markdown table of every probe, best validation first; the selected probe (each stem's, for separation) is
    marked."""
    monitor = report["monitor"]
    lines = [f"# {report['task']} on {report['store_metadata'].get('model', report['store'])}", "",
             f"Selected on validation {monitor}: **{report['winner']['config']['name']}**, test score "
             f"{report['winner']['test']['score']:.4f}. Mode {report['mode']}, seed {report['seed']}, "
             f"{report['train_seconds']} s.", "",
             f"| rank | probe | epochs | best epoch | valid {monitor} | test score |", "|---|---|---|---|---|---|"]
    ranked = sorted(enumerate(report["probes"]), key=lambda p: (-p[1]["valid"][monitor], p[0]))
    for rank, (index, probe) in enumerate(ranked, 1):
        chosen_for = [stem for stem, i in report["winner"].get("per_stem", {}).items() if i == index]
        mark = " ★" if index == report["winner"]["index"] else f" ★ {', '.join(chosen_for)}" if chosen_for else ""
        lines.append(f"| {rank} | {probe['config']['name']}{mark} | {probe['epochs']} | {probe['best_epoch']} | "
                     f"{probe['valid'][monitor]:.4f} | {probe['test']['score']:.4f} |")
    return "\n".join(lines) + "\n"
