"""Probes stacked on a leading axis and trained together: one seeded start, per-probe Adam learning rates,
ReduceLROnPlateau counters (factor 0.5, relative threshold 1e-4), early-stopping counters and best-validation
weights; finished probes are sliced out of the live set. With a group of one this is a plain
per-configuration loop.

The reference semantics followed: Adam without weight decay; the plateau scheduler and early stopping
stepped once per epoch on the validation monitor (higher is better); early stopping when the monitor has
not strictly improved for ``stop_patience`` epochs; the best state saved on a strict improvement.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from marblekit.probes.types import DROPOUT, HIDDEN_UNITS, ProbeConfig, ProbeData

PLATEAU_FACTOR = 0.5
PLATEAU_THRESHOLD = 1e-4


@dataclass(frozen=True)
class SeededDropout:
    """Dropout keep-masks drawn per (probe, step) from their own seed, so a probe sees the same masks
    whatever group it trains in and every mode gives the same numbers."""
    seed: int

    def __call__(self, probe_ids: np.ndarray, step: int, rows: int) -> Any:
        masks = []
        for probe in probe_ids:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + int(probe) * 100_003 + step)
            masks.append(torch.rand(rows, HIDDEN_UNITS, generator=generator) >= DROPOUT)
        return torch.stack(masks)


def initial_weights(n_features: int, n_outputs: int, n_mixed: int, seed: int) -> dict[str, Any]:
    """The reference probe's start: seed, Linear(D, 512), Linear(512, C), then randn(L) mix logits."""
    torch.manual_seed(seed)
    first, second = nn.Linear(n_features, HIDDEN_UNITS), nn.Linear(HIDDEN_UNITS, n_outputs)
    mix = torch.randn(n_mixed)
    return {"w1": first.weight.detach().T.contiguous(), "b1": first.bias.detach()[None].clone(),
            "w2": second.weight.detach().T.contiguous(), "b2": second.bias.detach()[None].clone(), "mix": mix}


def _mixed_index(feature_layers: np.ndarray, mixed_layers: tuple[int, ...], device: Any) -> slice | Any:
    """Where the weighted sum's layers are among ``feature_layers``: a slice when they lie side by side (a
    view of the batch, as for a transformer's layers 1..L), else an index tensor."""
    positions = [int(np.flatnonzero(feature_layers == layer)[0]) for layer in mixed_layers]
    if positions == list(range(positions[0], positions[0] + len(positions))):
        return slice(positions[0], positions[0] + len(positions))
    return torch.as_tensor(positions, device=device)


class ProbeGroup:
    """Stacked probes with their own Adam state, learning rates, schedulers, stopping and best weights."""

    def __init__(self, configs: list[ProbeConfig], probe_ids: np.ndarray, data: ProbeData, seed: int,
                 device: str, feature_layers: np.ndarray) -> None:
        order = np.argsort([c.layer is None for c in configs], kind="stable")
        self.configs = [configs[i] for i in order]
        self.ids = np.asarray(probe_ids)[order]
        self.device = torch.device(device)
        self.schedule = data.schedule
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        n = len(self.configs)
        self.feature_layers = np.asarray(feature_layers)
        mixes = any(c.layer is None for c in configs)
        self.mixed = _mixed_index(self.feature_layers, data.mixed_layers, self.device) if mixes else slice(0, 0)
        start = initial_weights(data.features.width(self.feature_layers), data.n_outputs, len(data.mixed_layers), seed)
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
        p = self.params
        single = ~self.is_mix
        inputs = []
        if bool(single.any()):
            positions = self.layers[single]  # a group on one layer shares its input: a view, not copies
            inputs.append(x.expand(len(positions), -1, -1) if x.shape[0] == 1 else x[positions])
        if p["mix"].shape[0]:
            weights = torch.softmax(p["mix"], dim=1)
            inputs.append(torch.einsum("pl,lbd->pbd", weights, x[self.mixed]))
        h = torch.relu(torch.baddbmm(p["b1"], inputs[0] if len(inputs) == 1 else torch.cat(inputs), p["w1"]))
        if dropout is not None:
            h = h * dropout / (1.0 - DROPOUT)
        return torch.baddbmm(p["b2"], h, p["w2"])

    def loss(self, logits: Any, targets: Any) -> Any:
        """Per-probe mean loss [P_live]."""
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
        self.params = {k: v.clone() for k, v in self.best.items()}
        self.live = np.arange(len(self.configs))
        self.is_mix = self.is_mix.new_tensor([c.layer is None for c in self.configs])
        self.layers = torch.as_tensor(self._positions(self.configs), device=self.device)
