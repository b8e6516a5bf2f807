"""Joins a task's items to a store's rows: the training rows and targets, the evaluation sets and the
task's evaluator, ready for ``scheduling.run_grid``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from marblekit.core.task_format import SPLITS
from marblekit.probes.evaluators import (BeatEvaluator, KeyEvaluator, MulticlassEvaluator, MultilabelEvaluator,
                                         RegressionEvaluator)
from marblekit.probes.features import StoreFeatures
from marblekit.probes.matrix import MemoryBudget, load_rows
from marblekit.probes.tasks.base import Dataset, Item, Task
from marblekit.probes.types import EvalSet, ProbeData, TrainSet

#: frames on each side of a beat also marked as beats in training (the reference's widening)
BEAT_WIDENING = 1


@dataclass
class Unit:
    """One training / evaluation item after joining: its feature rows and label."""

    item: Item
    rows: np.ndarray


def track_index(task: Task, dataset: Dataset, features: StoreFeatures,
                source: str) -> dict[str, int]:
    """Store track index of every item id; refuses a store that lacks any of the task's items."""
    index = {track: t for t, track in enumerate(features.track_ids)}
    missing = [item.id for item in dataset.items if item.id not in index]
    if missing:
        raise ValueError(f"store {source} lacks {len(missing)} of the {len(dataset.items)} tracks of {task.name} "
                         f"(or they are not marked done), e.g. {missing[:3]}; track ids must be the task's item "
                         "ids: audio paths relative to the dataset folder, or the synthetic manifest's ids")
    return index


def _units(task: Task, dataset: Dataset, features: StoreFeatures, source: str) -> list[Unit]:
    index = track_index(task, dataset, features, source)
    units = []
    for item in dataset.items:
        rows = features.track_rows[index[item.id]]
        if item.clips is not None:
            if len(rows) < item.clips:
                raise ValueError(f"store {source}: track {item.id} has {len(rows)} windows but the task counts "
                                 f"{item.clips} clips of {task.features.window_s:g} s in it")
            rows = rows[:item.clips]
        if task.kind == "key":  # every 30 s clip is an item of its song
            units.extend(Unit(Item(f"{item.id}#{k}", item.split, item.label, item.group or item.id), rows[k:k + 1])
                         for k in range(len(rows)))
        elif len(rows) == 0:
            raise ValueError(f"store {source}: track {item.id} has no feature rows")
        else:
            units.append(Unit(item, rows))
    return units


def _beat_frames(beats: np.ndarray, n_frames: int, fps: float, widen: int) -> np.ndarray:
    """0/1 per frame: frame round(fps * t) for every beat, widened by ``widen`` frames on each side."""
    target = np.zeros(n_frames, np.int64)
    centres = np.round(np.asarray(beats) * fps).astype(int)
    for offset in range(-widen, widen + 1):
        marked = centres + offset
        target[marked[(marked >= 0) & (marked < n_frames)]] = 1
    return target


def _row_targets(task: Task, unit: Unit, fps: float, split: str) -> np.ndarray:
    n = len(unit.rows)
    if task.kind == "beat":
        return _beat_frames(unit.item.label, n, fps, BEAT_WIDENING if split == "train" else 0)
    if task.kind in ("multiclass", "key"):
        return np.full(n, int(unit.item.label), np.int64)
    return np.repeat(np.asarray(unit.item.label, np.float32)[None], n, axis=0)


def probe_data(task: Task, dataset: Dataset, features: StoreFeatures, source: str,
               budget: MemoryBudget | None = None, in_file: bool = False, progress: bool = False) -> ProbeData:
    """The grid's input for this task, store and dataset; refuses a store whose extraction differs. The
    rows the task uses are read once into a matrix within ``budget`` (``marblekit.probes.matrix``)."""
    if task.kind == "separation":
        raise ValueError("separation tasks train LSTM mask heads, not this grid: see marblekit.probes.separation")
    task.features.check(features.attrs, features.level, source)
    units = _units(task, dataset, features, source)
    fps = float(features.attrs.frame_rate)
    by_split = {split: [u for u in units if u.item.split == split] for split in SPLITS}
    for split, members in by_split.items():
        if not members:
            raise ValueError(f"store {source}: no {split} items of {task.name} have feature rows")
    matrix, positions = load_rows(features, [np.concatenate([u.rows for u in by_split[s]]) for s in SPLITS],
                                  budget, in_file, progress)
    rows = dict(zip(SPLITS, positions))
    train = by_split["train"]
    lengths = [len(u.rows) for u in train]
    train_set = TrainSet(rows["train"], np.concatenate([[0], np.cumsum(lengths)]),
                         np.concatenate([_row_targets(task, u, fps, "train") for u in train]),
                         None if task.train_crop_s is None else round(task.train_crop_s * fps))
    evals = {}
    for split in ("valid", "test"):
        members = by_split[split]
        row_item = np.repeat(np.arange(len(members)), [len(u.rows) for u in members])
        evals[split] = EvalSet(rows[split], row_item, len(members), pool=task.kind != "beat")
    return ProbeData(features=matrix, train=train_set, valid=evals["valid"], test=evals["test"],
                     n_outputs=len(dataset.outputs), schedule=task.schedule,
                     evaluator=_evaluator(task, dataset, by_split, evals, fps),
                     mixed_layers=features.attrs.weighted_layers)


def _evaluator(task: Task, dataset: Dataset, by_split: dict[str, list[Unit]], evals: dict[str, EvalSet], fps: float):
    splits = ("valid", "test")
    labels = {s: [u.item.label for u in by_split[s]] for s in splits}
    if task.kind == "multiclass":
        return MulticlassEvaluator({s: np.array(labels[s], np.int64) for s in splits})
    if task.kind == "multilabel":
        return MultilabelEvaluator({s: np.stack(labels[s]) for s in splits})
    if task.kind == "regression":
        return RegressionEvaluator({s: np.stack(labels[s]) for s in splits}, dataset.outputs)
    if task.kind == "key":
        clip_song, song_key = {}, {}
        for s in splits:
            songs = {}
            for u in by_split[s]:
                songs.setdefault(u.item.group, u.item.label)
            order = {g: i for i, g in enumerate(songs)}
            clip_song[s] = np.array([order[u.item.group] for u in by_split[s]])
            song_key[s] = np.array(list(songs.values()), np.int64)
        return KeyEvaluator(clip_song, song_key)
    if task.kind == "beat":
        references = {s: [np.flatnonzero(_beat_frames(u.item.label, len(u.rows), fps, 0)) / fps for u in by_split[s]]
                      for s in splits}
        return BeatEvaluator({s: evals[s].row_item for s in splits}, references, fps)
    raise ValueError(f"task kind {task.kind!r} has no evaluator")
