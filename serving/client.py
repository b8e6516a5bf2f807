"""A small gRPC client for one served marblekit model: what the model expects, and waveforms in, arrays out.

It asks only for the outputs the caller names (Triton then sends only those bytes: ``pooled`` is hundreds of
times smaller than ``hidden_states``), gives every call a deadline, retries what a busy or restarting server
answers (``RetryPolicy``), and turns Triton's status codes into errors that say what happened. The extractor's
Triton engine is this client with a retry policy.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from marblekit.core.served_model import INPUT, POOLED, ServedModel, served_model


class ServingError(RuntimeError):
    """Triton answered with an error (bad input, missing model, deadline); the message is the server's."""


class ServerUnavailable(ServingError):
    """No Triton answers at the address, or it refused the request for now (queue full): retry later."""


class DeadlineExceeded(ServingError):
    """The server did not answer within the deadline (overloaded, or a long queue): retry later."""


#: what a retry may cure; anything else (a bad request, a missing model) fails at once
RETRYABLE = (ServerUnavailable, DeadlineExceeded)
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    """``attempts`` calls at most, for RETRYABLE errors, after capped exponential backoff with jitter (so
    clients that lost the server together do not come back together)."""

    attempts: int = 1
    first_delay_s: float = 0.5
    max_delay_s: float = 8.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1-based)."""
        return min(self.first_delay_s * 2 ** (attempt - 1), self.max_delay_s) * random.uniform(0.5, 1.0)


def translate_error(err: InferenceServerException, url: str, model: str, timeout: float) -> ServingError:
    """A tritonclient exception as the ServingError a caller can act on (retry only the RETRYABLE kinds)."""
    status, message = str(err.status() or ""), err.message()
    if status.endswith("UNAVAILABLE") and "protocol is restricted" in message:
        return ServingError(f"Triton at {url} does not allow this request for {model!r}: {message}")
    if status.endswith("UNAVAILABLE"):
        return ServerUnavailable(f"Triton at {url} is unavailable for {model!r} (UNAVAILABLE: {message}); "
                                 f"is `marblekit serve` running there?")
    if status.endswith("DEADLINE_EXCEEDED"):
        return DeadlineExceeded(f"{model!r} at {url} did not answer within {timeout:g} s (DEADLINE_EXCEEDED)")
    return ServingError(f"{model!r} at {url} rejected the request ({status or 'error'}): {message}")


class ModelClient:
    """Synchronous client for one model on one server; safe to share between threads. ``timeout`` is every
    call's deadline; ``retry`` says how often ``infer`` retries a busy or unreachable server."""

    def __init__(self, url: str, model: str, timeout: float = 60.0, retry: RetryPolicy = RetryPolicy()):
        self.url, self.model, self.timeout, self.retry = url, model, timeout, retry
        self._client = grpcclient.InferenceServerClient(url)
        self._served: ServedModel | None = None

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Poll until the model is ready: after a server restart the channel answers UNAVAILABLE until gRPC's
        reconnect backoff (about a second, growing) has passed, so callers wait here instead of failing."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self._client.is_model_ready(self.model, client_timeout=min(self.timeout, 5.0)):
                    return
                problem = f"{self.model!r} is not ready"
            except InferenceServerException as err:
                problem = str(translate_error(err, self.url, self.model, self.timeout))
            if time.monotonic() > deadline:
                raise ServerUnavailable(f"gave up after {timeout:g} s: {problem}")
            time.sleep(0.2)

    def model_metadata(self) -> ServedModel:
        """The served model's marblekit parameters (rate, accepted lengths, outputs), read once from its config."""
        if self._served is None:
            try:
                response = self._client.get_model_config(self.model, client_timeout=self.timeout)
            except InferenceServerException as err:
                raise translate_error(err, self.url, self.model, self.timeout) from None
            self._served = served_model(response.config)
        return self._served

    def infer(self, waveforms: np.ndarray, outputs: Sequence[str] = (POOLED,),
              request_id: str = "") -> dict[str, np.ndarray]:
        """Run ``waveforms`` [batch, samples] (float32 at the model's rate); only ``outputs`` come back.

        The array goes out as it is, so a wrong dtype or shape is reported by the server, not guessed at here.
        RETRYABLE errors are retried as ``self.retry`` says; the last one is raised, saying how many failed.
        """
        array = np.ascontiguousarray(waveforms)
        request = grpcclient.InferInput(INPUT, list(array.shape), np_to_triton_dtype(array.dtype))
        request.set_data_from_numpy(array)
        wanted = [grpcclient.InferRequestedOutput(name) for name in outputs]
        attempt = 1
        while True:
            try:
                result = self._client.infer(self.model, [request], outputs=wanted, request_id=request_id,
                                            client_timeout=self.timeout)
                return {name: result.as_numpy(name) for name in outputs}
            except InferenceServerException as err:
                error = translate_error(err, self.url, self.model, self.timeout)
            if not isinstance(error, RETRYABLE):
                raise error
            if attempt >= self.retry.attempts:
                raise type(error)(f"{error} ({attempt} failed attempts in a row)" if attempt > 1 else str(error))
            delay = self.retry.delay(attempt)
            log.warning("%s; retry %d/%d in %.1f s", error, attempt, self.retry.attempts - 1, delay)
            time.sleep(delay)
            attempt += 1

    def execution_counts(self) -> tuple[int, int]:
        """(requests served, model executions) so far; fewer executions than requests means batching happened."""
        try:
            stats = self._client.get_inference_statistics(self.model, client_timeout=self.timeout)
        except InferenceServerException as err:
            raise translate_error(err, self.url, self.model, self.timeout) from None
        model_stats = stats.model_stats[0]
        return int(model_stats.inference_stats.success.count), int(model_stats.execution_count)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> "ModelClient":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
