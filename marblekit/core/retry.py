"""One retry policy for every client of a marblekit service (Triton, the feature service): what a busy or
restarting server answers is retried with capped exponential backoff and jitter, for up to a time budget."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    """Retry for up to ``timeout_s`` seconds after the first failure (0: never), waiting ``first_delay_s``
    doubling up to ``max_delay_s``, each wait jittered to 50-100 % so that clients that lost the server
    together do not come back together."""

    timeout_s: float = 0.0
    first_delay_s: float = 0.5
    max_delay_s: float = 8.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1-based)."""
        return min(self.first_delay_s * 2 ** (attempt - 1), self.max_delay_s) * random.uniform(0.5, 1.0)
