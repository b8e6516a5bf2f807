"""The synthetic suite written by ``marblekit synth``: one folder per task (pass it as ``--data``).

``task.json``: ``kind`` (multiclass, multilabel, regression, beat, separation or key), the output names
under ``classes`` (also read as ``class_names``, ``outputs`` or, for separation, ``stems``) and chance
levels (reported, not used).
``manifest.jsonl``: one JSON object per item with ``id`` (the track id: extract the manifest itself as the
catalog, ``marblekit extract OUT/<task>/manifest.jsonl ...``), ``path`` (relative to the task folder),
``split`` (train/valid/test) and ``label``: a class index (multiclass; key as an index or a name such as
"Eb minor"), a list of tag names (multilabel), a list of floats (regression), a list of beat times in
seconds (beat) or a mapping stem -> path (separation).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from marblekit.probes.grid import Schedule
from marblekit.probes.metrics import KEY_NAMES
from marblekit.probes.tasks.base import SPLITS, Dataset, Extraction, Item, Task, require_file, zscore_on_development
from marblekit.probes.tasks.giantsteps import key_class

NAME_KEYS = ("classes", "class_names", "outputs", "stems")


def read_task_json(folder: Path) -> dict[str, Any]:
    path = require_file(folder / "task.json", "the synthetic task's task.json (from marblekit synth)")
    meta = json.loads(path.read_text())
    if "kind" not in meta:
        raise ValueError(f"{path}: missing 'kind'")
    return meta


def _label(kind: str, raw: Any, vocabulary: dict[str, int], where: str) -> Any:
    if kind == "multiclass":
        return int(raw)
    if kind == "key":
        return int(raw) if isinstance(raw, int) else key_class(raw)
    if kind == "multilabel":
        unknown = [t for t in raw if t not in vocabulary]
        if unknown:
            raise ValueError(f"{where}: tags {unknown} are not among task.json's classes")
        hot = np.zeros(len(vocabulary), np.float32)
        hot[[vocabulary[t] for t in raw]] = 1
        return hot
    if kind == "regression":
        return np.asarray(raw, np.float32)
    if kind == "beat":
        return np.sort(np.asarray(raw, float))
    return dict(raw)


@dataclass(frozen=True)
class SyntheticTask(Task):
    def load(self, root: Path) -> Dataset:
        meta = read_task_json(root)
        if meta["kind"] != self.kind:
            raise ValueError(f"{root / 'task.json'}: kind is {meta['kind']!r} but {self.name} is a {self.kind} task")
        names = next((tuple(meta[k]) for k in NAME_KEYS if k in meta), ())
        vocabulary = {n: i for i, n in enumerate(names)}
        manifest = require_file(root / "manifest.jsonl", "the synthetic task's manifest.jsonl")
        items = []
        for number, line in enumerate(manifest.read_text().splitlines(), 1):
            if not line.strip():
                continue
            row = json.loads(line)
            where = f"{manifest}:{number}"
            if row.get("split") not in SPLITS:
                raise ValueError(f"{where}: split must be one of {SPLITS}, got {row.get('split')!r}")
            group = str(row.get("group", row["id"])) if self.kind == "key" else None
            items.append(Item(row["id"], row["split"], _label(self.kind, row["label"], vocabulary, where), group,
                              row["path"]))
        if self.kind == "regression":
            targets = zscore_on_development(np.stack([item.label for item in items]), [i.split for i in items])
            items = [dataclasses.replace(item, label=target) for item, target in zip(items, targets)]
        return Dataset(items, self._outputs(names, items))

    def _outputs(self, names: tuple[str, ...], items: list[Item]) -> tuple[str, ...]:
        """Output names: fixed for beat and key, else task.json's, else numbered from the labels."""
        if self.kind == "beat":
            return ("no beat", "beat")
        if self.kind == "key":
            return KEY_NAMES
        if names:
            return names
        if self.kind == "separation":
            return tuple(items[0].label)
        width = len(items[0].label) if self.kind == "regression" else 1 + max(int(i.label) for i in items)
        return tuple(f"output {i}" for i in range(width))


_HELP = "a task folder written by marblekit synth (task.json + manifest.jsonl)"
_CLASSIFY = Schedule("ce", 100, 5, 10)
SYNTHETIC = {
    "synth-pitch": SyntheticTask("synth-pitch", "multiclass", _CLASSIFY, Extraction(), "acc", _HELP),
    "synth-instrument": SyntheticTask("synth-instrument", "multiclass", _CLASSIFY, Extraction(), "acc", _HELP),
    "synth-key": SyntheticTask("synth-key", "key", _CLASSIFY, Extraction(), "best_ensemble_score", _HELP),
    "synth-tagging": SyntheticTask("synth-tagging", "multilabel", Schedule("bce", 100, 5, 10), Extraction(),
                                   "aucroc", _HELP),
    "synth-regression": SyntheticTask("synth-regression", "regression", Schedule("mse", 100, 5, 10), Extraction(),
                                      "r2", _HELP),
    "synth-beat": SyntheticTask("synth-beat", "beat", _CLASSIFY, Extraction(level="frames"), "beat_f", _HELP),
    "synth-separation": SyntheticTask("synth-separation", "separation", Schedule("mse", 50, 2, 5),
                                      Extraction(level="frames"), "sdr", _HELP),
}
