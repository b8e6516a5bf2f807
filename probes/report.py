"""Render probe results across backbones: a MARBLE-style markdown table and a per-layer score plot.

Reads every results.json under the given folders. Table cells are test scores of the validation-selected
probe on MARBLE's scales: percentages, tagging as ROC/AP, Emomusic as R²V/R²A, separation as SDR in dB; the Avg. column is the
unweighted mean of the task scores (tagging and Emomusic first averaged), as the paper computes it.
The plot shows, per task and backbone, the test score of each layer choice with its best learning rate
(chosen on validation), the weighted sum at the right.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def load_results(dirs: list[Path]) -> list[dict[str, Any]]:
    paths = []
    for folder in dirs:
        if folder.is_file():
            paths.append(folder)
        elif folder.is_dir():
            paths.extend(sorted(folder.rglob("results.json")))
        else:
            raise FileNotFoundError(f"{folder} not found: expected a folder of probe results")
    if not paths:
        raise FileNotFoundError(f"no results.json under {', '.join(map(str, dirs))}")
    return [json.loads(p.read_text()) for p in paths]


def _backbone(report: dict[str, Any]) -> str:
    """The row label: the model, and whether its weights are random or pretrained (a checkpoint)."""
    meta = report.get("store_metadata", {})
    name = str(meta.get("model", report.get("store", "?")))
    if meta.get("random_init"):
        return f"{name} (random init)"
    return f"{name} (pretrained)" if meta.get("weights") == "checkpoint" else name


def cell(report: dict[str, Any]) -> tuple[str, float]:
    """The table text of a task result and its contribution to Avg. (0-100)."""
    test = report["winner"]["test"]
    if report["kind"] == "separation":  # SDR in dB, used as-is in Avg. (as the paper does)
        return f"{test['score']:.1f}", test["score"]
    if report["kind"] == "multilabel":
        return f"{100 * test['aucroc']:.1f}/{100 * test['ap']:.1f}", 50 * (test["aucroc"] + test["ap"])
    if report["kind"] == "regression" and {"r2_valence", "r2_arousal"} <= set(test):
        return f"{100 * test['r2_valence']:.1f}/{100 * test['r2_arousal']:.1f}", 100 * test["r2"]
    return f"{100 * test['score']:.1f}", 100 * test["score"]


def table(reports: list[dict[str, Any]]) -> str:
    tasks = list(dict.fromkeys(r["task"] for r in reports))
    backbones = list(dict.fromkeys(_backbone(r) for r in reports))
    found = {(_backbone(r), r["task"]): cell(r) for r in reports}
    lines = ["| backbone | " + " | ".join(tasks) + " | Avg. |", "|---" * (len(tasks) + 2) + "|"]
    for backbone in backbones:
        cells = [found.get((backbone, t)) for t in tasks]
        scores = [c[1] for c in cells if c is not None]
        average = f"{sum(scores) / len(scores):.1f}" if len(scores) == len(tasks) else "–"
        lines.append(f"| {backbone} | " + " | ".join(c[0] if c else "–" for c in cells) + f" | {average} |")
    return "\n".join(lines) + "\n"


def per_layer(report: dict[str, Any]) -> tuple[list[str], list[float]]:
    """Layer labels and the test score of each layer choice's validation-best learning rate."""
    monitor = report["monitor"]
    best: dict[str, dict[str, Any]] = {}
    for probe in report["probes"]:
        layer = probe["config"]["layer"]
        key = "all" if layer is None else str(layer)
        if key not in best or probe["valid"][monitor] > best[key]["valid"][monitor]:
            best[key] = probe
    scale = 1 if report["kind"] == "separation" else 100  # dB or percent
    return list(best), [scale * p["test"]["score"] for p in best.values()]


def plot(reports: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(r["task"] for r in reports))
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.5 * len(tasks), 3.4), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for report in (r for r in reports if r["task"] == task):
            labels, scores = per_layer(report)
            ax.plot(range(len(labels)), scores, marker="o", label=_backbone(report))
            ax.set_xticks(range(len(labels)), labels, fontsize=7)
        ax.set_title(task)
        ax.set_xlabel("layer")
        ax.set_ylabel("test score")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(dirs: list[Path], out: Path) -> str:
    """``out/table.md`` and ``out/layers.png`` from every results.json under ``dirs``; returns the table."""
    reports = load_results(dirs)
    out.mkdir(parents=True, exist_ok=True)
    text = table(reports)
    (out / "table.md").write_text(text)
    plot(reports, out / "layers.png")
    return text
