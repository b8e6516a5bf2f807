"""One group of stacked probes trained on its features: batches of 64 *items* whose windows (or frames) are
flattened, one shuffled item order per epoch drawn from the seed and shared by every probe (every reference
run uses the same seed, so they share it too), validation every epoch and a final evaluation of every
probe's best state.

On a CPU each probe's dropout masks come from its own seeded stream, so a probe's run is the same in any
group and every mode gives the same numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from marblekit.probes.slabs import Slabs
from marblekit.probes.stacked import ProbeGroup, SeededDropout
from marblekit.probes.types import (BATCH_ITEMS, DROPOUT, HIDDEN_UNITS, EvalSet, ProbeConfig, ProbeData, ProbeResult,
                                    TrainSet)

EVAL_CHUNK_ROWS = 4096


def _batch_positions(train: TrainSet, items: np.ndarray, shuffle: np.random.Generator) -> np.ndarray:
    """Positions in ``train.rows`` / ``train.targets`` of these items' rows, in item order, windows
    flattened (the reference's collate); with ``crop_rows``, of one random crop of each longer item, its start
    drawn as the reference draws it (``randint(0, length - crop)``)."""
    starts = train.offsets[items]
    lengths = train.offsets[items + 1] - starts
    if train.crop_rows is not None:
        longer = lengths > train.crop_rows
        starts = starts + np.where(longer, shuffle.integers(0, np.maximum(lengths - train.crop_rows, 1)), 0)
        lengths = np.minimum(lengths, train.crop_rows)
    within = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return np.repeat(starts, lengths) + within


def epoch_batches(train: TrainSet, shuffle: np.random.Generator) -> Iterator[np.ndarray]:
    """One epoch's batches of ``BATCH_ITEMS`` items in a fresh shuffled order (crops drawn batch by batch), as
    row positions."""
    order = shuffle.permutation(train.n_items)
    for start in range(0, train.n_items, BATCH_ITEMS):
        yield _batch_positions(train, order[start:start + BATCH_ITEMS], shuffle)


class Stepper:
    """One Adam step of every live probe of a group on a batch: the features, targets and dropout masks a
    group trains with (per-probe seeded masks on a CPU, one device draw elsewhere)."""

    def __init__(self, group: ProbeGroup, data: ProbeData, features: Any, seed: int) -> None:
        self.group, self.rows, self.features = group, data.train.rows, features
        self.dropout_masks = SeededDropout(seed) if group.device.type == "cpu" else None
        self.targets = torch.from_numpy(data.train.targets).to(group.device)
        self.step = 0

    def __call__(self, positions: np.ndarray) -> Any:
        """Train on the rows at ``positions``; returns each live probe's batch loss [P_live] (detached)."""
        group, device = self.group, self.group.device
        rows = self.rows[positions]
        x = self.features[:, torch.as_tensor(rows, device=self.features.device)].float()
        if self.dropout_masks is not None:
            keep = self.dropout_masks(group.ids[group.live], self.step, len(rows)).to(device)
        else:
            keep = torch.rand(group.n_live, len(rows), HIDDEN_UNITS, generator=group.generator,
                              device=device) >= DROPOUT
        per_probe = group.loss(group.forward(x, keep), self.targets[torch.as_tensor(positions, device=device)])
        per_probe.sum().backward()
        group.adam_step()
        self.step += 1
        return per_probe.detach()


def group_features(slabs: Slabs, configs: list[ProbeConfig], device: str) -> tuple[np.ndarray, Any]:
    """The layers a group of ``configs`` reads and their features, on ``device``."""
    layers = slabs.layers_for(configs)
    features = slabs.get(layers)
    return layers, features if device == "cpu" else features.to(device)


def evaluate_outputs(group: ProbeGroup, features: Any, split: EvalSet) -> np.ndarray:
    """Eval-mode outputs of every live probe: [P, n_items, C] pooled per item, or [P, rows, C]."""
    n_out = group.params["w2"].shape[2]
    chunks = []
    with torch.no_grad():
        pooled = torch.zeros(group.n_live, split.n_items, n_out, device=group.device)
        for start in range(0, len(split.rows), EVAL_CHUNK_ROWS):
            rows = split.rows[start:start + EVAL_CHUNK_ROWS]
            x = features[:, torch.as_tensor(rows, device=features.device)].to(group.device).float()
            out = group.forward(x, None)
            if split.pool:
                items = torch.as_tensor(split.row_item[start:start + EVAL_CHUNK_ROWS], device=group.device)
                pooled.index_add_(1, items, out)
            else:
                chunks.append(out.cpu())
    if not split.pool:
        return torch.cat(chunks, dim=1).numpy().astype(np.float64)
    counts = np.bincount(split.row_item, minlength=split.n_items)
    if (counts == 0).any():
        raise ValueError(f"{int((counts == 0).sum())} evaluation items have no feature rows")
    return pooled.cpu().numpy().astype(np.float64) / counts[None, :, None]


def train_group(data: ProbeData, configs: list[ProbeConfig], probe_ids: np.ndarray, seed: int,
                device: str = "cpu", on_epoch: Callable[[int, int], None] | None = None,
                slabs: Slabs | None = None) -> list[ProbeResult]:
    """Train these probes stacked in one group; results come back in the order of ``configs``.

    On a CPU every probe draws its dropout masks from its own seeded stream (``SeededDropout``), so a
    probe's run does not depend on the group it trains in: every mode gives the same results. On a GPU one
    device draw serves all probes (a per-probe stream would cost more than the step itself).
    """
    layers, features = group_features(slabs or Slabs(data.features, data.mixed_layers), configs, device)
    group = ProbeGroup(configs, probe_ids, data, seed, device, layers)
    step = Stepper(group, data, features, seed)
    shuffle = np.random.default_rng(seed)
    for epoch in range(data.schedule.max_epochs):
        if group.n_live == 0:
            break
        loss_sum = torch.zeros(group.n_live, dtype=torch.float64, device=device)
        n_batches = 0
        for positions in epoch_batches(data.train, shuffle):
            loss_sum += step(positions).double()
            n_batches += 1
        metrics = data.evaluator(evaluate_outputs(group, features, data.valid), "valid")
        group.end_epoch(metrics[data.evaluator.monitor], (loss_sum / n_batches).cpu().numpy())
        if on_epoch is not None:
            on_epoch(epoch + 1, group.n_live)
    group.load_best()
    valid = data.evaluator(evaluate_outputs(group, features, data.valid), "valid")
    test = data.evaluator(evaluate_outputs(group, features, data.test), "test", valid)
    results = {}
    for position, config in enumerate(group.configs):
        results[int(group.ids[position])] = ProbeResult(
            config=config, epochs=int(group.epochs[position]), best_epoch=int(group.best_epoch[position]),
            valid_curve=group.valid_curves[position], train_loss=group.loss_curves[position],
            final_lr=float(group.final_lr[position]),
            valid={k: float(v[position]) for k, v in valid.items()},
            test={k: float(v[position]) for k, v in test.items()})
    return [results[int(i)] for i in probe_ids]
