"""The MARBLE constrained grid trained in one job: every (layer choice, learning rate) probe at once.

A probe is Linear(D, 512) -> ReLU -> Dropout(0.2) -> Linear(512, C) on one hidden state, or on the
softmax-weighted sum of hidden states 1..L (mix logits drawn with ``randn`` after the two Linear layers).
Probes of a group are stacked on a leading axis and trained together; each keeps its own Adam learning
rate, ReduceLROnPlateau counter (factor 0.5, relative threshold 1e-4), early-stopping counter and
best-validation weights, and finished probes are sliced out of the live set. With a group of one this is a
plain per-configuration loop, so every mode runs this same code:

* ``vectorised``: one group holding every probe (pays on a GPU);
* ``per-layer``: one group per layer choice (its learning rates stacked: they share the input batch and
  the per-step overhead, as long as a batch's activations stay small) spread over worker processes with
  one thread each, the features shared through a memory-mapped file; the weighted-sum group, the slowest,
  is handed out first (pays on a small CPU, where all probes stacked fall out of cache: ``marblekit bench
  probe`` measures it against the others);
* ``per-probe``: groups of one, spread over the workers the same way.

Features are layer-major ``[L+1, rows, D]`` fp16 (``marblekit.probes.matrix``). A group copies the layers it
uses into RAM when they fit the memory budget; otherwise it reads batches straight from the memory-mapped
matrix, so a store larger than RAM trains with the same results, only slower.

On a CPU each probe's dropout masks come from its own seeded stream, so a probe's run is the same in
either mode. The reference semantics followed: Adam without weight decay; the plateau scheduler and early stopping
stepped once per epoch on the validation monitor (higher is better); early stopping when the monitor has
not strictly improved for ``stop_patience`` epochs; the best state saved on a strict improvement; batches
of 64 *items* whose windows (or frames) are flattened; one shuffled item order per epoch drawn from the
seed, shared by every probe (every reference run uses the same seed, so they share it too).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from marblekit.probes.parallel import fork_context

LEARNING_RATES = (5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 1e-2)
HIDDEN = 512
DROPOUT = 0.2
BATCH_ITEMS = 64
PLATEAU_FACTOR = 0.5
PLATEAU_THRESHOLD = 1e-4
EVAL_CHUNK_ROWS = 4096
MODES = ("vectorised", "per-layer", "per-probe")
JOBS_PER_WORKER = 6  # per-layer mode splits layer groups below this many jobs per worker
STACK_BYTES = 8 << 20  # per-layer mode stacks probes while a batch's hidden activations fit in this
SEED = 1234  # every MARBLE reference run uses this seed


@dataclass(frozen=True)
class ProbeConfig:
    """One grid point. ``layer`` None means the softmax-weighted sum over layers 1..L."""

    layer: int | None
    lr: float

    @property
    def name(self) -> str:
        return f"{'all' if self.layer is None else f'layer {self.layer}'}, lr {self.lr:g}"


def probe_grid(n_hidden_states: int, learning_rates: tuple[float, ...] = LEARNING_RATES) -> list[ProbeConfig]:
    """Layers 0..L then the weighted sum, each with every learning rate (ascending).

    This order is also the tie-break: among equal validation monitors the earliest probe wins, i.e. the
    lowest layer, then the smallest learning rate, the weighted sum last.
    """
    layers: list[int | None] = [*range(n_hidden_states), None]
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
    ``targets`` has one entry per row (the item's label repeated per window, or a per-frame label)."""

    rows: np.ndarray
    offsets: np.ndarray
    targets: np.ndarray

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
    """Everything a grid needs: layer-major fp16 features [L+1, rows, D] (in RAM or a read-only memory
    map) and the three splits, whose rows index the features' second axis."""

    features: np.ndarray
    train: TrainSet
    valid: EvalSet
    test: EvalSet
    n_outputs: int
    schedule: Schedule
    evaluator: Evaluator

    @property
    def n_hidden_states(self) -> int:
        return self.features.shape[0]


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


