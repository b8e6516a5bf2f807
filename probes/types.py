"""The MARBLE constrained grid's definitions, shared by the task definitions, the trainers and the report:
the grid itself (every layer and the weighted sum x six learning rates), a task's schedule, the splits a grid
trains and evaluates on, and what a probe run yields. No torch here: task definitions import these types,
never the trainer.

A probe is Linear(D, 512) -> ReLU -> Dropout(0.2) -> Linear(512, C) on one hidden state, or on the
softmax-weighted sum of the backbone's weighted-sum layers (hidden states 1..L of a transformer, as MARBLE
mixes them; layers of one width that share one space for other backbones: ``BackboneSpec.weighted_layers``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from marblekit.probes.matrix import LayerMatrix

LEARNING_RATES = (5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 1e-2)
HIDDEN_UNITS = 512
DROPOUT = 0.2
BATCH_ITEMS = 64
SEED = 1234  # every MARBLE reference run uses this seed


@dataclass(frozen=True)
class ProbeConfig:
    """One grid point: a hidden-state index, or None for the softmax-weighted sum."""

    layer: int | None
    lr: float

    @property
    def name(self) -> str:
        return f"{'all' if self.layer is None else f'layer {self.layer}'}, lr {self.lr:g}"


def probe_grid(layers: Sequence[int], learning_rates: tuple[float, ...] = LEARNING_RATES,
               weighted: bool = True) -> list[ProbeConfig]:
    """Every layer (hidden-state indices, ascending) then the weighted sum (unless ``weighted`` is off: a
    backbone without layers that share one space), each with every learning rate (ascending).

    This order is also the tie-break: among equal validation monitors the earliest probe wins, i.e. the
    lowest layer, then the smallest learning rate, the weighted sum last.
    """
    layers = [*sorted(layers), *([None] if weighted else [])]
    return [ProbeConfig(layer, lr) for layer in layers for lr in sorted(learning_rates)]


@dataclass(frozen=True)
class Schedule:
    """A task's training settings. ``loss``: 'ce' (int targets), 'bce' (0/1 multi-hot), 'mse'."""

    loss: str
    max_epochs: int
    plateau_patience: int
    stop_patience: int


@dataclass
class TrainSet:
    """Training rows grouped by item: item i owns ``rows[offsets[i]:offsets[i+1]]`` of the feature array;
    ``targets`` has one entry per row (the item's label repeated per window, or a per-frame label).
    ``crop_rows``: each epoch trains on one random run of this many consecutive rows of each longer item."""

    rows: np.ndarray
    offsets: np.ndarray
    targets: np.ndarray
    crop_rows: int | None = None

    @property
    def n_items(self) -> int:
        return len(self.offsets) - 1


@dataclass
class EvalSet:
    """Evaluation rows. ``pool``: average the logits of an item's rows (MARBLE's scatter-mean) and hand
    [P, n_items, C] to the evaluator; otherwise hand the row outputs [P, rows, C] (frame-wise tasks)."""

    rows: np.ndarray
    row_item: np.ndarray
    n_items: int
    pool: bool = True


class Evaluator(Protocol):
    """Scores outputs of every probe at once. Returns metric -> [P]; ``monitor`` names the selection
    metric and ``score`` the task score. For the test split the validation metrics (at the same best
    states) are passed, for metrics selected on validation (GiantSteps' ensemble)."""

    monitor: str

    def __call__(self, outputs: np.ndarray, split: str, valid: dict[str, np.ndarray] | None = None
                 ) -> dict[str, np.ndarray]: ...


@dataclass
class ProbeData:
    """Everything a grid needs: layer-major fp16 features (``marblekit.probes.matrix.LayerMatrix``, in RAM
    or a read-only memory map), the three splits, whose rows index the features' rows, and the layers the
    weighted sum mixes."""

    features: LayerMatrix
    train: TrainSet
    valid: EvalSet
    test: EvalSet
    n_outputs: int
    schedule: Schedule
    evaluator: Evaluator
    mixed_layers: tuple[int, ...] = ()


@dataclass
class ProbeResult:
    """One probe's run: per-epoch curves, its best epoch, and metrics at its best-validation state."""

    config: ProbeConfig
    epochs: int
    best_epoch: int
    valid_curve: list[float]
    train_loss: list[float]
    final_lr: float
    valid: dict[str, float] = field(default_factory=dict)
    test: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["config"] = {"layer": self.config.layer, "lr": self.config.lr, "name": self.config.name}
        return out
