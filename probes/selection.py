"""Choosing the winner of a grid on validation."""

from __future__ import annotations

import numpy as np

from marblekit.probes.types import ProbeResult


def select_winner(results: list[ProbeResult], monitor: str) -> int:
    """Index of the probe with the best validation monitor; ties go to the earliest in grid order."""
    values = np.array([r.valid[monitor] for r in results])
    if np.isnan(values).all():
        raise ValueError(f"no probe has a validation {monitor}")
    return int(np.nanargmax(values))