@dataclass(frozen=True)
class SeededDropout:
    """Dropout keep-masks drawn per (probe, step) from their own seed, so a probe sees the same masks
    whatever group it trains in and every mode gives the same numbers."""

    seed: int

    def __call__(self, probe_ids: np.ndarray, step: int, rows: int) -> Any:
        import torch

        masks = []
        for probe in probe_ids:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + int(probe) * 100_003 + step)
            masks.append(torch.rand(rows, HIDDEN, generator=generator) >= DROPOUT)
        return torch.stack(masks)


def initial_weights(n_features: int, n_outputs: int, n_mixed: int, seed: int) -> dict[str, Any]:
    """The reference probe's start: seed, Linear(D, 512), Linear(512, C), then randn(L) mix logits."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    first, second = nn.Linear(n_features, HIDDEN), nn.Linear(HIDDEN, n_outputs)
    mix = torch.randn(n_mixed)
    return {"w1": first.weight.detach().T.contiguous(), "b1": first.bias.detach()[None].clone(),
            "w2": second.weight.detach().T.contiguous(), "b2": second.bias.detach()[None].clone(), "mix": mix}


class ProbeGroup:
    """Stacked probes with their own Adam state, learning rates, schedulers, stopping and best weights."""

    def __init__(self, configs: list[ProbeConfig], probe_ids: np.ndarray, data: ProbeData, seed: int,
                 device: str, feature_layers: np.ndarray) -> None:
        import torch

        order = np.argsort([c.layer is None for c in configs], kind="stable")
        self.configs = [configs[i] for i in order]
        self.ids = np.asarray(probe_ids)[order]
        self.device = torch.device(device)
        self.schedule = data.schedule
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        n = len(self.configs)
        n_mixed = data.n_hidden_states - 1
        start = initial_weights(data.features.shape[2], data.n_outputs, n_mixed, seed)
        self.feature_layers = feature_layers
        self.params = {k: start[k][None].repeat(n, *[1] * start[k].dim()).to(self.device).requires_grad_()
                       for k in ("w1", "b1", "w2", "b2")}
        self.is_mix = torch.tensor([c.layer is None for c in self.configs], device=self.device)
        self.params["mix"] = start["mix"][None].repeat(int(self.is_mix.sum()), 1).to(self.device).requires_grad_()
        self.layers = torch.as_tensor(self._positions(self.configs), device=self.device)
        self.moments = {k: (torch.zeros_like(v), torch.zeros_like(v)) for k, v in self.params.items()}
        self.step_count = 0
        self.lr = torch.tensor([c.lr for c in self.configs], dtype=torch.float64)
        # per-probe control state, indexed by live position
        self.plateau_best = np.full(n, -np.inf)
        self.plateau_bad = np.zeros(n, dtype=int)
        self.stop_best = np.full(n, -np.inf)
        self.stop_wait = np.zeros(n, dtype=int)
        self.live = np.arange(n)  # position in self.configs of each live probe
        self.best = {k: v.detach().clone() for k, v in self.params.items() if k != "mix"}
        self.best["mix"] = self.params["mix"].detach().clone()
        self.best_monitor = np.full(n, -np.inf)
        self.best_epoch = np.zeros(n, dtype=int)
        self.epochs = np.zeros(n, dtype=int)
        self.valid_curves: list[list[float]] = [[] for _ in range(n)]
        self.loss_curves: list[list[float]] = [[] for _ in range(n)]
        self.final_lr = self.lr.numpy().copy()

    def _positions(self, configs: list[ProbeConfig]) -> np.ndarray:
        """Index of each probe's layer among ``feature_layers`` (0 for weighted-sum probes, unused)."""
        return np.searchsorted(self.feature_layers, [c.layer if c.layer is not None else 0 for c in configs])

    @property
    def n_live(self) -> int:
        return len(self.live)

    def _mixed_positions(self) -> Any:
        """Row of each live weighted-sum probe in the full-size ``best['mix']`` buffer."""
        n_single = sum(c.layer is not None for c in self.configs)
        return self.live[self.live >= n_single] - n_single

    def forward(self, x: Any, dropout: Any | None) -> Any:
        """x [feature_layers, B, D] fp32 -> logits [P_live, B, C]; ``dropout``: keep-mask [P_live, B, 512] or None."""
        import torch

        p = self.params
        single = ~self.is_mix
        inputs = []
        if bool(single.any()):
            positions = self.layers[single]  # a group on one layer shares its input: a view, not copies
            inputs.append(x.expand(len(positions), -1, -1) if x.shape[0] == 1 else x[positions])
        if p["mix"].shape[0]:
            weights = torch.softmax(p["mix"], dim=1)
            inputs.append(torch.einsum("pl,lbd->pbd", weights, x[1:]))
        h = torch.relu(torch.baddbmm(p["b1"], inputs[0] if len(inputs) == 1 else torch.cat(inputs), p["w1"]))
        if dropout is not None:
            h = h * dropout / (1.0 - DROPOUT)
        return torch.baddbmm(p["b2"], h, p["w2"])

    def loss(self, logits: Any, targets: Any) -> Any:
        """Per-probe mean loss [P_live]."""
        import torch.nn.functional as F

        n, b, c = logits.shape
        kind = self.schedule.loss
        if kind == "ce":
            stacked = targets.repeat(n) if n > 1 else targets
            per_row = F.cross_entropy(logits.reshape(n * b, c), stacked, reduction="none").view(n, b)
            return per_row.mean(1)
        expanded = targets[None].expand(n, -1, -1)
        if kind == "bce":
            return F.binary_cross_entropy_with_logits(logits, expanded, reduction="none").mean((1, 2))
        if kind == "mse":
            return F.mse_loss(logits, expanded, reduction="none").mean((1, 2))
        raise ValueError(f"unknown loss {kind!r}; expected ce, bce or mse")

    def adam_step(self) -> None:
        """torch's fused Adam kernel (betas 0.9/0.999, eps 1e-8, no weight decay) on per-probe views, one
        call per distinct learning rate (on the whole stacked tensors when every live probe shares it): each
        probe gets exactly the update ``Adam(fused=True)`` makes."""
        import torch

        self.step_count += 1
        step = torch.tensor(float(self.step_count), device=self.device)
        rates = self.lr[self.live].numpy()
        mixed = np.array([self.configs[i].layer is None for i in self.live])
        mix_row = np.cumsum(mixed) - 1
        with torch.no_grad():
            for rate in np.unique(rates):
                members = np.flatnonzero(rates == rate)
                views: tuple[list, list, list, list] = ([], [], [], [])
                for name, param in self.params.items():
                    if param.grad is None:
                        continue
                    rows = mix_row[members[mixed[members]]] if name == "mix" else members
                    for bucket, tensor in zip(views, (param, param.grad, *self.moments[name])):
                        bucket.extend([tensor] if len(members) == len(rates) else [tensor[row] for row in rows])
                if views[0]:
                    torch._fused_adam_(*views, [], [step] * len(views[0]), lr=float(rate), beta1=0.9, beta2=0.999,
                                       weight_decay=0.0, eps=1e-8, amsgrad=False, maximize=False)
        for param in self.params.values():
            param.grad = None

    def end_epoch(self, monitor: np.ndarray, train_loss: np.ndarray) -> None:
        """Per-probe checkpoint, plateau scheduler and early stopping on this epoch's monitor [P_live]."""
        import torch

        live = self.live
        self.epochs[live] += 1
        for i, position in enumerate(live):
            self.valid_curves[position].append(float(monitor[i]))
            self.loss_curves[position].append(float(train_loss[i]))
        improved = monitor > self.best_monitor[live]
        if improved.any():
            self.best_monitor[live[improved]] = monitor[improved]
            self.best_epoch[live[improved]] = self.epochs[live[improved]]
            with torch.no_grad():
                index = torch.as_tensor(live[improved], device=self.device)
                for k in ("w1", "b1", "w2", "b2"):
                    self.best[k][index] = self.params[k][torch.as_tensor(np.flatnonzero(improved), device=self.device)]
                mixed = self.is_mix.cpu().numpy()
                if mixed.any():
                    mix_improved = improved[mixed]
                    if mix_improved.any():
                        rows = torch.as_tensor(self._mixed_positions()[mix_improved], device=self.device)
                        self.best["mix"][rows] = self.params["mix"][torch.as_tensor(np.flatnonzero(mix_improved),
                                                                                    device=self.device)]
        # ReduceLROnPlateau(mode='max', threshold_mode='rel', factor 0.5, eps 1e-8)
        better = monitor > self.plateau_best[live] * (1 + PLATEAU_THRESHOLD)
        self.plateau_best[live] = np.where(better, monitor, self.plateau_best[live])
        self.plateau_bad[live] = np.where(better, 0, self.plateau_bad[live] + 1)
        reduce = self.plateau_bad[live] > self.schedule.plateau_patience
        for position in live[reduce]:
            old = float(self.lr[position])
            new = old * PLATEAU_FACTOR
            if old - new > 1e-8:
                self.lr[position] = new
            self.plateau_bad[position] = 0
        self.final_lr = self.lr.numpy().copy()
        # EarlyStopping(mode='max', min_delta=0): stop after `patience` epochs without a strict improvement
        stop_better = monitor > self.stop_best[live]
        self.stop_best[live] = np.where(stop_better, monitor, self.stop_best[live])
        self.stop_wait[live] = np.where(stop_better, 0, self.stop_wait[live] + 1)
        keep = self.stop_wait[live] < self.schedule.stop_patience
        if not keep.all():
            self._compact(keep)

    def _compact(self, keep: np.ndarray) -> None:
        """Slice every live tensor down to the probes that go on."""
        import torch

        index = torch.as_tensor(np.flatnonzero(keep), device=self.device)
        mix_keep = keep[self.is_mix.cpu().numpy()]
        mix_index = torch.as_tensor(np.flatnonzero(mix_keep), device=self.device)
        with torch.no_grad():
            for name in list(self.params):
                rows = mix_index if name == "mix" else index
                self.params[name] = self.params[name][rows].detach().clone().requires_grad_()
                self.moments[name] = tuple(m[rows].clone() for m in self.moments[name])
        self.layers = self.layers[index]
        self.is_mix = self.is_mix[index]
        self.live = self.live[keep]

    def load_best(self) -> None:
        """Make every probe live again with its best-validation weights (for the final evaluation)."""
        import torch

        self.params = {k: v.clone() for k, v in self.best.items()}
        self.live = np.arange(len(self.configs))
        self.is_mix = self.is_mix.new_tensor([c.layer is None for c in self.configs])
        self.layers = torch.as_tensor(self._positions(self.configs), device=self.device)


