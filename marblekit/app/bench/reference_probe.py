"""One grid configuration trained the standard way: an nn.Module, torch.optim.Adam, torch's
ReduceLROnPlateau, early stopping and a copy of the best state, as the MARBLE reference runs each
configuration (torch.optim.Adam with its fused kernel). It is the baseline of ``bench probe`` and the
oracle the grid trainer is tested against; marblekit's own training never uses it.

Run as a module it is one reference-style sweep run, in its own process, reading one ``.npy`` per item
every epoch through a DataLoader (the reference's data path): see ``marblekit.app.bench.probe``. Its random
streams are marblekit's (the item order of each epoch from numpy's ``default_rng(seed)``, each probe's dropout
masks from ``SeededDropout``), not the DataLoader's shuffle and torch's global dropout draws: with the streams
shared, a run's curve is comparable one-to-one with the same configuration's curve in marblekit's grid.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from marblekit.probes.stacked import SeededDropout
from marblekit.probes.types import BATCH_ITEMS, DROPOUT, HIDDEN_UNITS, ProbeConfig, Schedule

#: (features [B, L+1, D] fp32, per-row targets, dropout keep-mask [B, 512] or None for nn-style dropout)
Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]


class ReferenceProbe(nn.Module):
    """Linear(D, 512) -> ReLU -> Dropout(0.2) -> Linear(512, C) on one layer or the softmax-weighted sum
    of layers 1..L (``randn`` mix logits drawn after the two Linear layers)."""

    def __init__(self, dim: int, n_hidden_states: int, n_outputs: int, layer: int | None, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.layer = layer
        self.first = nn.Linear(dim, HIDDEN_UNITS)
        self.second = nn.Linear(HIDDEN_UNITS, n_outputs)
        self.mix = nn.Parameter(torch.randn(1, n_hidden_states - 1, 1)) if layer is None else None

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        h = (x[:, 1:] * torch.softmax(self.mix, dim=1)).sum(1) if self.layer is None else x[:, self.layer]
        h = torch.relu(self.first(h))
        h = h * keep / (1 - DROPOUT) if keep is not None else F.dropout(h, DROPOUT, self.training)
        return self.second(h)


def loss_fn(kind: str, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    if kind == "ce":
        return F.cross_entropy(logits, targets)
    if kind == "bce":
        return F.binary_cross_entropy_with_logits(logits, targets)
    return F.mse_loss(logits, targets)


def fit(model: ReferenceProbe, config: ProbeConfig, schedule: Schedule,
        epoch_batches: Callable[[], Iterable[Batch]], validate: Callable[[ReferenceProbe], float]
        ) -> tuple[list[float], ReferenceProbe]:
    """Train until early stopping or the epoch limit; returns the validation curve and the best model."""
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr, fused=True)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimiser, mode="max", factor=0.5,
                                                           patience=schedule.plateau_patience)
    curve, best, best_state, wait = [], -np.inf, None, 0
    for _ in range(schedule.max_epochs):
        model.train()
        for x, y, keep in epoch_batches():
            loss = loss_fn(schedule.loss, model(x, keep), y)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        model.eval()
        with torch.no_grad():
            value = validate(model)
        curve.append(value)
        scheduler.step(value)
        if value > best:
            best, best_state, wait = value, copy.deepcopy(model.state_dict()), 0
        else:
            wait += 1
            if wait >= schedule.stop_patience:
                break
    model.load_state_dict(best_state)
    model.eval()
    return curve, model


class ItemFiles(torch.utils.data.Dataset):
    """One ``.npy`` per item ([L+1, windows, D] float32, MARBLE's layout), loaded on every access."""

    def __init__(self, folder: Path, items: np.ndarray, labels: np.ndarray) -> None:
        self.folder, self.items, self.labels = folder, items, labels

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        return np.load(self.folder / f"{self.items[i]}.npy"), int(self.labels[i])


class SharedOrder(torch.utils.data.Sampler[list[int]]):
    """Batches of ``BATCH_ITEMS`` items in marblekit's order: one permutation per epoch from ``default_rng(seed)``."""

    def __init__(self, n_items: int, seed: int) -> None:
        self.n_items, self.shuffle = n_items, np.random.default_rng(seed)

    def __iter__(self) -> Iterator[list[int]]:
        order = self.shuffle.permutation(self.n_items)
        return (order[start:start + BATCH_ITEMS].tolist() for start in range(0, self.n_items, BATCH_ITEMS))

    def __len__(self) -> int:
        return -(-self.n_items // BATCH_ITEMS)


def collate(batch: list[tuple[np.ndarray, int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Windows of all items flattened into one batch, each window with its item's label and index."""
    x = torch.from_numpy(np.concatenate([f.transpose(1, 0, 2) for f, _ in batch]))
    y = torch.tensor([label for f, label in batch for _ in range(f.shape[1])])
    item = torch.tensor([i for i, (f, _) in enumerate(batch) for _ in range(f.shape[1])])
    return x, y, item


def sweep_run(folder: Path, layer: int | None, lr: float, schedule: Schedule, seed: int,
              probe_id: int) -> dict[str, object]:
    """One reference-style multiclass run over a bench folder (``marblekit.app.bench.probe`` writes it), with
    the dropout masks of probe ``probe_id`` of marblekit's grid."""
    meta = json.loads((folder / "meta.json").read_text())
    splits = {s: (np.array(meta[s]["items"]), np.array(meta[s]["labels"])) for s in ("train", "valid", "test")}
    loaders = {s: torch.utils.data.DataLoader(ItemFiles(folder, *splits[s]), collate_fn=collate,
                                              **({"batch_sampler": SharedOrder(len(splits[s][0]), seed)}
                                                 if s == "train" else {"batch_size": BATCH_ITEMS}))
               for s in splits}
    masks, steps = SeededDropout(seed), itertools.count()

    def accuracy(model: ReferenceProbe, split: str) -> float:
        correct = total = 0
        for x, y, item in loaders[split]:
            logits = model(x)
            n_items = int(item.max()) + 1
            mean = torch.zeros(n_items, logits.shape[1]).index_add_(0, item, logits)
            labels = torch.zeros(n_items, dtype=torch.long).index_copy_(0, item, y)
            correct += int((mean.argmax(1) == labels).sum())
            total += n_items
        return correct / total

    model = ReferenceProbe(meta["dim"], meta["hidden_states"], meta["classes"], layer, seed)
    curve, model = fit(model, ProbeConfig(layer, lr), schedule,
                       lambda: ((x, y, masks(np.array([probe_id]), next(steps), len(x))[0])
                                for x, y, _ in loaders["train"]),
                       lambda m: accuracy(m, "valid"))
    with torch.no_grad():
        return {"valid_curve": curve, "valid": max(curve), "test": accuracy(model, "test")}


def main() -> None:
    parser = argparse.ArgumentParser(description="one reference-style probe run (bench probe baseline)")
    parser.add_argument("folder", type=Path)
    parser.add_argument("--layer", default="all")
    parser.add_argument("--lr", type=float, required=True)
    parser.add_argument("--schedule", required=True, help="loss,max_epochs,plateau_patience,stop_patience")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--probe-id", type=int, required=True, help="the configuration's index in marblekit's grid")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    loss, *numbers = args.schedule.split(",")
    schedule = Schedule(loss, *map(int, numbers))
    layer = None if args.layer == "all" else int(args.layer)
    args.out.write_text(json.dumps(sweep_run(args.folder, layer, args.lr, schedule, args.seed,
                                         args.probe_id)))


if __name__ == "__main__":
    main()
