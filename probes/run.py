"""One task's grid on one store, end to end: read, join, train every probe, select, write the results."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

from marblekit.probes import grid
from marblekit.probes.assemble import probe_data
from marblekit.probes.features import read_store
from marblekit.probes.tasks import get_task

@dataclasses.dataclass
class ProbeRequest:
    store: Path
    task: str
    data: Path
    out: Path
    mode: str | None = None
    workers: int = 0
    seed: int = grid.SEED
    device: str | None = None
    max_epochs: int | None = None
    learning_rates: tuple[float, ...] = grid.LEARNING_RATES


def run_probe(request: ProbeRequest, progress: bool = True) -> dict[str, Any]:
    """Train the grid and write ``results.json`` and ``leaderboard.md`` into ``request.out``."""
    task = get_task(request.task)
    try:
        dataset = task.load(request.data)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{err} (--data for {task.name}: {task.data_help})") from err
    features = read_store(request.store, task.extraction.level)
    data = probe_data(task, dataset, features, str(request.store))
    if request.max_epochs:
        data.schedule = dataclasses.replace(data.schedule, max_epochs=request.max_epochs)
    configs = grid.probe_grid(data.n_hidden_states, request.learning_rates)
    mode = request.mode or grid.default_mode()
    started = time.perf_counter()
    results = grid.run_grid(data, configs, request.seed, mode, request.workers, request.device, progress=progress)
    seconds = time.perf_counter() - started
    winner = grid.select_winner(results, data.evaluator.monitor)
    report = {
        "task": task.name, "kind": task.kind, "monitor": data.evaluator.monitor, "outputs": list(dataset.outputs),
        "store": str(request.store), "store_metadata": features.attrs, "data": str(request.data),
        "schedule": dataclasses.asdict(data.schedule), "mode": mode, "workers": request.workers,
        "seed": request.seed, "learning_rates": list(request.learning_rates), "train_seconds": round(seconds, 2),
        "items": {s: n for s, n in (("train", data.train.n_items), ("valid", data.valid.n_items),
                                    ("test", data.test.n_items))},
        "winner": {"index": winner, **results[winner].to_json()},
        "probes": [r.to_json() for r in results],
    }
    request.out.mkdir(parents=True, exist_ok=True)
    (request.out / "results.json").write_text(json.dumps(report, indent=1))
    (request.out / "leaderboard.md").write_text(leaderboard(report))
    return report


def leaderboard(report: dict[str, Any]) -> str:
    """Markdown table of every probe, best validation first; the selected probe is marked."""
    monitor = report["monitor"]
    lines = [f"# {report['task']} on {report['store_metadata'].get('model', report['store'])}", "",
             f"Selected on validation {monitor}: **{report['winner']['config']['name']}**, test score "
             f"{report['winner']['test']['score']:.4f}. Mode {report['mode']}, seed {report['seed']}, "
             f"{report['train_seconds']} s.", "",
             f"| rank | probe | epochs | best epoch | valid {monitor} | test score |", "|---|---|---|---|---|---|"]
    ranked = sorted(enumerate(report["probes"]), key=lambda p: (-p[1]["valid"][monitor], p[0]))
    for rank, (index, probe) in enumerate(ranked, 1):
        mark = " ★" if index == report["winner"]["index"] else ""
        lines.append(f"| {rank} | {probe['config']['name']}{mark} | {probe['epochs']} | {probe['best_epoch']} | "
                     f"{probe['valid'][monitor]:.4f} | {probe['test']['score']:.4f} |")
    return "\n".join(lines) + "\n"
