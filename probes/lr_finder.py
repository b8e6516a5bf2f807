"""The learning-rate range test MARBLE runs for GiantSteps key (``auto_lr_find: true``): PyTorch Lightning
1.9's ``lr_find`` with its defaults, whose suggestion replaces the grid's learning rate.

Lightning's rule, followed step for step: 100 training steps from the probe's initial weights, the rate rising
exponentially from 1e-8 to 1 (step 0 at 1e-8, step i >= 1 at ``1e-8 * 1e8 ** ((i + 1) / 100)``); the loss of
each step smoothed (``avg = 0.98 avg + 0.02 loss``, bias-corrected by ``1 - 0.98 ** (i + 2)``, as the global
step is already i + 1); the test stops after the first step past step 1 whose smoothed loss exceeds 4x the best
so far; the suggestion is the rate at the steepest descent, ``argmin(np.gradient(losses[10:-1])) + 10`` (non-
finite losses dropped first), or none when fewer than two points remain (the configured rate is kept). The
probe then trains from the same initial weights (Lightning restores them) at the suggested rate.

Probes are independent, so every layer choice's test runs stacked in one group and each is cut where its own
test would have stopped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from marblekit.probes.slabs import Slabs
from marblekit.probes.stacked import ProbeGroup
from marblekit.probes.training import Stepper, epoch_batches, group_features
from marblekit.probes.types import ProbeConfig, ProbeData

MIN_LR = 1e-8
MAX_LR = 1.0
STEPS = 100
BETA = 0.98
DIVERGENCE = 4.0
SKIP_BEGIN, SKIP_END = 10, 1
#: the reference config's rate, kept when the test gives no suggestion
FALLBACK_LR = 1e-3


@dataclass(frozen=True)
class RangeTest:
    """One probe's test: the rate and smoothed loss of each step it ran, and the rate it suggests."""

    rates: list[float]
    losses: list[float]
    suggestion: float | None

    @property
    def lr(self) -> float:
        return FALLBACK_LR if self.suggestion is None else self.suggestion

    def to_json(self) -> dict[str, Any]:
        return {"rates": self.rates, "losses": self.losses, "suggestion": self.suggestion, "lr": self.lr}


def step_rates(steps: int = STEPS, low: float = MIN_LR, high: float = MAX_LR) -> np.ndarray:
    """The rate of each step (Lightning's ``_ExponentialLR``: the first step at ``low``, then one step ahead)."""
    exponent = (np.arange(steps) + 1) / steps
    rates = low * (high / low) ** exponent
    rates[0] = low
    return rates


def smoothed_losses(losses: np.ndarray) -> list[float]:
    """The smoothed losses Lightning records from raw step losses, up to and including the step that stops it."""
    average, best, out = 0.0, 0.0, []
    for i, loss in enumerate(losses):
        average = BETA * average + (1 - BETA) * float(loss)
        smoothed = average / (1 - BETA ** (i + 2))
        diverged = i + 1 > 1 and smoothed > DIVERGENCE * best
        if smoothed < best or i == 0:
            best = smoothed
        out.append(smoothed)
        if diverged:
            break
    return out


def suggestion(rates: list[float], losses: list[float]) -> float | None:
    """The rate of steepest descent of the smoothed loss, skipping the first 10 and the last point."""
    kept = np.asarray(losses[SKIP_BEGIN:-SKIP_END], np.float64)
    kept = kept[np.isfinite(kept)]
    if len(kept) < 2:
        return None
    return float(rates[int(np.argmin(np.gradient(kept))) + SKIP_BEGIN])


def range_tests(data: ProbeData, configs: list[ProbeConfig], seed: int, device: str = "cpu",
                slabs: Slabs | None = None) -> list[RangeTest]:
    """Every probe's range test, stacked in one group (``configs`` of one width); in ``configs`` order."""
    layers, features = group_features(slabs or Slabs(data.features, data.mixed_layers), configs, device)
    ids = np.arange(len(configs))
    group = ProbeGroup(configs, ids, data, seed, device, layers)
    step = Stepper(group, data, features, seed)
    shuffle = np.random.default_rng(seed)
    rates = step_rates()
    raw: list[np.ndarray] = []
    while len(raw) < STEPS:
        for positions in epoch_batches(data.train, shuffle):
            if len(raw) == STEPS:
                break
            group.lr[:] = float(rates[len(raw)])
            raw.append(step(positions).cpu().numpy().astype(np.float64))
    by_id = dict(zip(group.ids.tolist(), np.stack(raw, axis=1)))
    tests = []
    for probe in ids:
        losses = smoothed_losses(by_id[int(probe)])
        ran = rates[:len(losses)].tolist()
        tests.append(RangeTest(ran, losses, suggestion(ran, losses)))
    return tests
