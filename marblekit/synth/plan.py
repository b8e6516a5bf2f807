"""What a task generator hands to the renderer: item specifications (MIDI parts per stem plus the label known by
construction), the task header, and the helpers every generator uses for scales, seeds and splits."""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from marblekit.core.task_format import SPLITS
from marblekit.synth.midi import Part

#: bumped whenever a change alters what a given seed renders
GENERATOR_VERSION = 2  # 2: MARBLE's key and pitch-class spelling (flats)
SCALES = ("tiny", "small", "full")
_SPLIT_FRACTIONS = (0.7, 0.15, 0.15)
#: the stem of single-stream items
MIX = "mix"


@dataclass(frozen=True)
class Size:
    """Item count and clip length of a task at one scale."""

    items: int
    seconds: float


@dataclass
class ItemSpec:
    """One item to render: its MIDI parts per stem and its label (JSON-ready)."""

    id: str
    split: str
    piece: str
    label: Any
    seconds: float
    stems: dict[str, list[Part]]
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class TaskPlan:
    """A task header (kind, classes, targets or stems, metric) and its items."""

    name: str
    kind: str
    metric: str
    items: list[ItemSpec]
    classes: list[str] = field(default_factory=list)
    targets: list[str] = field(default_factory=list)
    stems: list[str] = field(default_factory=list)
    notes: str = ""


def item_rng(seed: int, task: str, index: int) -> np.random.Generator:
    """The generator of one item's musical draws, a stream of its own so items never depend on each other's draws."""
    return np.random.default_rng([seed, zlib.crc32(task.encode()), index])


def task_rng(seed: int, task: str) -> np.random.Generator:
    """The generator for task-wide draws (split order, program splits)."""
    return np.random.default_rng([seed, zlib.crc32(task.encode())])


def split_sequence(rng: np.random.Generator, count: int) -> list[str]:
    """``count`` split names, 70 / 15 / 15 % with at least one valid and one test item, in shuffled order."""
    if count < 3:
        raise ValueError(f"a task needs at least 3 items (one per split), got {count}")
    valid = max(1, round(count * _SPLIT_FRACTIONS[1]))
    test = max(1, round(count * _SPLIT_FRACTIONS[2]))
    names = ["train"] * (count - valid - test) + ["valid"] * valid + ["test"] * test
    return [names[i] for i in rng.permutation(count)]


def balanced_labels(rng: np.random.Generator, splits: list[str], classes: int) -> list[int]:
    """A class per item: within each split, whole random permutations of the classes laid end to end, so class
    counts differ by at most one (and a split smaller than the class count gets distinct classes)."""
    labels = [0] * len(splits)
    for split in SPLITS:
        positions = [i for i, name in enumerate(splits) if name == split]
        rounds = -(-len(positions) // classes)
        cycle = np.concatenate([rng.permutation(classes) for _ in range(rounds)]) if positions else []
        for position, label in zip(positions, cycle):
            labels[position] = int(label)
    return labels
