"""One retry policy for every client of a marblekit service (Triton, the feature service): what a busy or
restarting server answers is retried with capped exponential backoff and jitter, for up to a time budget."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

#: gRPC channel options that reconnect within about a second of a server coming back: gRPC's default backoff
#: (1 s, x1.6 per failed connection, up to 120 s) kept a channel answering "Connection refused" for many
#: seconds after a restarted server was listening again
RECONNECT_OPTIONS = (("grpc.initial_reconnect_backoff_ms", 250), ("grpc.min_reconnect_backoff_ms", 250),
                     ("grpc.max_reconnect_backoff_ms", 1000))


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

    def call(self, once: Callable[[], T], retryable: Callable[[Exception], bool],
             notify: Callable[[str], None] | None = None, subject: str = "the server") -> T:
        """``once()``, again after each failure ``retryable`` accepts, until it succeeds or the next wait would
        overspend the budget; then the last error propagates with a note of how long it was retried.
        ``notify`` hears of every wait and of the recovery (a progress bar says it is waiting, not stuck)."""
        first_failure, attempt = None, 1
        while True:
            try:
                answer = once()
            except Exception as error:
                if not retryable(error):
                    raise
                now = time.monotonic()
                first_failure = now if first_failure is None else first_failure
                waited, delay = now - first_failure, self.delay(attempt)
                if waited + delay > self.timeout_s:
                    if attempt > 1:
                        error.add_note(f"gave up after {attempt} failed attempts in {waited:.0f} s "
                                       f"(retry budget {self.timeout_s:g} s)")
                    raise
                if notify is not None:
                    notify(f"{error}; waiting {delay:.1f} s before attempt {attempt + 1} "
                           f"({waited:.0f} of {self.timeout_s:g} s spent)")
                time.sleep(delay)
                attempt += 1
                continue
            if first_failure is not None and notify is not None:
                notify(f"{subject} answered again after {time.monotonic() - first_failure:.0f} s ({attempt} attempts)")
            return answer


def describe(error: BaseException) -> str:
    """An error's message with its notes (what a retry loop or a caller added), on one line."""
    return "; ".join([str(error), *getattr(error, "__notes__", ())])
