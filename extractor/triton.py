"""The Triton transport: ``serving.client.ModelClient`` with a retry budget, only the outputs the store needs.

Concurrency is bounded by the caller (``max_in_flight`` threads share one channel; blocking ``infer`` calls
release the GIL inside gRPC). What a busy or restarting server answers (UNAVAILABLE, DEADLINE_EXCEEDED) is
retried for ``retry_timeout_s`` seconds, the same budget the start waits for the model, with ``notify``
saying what it waits for; past it the job stops with ServerUnavailable or DeadlineExceeded (nothing written is
lost: finished blocks stay done). Anything else (INVALID_ARGUMENT, a model error) fails only the request it
came from.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from marblekit.core.retry import RetryPolicy
from marblekit.serving.client import RETRYABLE, ModelClient, ServingError

from .engine import InferenceError


class TritonEngine:
    """A model on a Triton server at ``url`` (``host:port`` of its gRPC endpoint)."""

    def __init__(self, url: str, name: str, max_in_flight: int = 4, deadline_s: float = 120.0,
                 retry_timeout_s: float = 120.0, notify: Callable[[str], None] | None = None):
        self.url, self.name = url, name
        self.max_in_flight = max_in_flight
        self.client = ModelClient(url, name, deadline_s, RetryPolicy(retry_timeout_s), notify)
        try:
            self.client.wait_ready(retry_timeout_s)
            self.info = self.client.model_metadata()
        except ServingError:
            self.client.close()
            raise

    def infer(self, waveforms: np.ndarray, outputs: tuple[str, ...]) -> dict[str, np.ndarray]:
        try:
            return self.client.infer(waveforms, outputs)
        except RETRYABLE:
            raise
        except ServingError as err:
            raise InferenceError(f"a {list(waveforms.shape)} request failed: {err}") from None

    def close(self) -> None:
        self.client.close()
