"""What a probing task declares: its kind, outputs, loss and schedule, the extraction its features need,
and a loader that turns a dataset folder into items with splits and labels.

Item ids are paths of the audio files relative to the dataset folder passed as ``--data`` (for example
``genres/blues/blues.00000.wav``): the extractor is expected to store the same string as ``track_id``.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from marblekit.core.store_layout import StoreAttrs
from marblekit.core.task_format import SPLITS
from marblekit.probes.types import Schedule


@dataclass(frozen=True)
class FeatureNeeds:
    """The features a task needs. ``window_s`` / ``hop_s``: non-overlapping windows; the default 30 s window
    holds a whole clip of the clip-level datasets (MARBLE runs them in one pass, and its MERT-v0/music2vec
    configs use 30 s windows to the same effect). ``crop_s``: only the first seconds are used. ``level``:
    'pooled' (time-mean per window) or 'frames'. ``normalize_windows``: a backbone's normalised input is
    normalised per window, not per clip (GiantSteps' 30 s clips)."""

    level: str = "pooled"
    window_s: float = 30.0
    hop_s: float = 30.0
    crop_s: float | None = None
    normalize_windows: bool = False

    def check(self, attrs: StoreAttrs, level: str, source: str) -> None:
        """Refuse a store whose extraction differs from this one, saying what differs."""
        problems = []
        if level != self.level:
            problems.append(f"it holds {level} features but the task needs {self.level} features")
        for key in ("window_s", "hop_s", "crop_s"):
            want, got = getattr(self, key), getattr(attrs, key)
            if (want is None) != (got is None) or (want is not None and abs(float(got) - want) > 1e-6):
                problems.append(f"{key} is {got} but the task needs {want}")
        if attrs.normalize_input and attrs.normalize_windows != self.normalize_windows:
            problems.append("its input was normalised " + ("per window" if attrs.normalize_windows else "per track")
                            + " but the task needs it normalised " + ("per window: extract with --normalize-windows"
                                                                      if self.normalize_windows else "per track"))
        if problems:
            raise ValueError(f"store {source} does not match the task's extraction: " + "; ".join(problems))


@dataclass(frozen=True)
class Item:
    """One labelled file. ``group``: the song a clip belongs to (GiantSteps), else None. ``path``: the audio
    file relative to the dataset folder, where it differs from the id (the synthetic suite's manifest ids).
    ``clips``: how many of the track's first windows are the task's clips (GiantSteps counts them from the
    container's duration), None: all of them."""

    id: str
    split: str
    label: Any
    group: str | None = None
    path: str | None = None
    clips: int | None = None

    @property
    def audio_path(self) -> str:
        return self.path or self.id


@dataclass
class Dataset:
    """A task's items and the names of its outputs (classes, tags or regression targets)."""

    items: list[Item]
    outputs: tuple[str, ...]

    def __post_init__(self) -> None:
        for split in SPLITS:
            if not any(item.split == split for item in self.items):
                raise ValueError(f"the dataset has no {split} items")


@dataclass(frozen=True)
class Task(ABC):
    """A probing task; subclasses read their dataset's layout in ``load``. ``finds_lr``: the reference runs a
    learning-rate range test per probe instead of the grid's rates (``marblekit.probes.lr_finder``).
    ``train_crop_s``: the reference trains on one random crop of this length of each item per epoch."""

    name: str
    kind: str
    schedule: Schedule
    features: FeatureNeeds
    monitor: str
    data_help: str
    finds_lr: bool = field(default=False, kw_only=True)
    train_crop_s: float | None = field(default=None, kw_only=True)

    @abstractmethod
    def load(self, root: Path) -> Dataset:
        """Items with splits and labels from the dataset folder ``root``."""


def hash_slot(text: str, slots: tuple[str, ...]) -> str:
    """The split a name hashes to: int(sha1(text)) mod len(slots) picks a slot (jukemir's artist splits)."""
    return slots[int(hashlib.sha1(text.encode()).hexdigest(), 16) % len(slots)]


def require_file(path: Path, what: str) -> Path:
    """The path, or a clear error naming the file and what it should be."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: expected {what}")
    return path


def require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise FileNotFoundError(f"{path} not found: expected {what}")
    return path


def zscore_on_development(targets: np.ndarray, splits: list[str]) -> np.ndarray:
    """Z-score regression targets with the mean and population std of train + valid (MARBLE's Emomusic rule),
    so that the MSE head sees unit-scale targets; R² is unchanged by it."""
    development = np.array([split != "test" for split in splits])
    scale = targets[development].std(0)
    return ((targets - targets[development].mean(0)) / np.where(scale > 0, scale, 1.0)).astype(np.float32)