def _batch_positions(train: TrainSet, items: np.ndarray) -> np.ndarray:
    """Positions in ``train.rows`` / ``train.targets`` of these items' rows, in item order, windows
    flattened (the reference's collate)."""
    starts, ends = train.offsets[items], train.offsets[items + 1]
    lengths = ends - starts
    within = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return np.repeat(starts, lengths) + within


def evaluate_outputs(group: ProbeGroup, features: Any, split: EvalSet) -> np.ndarray:
    """Eval-mode outputs of every live probe: [P, n_items, C] pooled per item, or [P, rows, C]."""
    import torch

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


class Slabs:
    """The features a group trains on, as a torch tensor [layers, rows, D].

    A group's layers are copied out of the (possibly memory-mapped) matrix when they fit ``budget`` bytes,
    as float32 when that fits too (no conversion per batch), and the last copy is kept for the next group
    with the same layers (a worker's next learning rate).
    When they do not fit, the group gets every layer as the matrix itself (memory-mapped, or already in
    RAM) and gathers its batches from it, so memory stays bounded whatever the store's size."""

    def __init__(self, features: np.ndarray, budget: int | None = None) -> None:
        self.features = features
        self.budget = budget
        self.kept: tuple[tuple[int, ...], Any] | None = None

    def layers_for(self, configs: list[ProbeConfig]) -> np.ndarray:
        """The layers a group of ``configs`` reads: its own, or every layer when it mixes them or when its
        own do not fit the budget (then the matrix serves every layer without a copy)."""
        every = np.arange(self.features.shape[0])
        if any(c.layer is None for c in configs):
            return every
        own = np.unique([c.layer for c in configs])
        return own if self._fits(len(own)) else every

    def _fits(self, n_layers: int) -> bool:
        return self.budget is None or n_layers * self.features[0].nbytes <= self.budget

    def get(self, layers: np.ndarray) -> Any:
        import torch

        key = tuple(int(layer) for layer in layers)
        if self.kept is not None and self.kept[0] == key:
            return self.kept[1]
        self.kept = None
        with warnings.catch_warnings():  # a read-only memory map is only ever read
            warnings.simplefilter("ignore", UserWarning)
            if len(key) == self.features.shape[0] and not self._fits(len(key)):
                return torch.from_numpy(self.features)
            selected = self.features if len(key) == self.features.shape[0] else self.features[layers]
            dtype = np.float32 if self._fits(2 * len(key)) else np.float16  # float32 takes twice the room
            tensor = torch.from_numpy(np.ascontiguousarray(selected, dtype))
        self.kept = (key, tensor)
        return tensor


