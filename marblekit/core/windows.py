"""Windowing as MARBLE does it: windows of ``window`` seconds every ``hop`` seconds from the clip start.

Full windows come first; after them one shorter tail window is kept, at its true length, when it holds at
least ``MIN_WINDOW_S`` seconds (MARBLE keeps a last window of >= 1 s and never pads it), or the model's shortest
input where that is longer (MusiCNN needs a whole 3 s patch: :meth:`Windowing.for_model`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

MIN_WINDOW_S = 1.0


@dataclass(frozen=True)
class Windowing:
    window_s: float
    hop_s: float
    min_window_s: float = MIN_WINDOW_S  # the shortest tail window kept

    def for_model(self, min_samples: int, sample_rate: int) -> Windowing:
        """This windowing with tail windows no shorter than what a model accepts (``min_samples``)."""
        return dataclasses.replace(self, min_window_s=max(self.min_window_s, min_samples / sample_rate))

    def __post_init__(self) -> None:
        if not self.window_s >= MIN_WINDOW_S:
            raise ValueError(f"--window must be at least {MIN_WINDOW_S:g} s, got {self.window_s:g}")
        if not self.hop_s > 0:
            raise ValueError(f"--hop must be positive, got {self.hop_s:g}")

    def bounds(self, num_samples: int, sample_rate: int) -> list[tuple[int, int]]:
        """``(start, stop)`` sample indices of every window of a ``num_samples`` clip."""
        window = int(round(self.window_s * sample_rate))
        hop = int(round(self.hop_s * sample_rate))
        minimum = int(np.ceil(self.min_window_s * sample_rate - 1e-9))
        starts = range(0, num_samples - window + 1, hop) if num_samples >= window else range(0)
        result = [(start, start + window) for start in starts]
        tail = result[-1][0] + hop if result else 0
        if num_samples - tail >= minimum and (not result or result[-1][1] < num_samples):
            result.append((tail, num_samples))
        return result
