"""The Triton transport: ``serving.client.ModelClient`` with retries, only the outputs the store needs.

Concurrency is bounded by the caller (``max_in_flight`` threads share one channel; blocking ``infer`` calls
release the GIL inside gRPC). The client retries what a busy or restarting server answers (UNAVAILABLE,
DEADLINE_EXCEEDED) with capped exponential backoff and jitter; when retries run out the job stops with a
ConnectionError (nothing written is lost: finished blocks stay done). Anything else (INVALID_ARGUMENT, a
model error) fails only the request it came from.
"""

from __future__ import annotations

import numpy as np

from marblekit.serving.client import RETRYABLE, ModelClient, RetryPolicy, ServerUnavailable, ServingError

from .engine import InferenceError


class TritonEngine:
    """A model on a Triton server at ``url`` (``host:port`` of its gRPC endpoint)."""

    def __init__(self, url: str, name: str, max_in_flight: int = 4, deadline_s: float = 120.0,
                 attempts: int = 6, startup_timeout_s: float = 60.0):
        self.url, self.name = url, name
        self.max_in_flight = max_in_flight
        self.client = ModelClient(url, name, deadline_s, RetryPolicy(attempts))
        try:
            self.client.wait_ready(startup_timeout_s)
            self.info = self.client.model_metadata()
        except ServerUnavailable as err:
            self.client.close()
            raise ConnectionError(f"Triton server {url} is not ready: {err}") from None

    def infer(self, waveforms: np.ndarray, outputs: tuple[str, ...]) -> dict[str, np.ndarray]:
        try:
            return self.client.infer(waveforms, outputs)
        except RETRYABLE as err:
            raise ConnectionError(str(err)) from None
        except ServingError as err:
            raise InferenceError(f"Triton rejected a {list(waveforms.shape)} request: {err}") from None

    def close(self) -> None:
        self.client.close()