def train_group(data: ProbeData, configs: list[ProbeConfig], probe_ids: np.ndarray, seed: int,
                device: str = "cpu", on_epoch: Callable[[int, int], None] | None = None,
                slabs: Slabs | None = None) -> list[ProbeResult]:
    """Train these probes stacked in one group; results come back in the order of ``configs``.

    On a CPU every probe draws its dropout masks from its own seeded stream (``SeededDropout``), so a
    probe's run does not depend on the group it trains in: every mode gives the same results. On a GPU one
    device draw serves all probes (a per-probe stream would cost more than the step itself).
    """
    import torch

    slabs = slabs or Slabs(data.features)
    layers = slabs.layers_for(configs)
    group = ProbeGroup(configs, probe_ids, data, seed, device, layers)
    features = slabs.get(layers)
    if device != "cpu":
        features = features.to(device)
    dropout_masks = SeededDropout(seed) if group.device.type == "cpu" else None
    targets = torch.from_numpy(data.train.targets).to(device)
    shuffle = np.random.default_rng(seed)
    step = 0
    for epoch in range(data.schedule.max_epochs):
        if group.n_live == 0:
            break
        loss_sum = torch.zeros(group.n_live, dtype=torch.float64, device=device)
        n_batches = 0
        order = shuffle.permutation(data.train.n_items)
        for start in range(0, data.train.n_items, BATCH_ITEMS):
            positions = _batch_positions(data.train, order[start:start + BATCH_ITEMS])
            rows = data.train.rows[positions]
            x = features[:, torch.as_tensor(rows, device=features.device)].float()
            if dropout_masks is not None:
                keep = dropout_masks(group.ids[group.live], step, len(rows)).to(device)
            else:
                keep = torch.rand(group.n_live, len(rows), HIDDEN, generator=group.generator,
                                  device=device) >= DROPOUT
            per_probe = group.loss(group.forward(x, keep), targets[torch.as_tensor(positions, device=device)])
            per_probe.sum().backward()
            group.adam_step()
            loss_sum += per_probe.detach().double()
            n_batches += 1
            step += 1
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


