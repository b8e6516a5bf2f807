"""The Triton transport: tritonclient gRPC with deadlines and retries, only the outputs the store needs.

Concurrency is bounded by the caller (``max_in_flight`` threads share one channel; blocking ``infer`` calls
release the GIL inside gRPC). Retried with capped exponential backoff and jitter: UNAVAILABLE (queue full,
connection lost) and DEADLINE_EXCEEDED, except the UNAVAILABLE that means a restricted protocol. Anything
else (INVALID_ARGUMENT, a model error) fails only the request it came from.
"""

from __future__ import annotations

import logging
import random
import time

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from .engine import INPUT, InferenceError, ModelInfo

log = logging.getLogger(__name__)

RETRYABLE = ("StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED")


def retryable(error: InferenceServerException) -> bool:
    return error.status() in RETRYABLE and "protocol is restricted" not in error.message()


class TritonEngine:
    """A model on a Triton server at ``url`` (``host:port`` of its gRPC endpoint)."""

    def __init__(self, url: str, name: str, max_in_flight: int = 4, deadline_s: float = 120.0,
                 attempts: int = 6, startup_timeout_s: float = 60.0):
        self.url, self.name = url, name
        self.max_in_flight = max_in_flight
        self.deadline_s = deadline_s
        self.attempts = attempts
        self.client = grpcclient.InferenceServerClient(url=url)
        self._wait_ready(startup_timeout_s)
        self.info = ModelInfo.from_config(self.client.get_model_config(name).config)

    def _wait_ready(self, timeout_s: float) -> None:
        give_up = time.monotonic() + timeout_s
        delay = 0.2
        while True:
            try:
                if self.client.is_server_ready() and self.client.is_model_ready(self.name):
                    return
                problem = f"model {self.name!r} is not loaded"
            except InferenceServerException as err:
                problem = err.message()
            if time.monotonic() > give_up:
                raise ValueError(f"Triton server {self.url} not ready after {timeout_s:g} s: {problem}")
            time.sleep(delay)
            delay = min(delay * 2, 2.0)

    def infer(self, waveforms: np.ndarray, outputs: tuple[str, ...]) -> dict[str, np.ndarray]:
        request = grpcclient.InferInput(INPUT, list(waveforms.shape), np_to_triton_dtype(waveforms.dtype))
        request.set_data_from_numpy(waveforms)
        wanted = [grpcclient.InferRequestedOutput(name) for name in outputs]
        attempt = 1
        while True:
            try:
                result = self.client.infer(self.name, [request], outputs=wanted, client_timeout=self.deadline_s)
                return {name: result.as_numpy(name) for name in outputs}
            except InferenceServerException as err:
                if not retryable(err):
                    raise InferenceError(f"Triton rejected a {list(waveforms.shape)} request: {err.message()}") \
                        from None
                if attempt >= self.attempts:
                    raise ConnectionError(f"Triton server {self.url} failed {attempt} times in a row, last: "
                                          f"{err.status()} {err.message()}") from None
                delay = min(0.25 * 2 ** attempt, 8.0) * random.uniform(0.5, 1.0)
                log.warning("Triton %s (%s); retry %d/%d in %.1f s", err.status(), err.message(), attempt,
                            self.attempts - 1, delay)
                time.sleep(delay)
                attempt += 1

    def close(self) -> None:
        self.client.close()
