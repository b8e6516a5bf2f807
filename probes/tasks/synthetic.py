"""The synthetic suite written by ``marblekit synth``: one folder per task (pass it as ``--data``), in the
format of ``marblekit.core.task_format`` (read with its ``load_task``). Track ids are the manifest's ids:
extract the manifest itself as the catalog, ``marblekit extract OUT/<task>/manifest.jsonl ...``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from marblekit.core.keys import KEY_NAMES
from marblekit.core.task_format import SynthItem, SynthTask, load_task
from marblekit.probes.tasks.base import Dataset, FeatureNeeds, Item, Task, zscore_on_development
from marblekit.probes.types import Schedule


def _label(task: SynthTask, item: SynthItem, vocabulary: dict[str, int]) -> Any:
    """The format's label as the probes take it: multi-hot tags, float arrays, stems relative to the folder."""
    if task.kind == "multilabel":
        hot = np.zeros(len(vocabulary), np.float32)
        hot[[vocabulary[tag] for tag in item.label]] = 1  # type: ignore[union-attr]
        return hot
    if task.kind == "regression":
        return np.asarray(item.label, np.float32)
    if task.kind == "beat":
        return np.sort(np.asarray(item.label, float))
    if task.kind == "separation":
        stems: dict[str, Path] = item.label  # type: ignore[assignment]
        return {stem: str(path.relative_to(task.folder)) for stem, path in stems.items()}
    return int(item.label)  # type: ignore[arg-type]


@dataclass(frozen=True)
class SyntheticTask(Task):
    def load(self, root: Path) -> Dataset:
        task = load_task(root)
        if task.kind != self.kind:
            raise ValueError(f"{root / 'task.json'}: kind is {task.kind!r} but {self.name} is a {self.kind} task")
        names = tuple(task.output_names)
        vocabulary = {name: i for i, name in enumerate(names)}
        items = [Item(item.id, item.split, _label(task, item, vocabulary), item.id if self.kind == "key" else None,
                      str(item.path.relative_to(task.folder))) for item in task.items]
        if self.kind == "regression":
            targets = zscore_on_development(np.stack([item.label for item in items]), [i.split for i in items])
            items = [dataclasses.replace(item, label=target) for item, target in zip(items, targets)]
        return Dataset(items, self._outputs(names, items))

    def _outputs(self, names: tuple[str, ...], items: list[Item]) -> tuple[str, ...]:
        """Output names: fixed for beat and key, the stems in the manifest's order for separation, else
        task.json's, else numbered from the labels."""
        if self.kind == "beat":
            return ("no beat", "beat")
        if self.kind == "key":
            return KEY_NAMES
        if self.kind == "separation":
            return tuple(items[0].label)
        if names:
            return names
        width = len(items[0].label) if self.kind == "regression" else 1 + max(int(i.label) for i in items)
        return tuple(f"output {i}" for i in range(width))


_HELP = "a task folder written by marblekit synth (task.json + manifest.jsonl)"
_CLASSIFY = Schedule("ce", 100, 5, 10)
SYNTHETIC = {
    "synth-pitch": SyntheticTask("synth-pitch", "multiclass", _CLASSIFY, FeatureNeeds(), "acc", _HELP),
    "synth-instrument": SyntheticTask("synth-instrument", "multiclass", _CLASSIFY, FeatureNeeds(), "acc", _HELP),
    "synth-key": SyntheticTask("synth-key", "key", _CLASSIFY, FeatureNeeds(), "best_ensemble_score", _HELP),
    "synth-tagging": SyntheticTask("synth-tagging", "multilabel", Schedule("bce", 100, 5, 10), FeatureNeeds(),
                                   "aucroc", _HELP),
    "synth-regression": SyntheticTask("synth-regression", "regression", Schedule("mse", 100, 5, 10), FeatureNeeds(),
                                      "r2", _HELP),
    "synth-beat": SyntheticTask("synth-beat", "beat", _CLASSIFY, FeatureNeeds(level="frames"), "beat_f", _HELP),
    "synth-separation": SyntheticTask("synth-separation", "separation", Schedule("mse", 50, 2, 5),
                                      FeatureNeeds(level="frames"), "sdr", _HELP),
}