_WORKER: dict[str, Any] = {}


def _worker_init(features_path: str, payload: ProbeData, seed: int, budget: int | None) -> None:
    """One thread per worker; the features are a shared read-only memory map, the rest is sent once."""
    import torch

    torch.set_num_threads(1)
    features = np.load(features_path, mmap_mode="r")
    _WORKER.update(data=dataclasses.replace(payload, features=features), seed=seed,
                   slabs=Slabs(features, budget))


def _worker_train(job: list[tuple[int, ProbeConfig]]) -> list[ProbeResult]:
    ids, configs = zip(*job)
    return train_group(_WORKER["data"], list(configs), np.array(ids), _WORKER["seed"], slabs=_WORKER["slabs"])


def default_mode() -> str:
    """Vectorised on a GPU, one layer choice per worker process on a CPU (measured: `marblekit bench probe`)."""
    import torch

    return "vectorised" if torch.cuda.is_available() else "per-layer"


def run_grid(data: ProbeData, configs: list[ProbeConfig], seed: int, mode: str, workers: int = 0,
             device: str | None = None, progress: bool = True, memory_bytes: int | None = None
             ) -> list[ProbeResult]:
    """Train every probe of ``configs`` in the given mode; results in ``configs`` order. ``memory_bytes``
    bounds the features copied into RAM (in the worker modes, shared among the workers)."""
    import torch
    from tqdm import tqdm

    if mode not in MODES:
        raise ValueError(f"--mode must be one of {', '.join(MODES)}, got {mode!r}")
    ids = np.arange(len(configs))
    if mode == "vectorised":
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        with tqdm(total=data.schedule.max_epochs, desc="grid epochs", disable=not progress) as bar:
            def on_epoch(epoch: int, live: int) -> None:
                bar.update(1)
                bar.set_postfix(live=live)
            # a matrix in RAM already holds its share of the budget: copies may use only the rest
            in_ram = 0 if isinstance(data.features, np.memmap) else data.features.nbytes
            budget = None if memory_bytes is None else max(memory_bytes - in_ram, 0)
            return train_group(data, configs, ids, seed, device, on_epoch, Slabs(data.features, budget))
    workers = workers or os.cpu_count() or 1
    groups = _worker_groups(configs, mode, workers, BATCH_ITEMS * len(data.train.rows) / data.train.n_items)
    workers = min(workers, len(groups))
    per_worker = None if memory_bytes is None else memory_bytes // workers
    payload = dataclasses.replace(data, features=np.empty((0, 0, 0), np.float16))
    with contextlib.ExitStack() as stack:
        path = getattr(data.features, "filename", None)
        if path is None:  # an in-RAM matrix: share it through a temporary file
            path = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="marblekit-probe-"))) / "features.npy"
            np.save(path, data.features)
        pool = stack.enter_context(fork_context().Pool(workers, initializer=_worker_init,
                                                        initargs=(str(path), payload, seed, per_worker)))
        jobs = [[(int(i), configs[i]) for i in group] for group in groups]
        results = {}
        with tqdm(total=len(configs), desc="probes", disable=not progress) as bar:
            for group, trained in zip(groups, pool.imap(_worker_train, jobs)):
                results.update(zip(group, trained))
                bar.update(len(group))
    return [results[int(i)] for i in ids]


