"""Windowing as MARBLE does it: windows of ``window`` seconds every ``hop`` seconds from the clip start.

Full windows come first; after them one shorter tail window is kept, at its true length, when it holds at
least ``MIN_WINDOW_S`` seconds (MARBLE keeps a last window of >= 1 s and never pads it).
"""

from __future__ import annotations

from dataclasses import dataclass

MIN_WINDOW_S = 1.0


@dataclass(frozen=True)
class Windowing:
    window_s: float
    hop_s: float

    def __post_init__(self) -> None:
        if not self.window_s >= MIN_WINDOW_S:
            raise ValueError(f"--window must be at least {MIN_WINDOW_S:g} s, got {self.window_s:g}")
        if not self.hop_s > 0:
            raise ValueError(f"--hop must be positive, got {self.hop_s:g}")

    def bounds(self, num_samples: int, sample_rate: int) -> list[tuple[int, int]]:
        """``(start, stop)`` sample indices of every window of a ``num_samples`` clip."""
        window = int(round(self.window_s * sample_rate))
        hop = int(round(self.hop_s * sample_rate))
        minimum = int(round(MIN_WINDOW_S * sample_rate))
        starts = range(0, num_samples - window + 1, hop) if num_samples >= window else range(0)
        result = [(start, start + window) for start in starts]
        tail = result[-1][0] + hop if result else 0
        if num_samples - tail >= minimum and (not result or result[-1][1] < num_samples):
            result.append((tail, num_samples))
        return result