def _worker_groups(configs: list[ProbeConfig], mode: str, workers: int, batch_rows: float) -> list[list[int]]:
    """Probe indices of each worker job, the weighted-sum jobs (the slowest) first.

    per-probe: one probe each. per-layer: one layer choice's learning rates, stacked only as far as their
    hidden activations of a batch stay within STACK_BYTES (stacking pays by sharing per-step overhead
    while the activations stay in cache; frame-level batches of thousands of rows are faster one probe at a
    time), and split further when that leaves fewer than JOBS_PER_WORKER jobs per worker (a backbone with
    few hidden states: a few long jobs leave workers idle at the end)."""
    if mode == "per-probe":
        groups = [[i] for i in range(len(configs))]
    else:
        by_layer: dict[int | None, list[int]] = {}
        for i, config in enumerate(configs):
            by_layer.setdefault(config.layer, []).append(i)
        stack = max(1, int(STACK_BYTES // (batch_rows * HIDDEN * 4)))
        parts = max(-(-JOBS_PER_WORKER * workers // len(by_layer)), -(-max(map(len, by_layer.values())) // stack))
        groups = [part.tolist() for group in by_layer.values()
                  for part in np.array_split(group, min(parts, len(group)))]
    return sorted(groups, key=lambda group: configs[group[0]].layer is not None)


def select_winner(results: list[ProbeResult], monitor: str) -> int:
    """Index of the probe with the best validation monitor; ties go to the earliest in grid order."""
    values = np.array([r.valid[monitor] for r in results])
    if np.isnan(values).all():
        raise ValueError(f"no probe has a validation {monitor}")
    return int(np.nanargmax(values))
