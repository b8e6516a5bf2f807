"""A small gRPC client for one served marblekit model: what the model expects, and waveforms in, arrays out.

It asks only for the outputs the caller names (Triton then sends only those bytes: ``pooled`` is hundreds of
times smaller than ``hidden_states``), gives every call a deadline, retries what a busy or restarting server
answers for a time budget (``core.retry.RetryPolicy``), reconnects within about a second of a server coming
back, and turns Triton's status codes into errors that say what happened. The extractor's Triton engine is
this client with a retry policy.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from marblekit.core.retry import RECONNECT_OPTIONS, RetryPolicy
from marblekit.core.served_model import INPUT, POOLED, ServedModel, served_model


class ServingError(RuntimeError):
    """Triton answered with an error (bad input, missing model, deadline); the message is the server's."""


class ServerUnavailable(ServingError):
    """No Triton answers at the address, or it refused the request for now (queue full): retry later."""


class DeadlineExceeded(ServingError):
    """The server did not answer within the deadline (overloaded, or a long queue): retry later."""


class ModelNotServed(ServingError):
    """The server answers but does not have the model (a wrong name, or a model that failed to load)."""


#: what a retry may cure; anything else (a bad request, a missing model) fails at once
RETRYABLE = (ServerUnavailable, DeadlineExceeded)
log = logging.getLogger(__name__)
#: the channel of tritonclient's defaults (message sizes, keepalive) that also reconnects quickly
CHANNEL_ARGS = [("grpc.max_send_message_length", grpcclient.MAX_GRPC_MESSAGE_SIZE),
                ("grpc.max_receive_message_length", grpcclient.MAX_GRPC_MESSAGE_SIZE),
                ("grpc.keepalive_time_ms", grpcclient.KeepAliveOptions().keepalive_time_ms),
                ("grpc.keepalive_timeout_ms", grpcclient.KeepAliveOptions().keepalive_timeout_ms),
                *RECONNECT_OPTIONS]


def translate_error(err: InferenceServerException, url: str, model: str, timeout: float) -> ServingError:
    """A tritonclient exception as the ServingError a caller can act on (retry only the RETRYABLE kinds)."""
    status, message = str(err.status() or ""), err.message()
    if status.endswith("UNAVAILABLE") and "protocol is restricted" in message:
        return ServingError(f"Triton at {url} does not allow this request for {model!r}: {message}")
    if status.endswith("UNAVAILABLE") and "Exceeds maximum queue size" in message:
        return ServerUnavailable(f"Triton at {url} is overloaded: {model!r}'s request queue is full ({message})")
    if status.endswith("UNAVAILABLE"):
        return ServerUnavailable(f"Triton at {url} is unavailable for {model!r} (UNAVAILABLE: {message}); "
                                 f"is `marblekit serve` running there?")
    if "unknown model" in message:  # a restarted server answers this until it has loaded the model again
        return ServerUnavailable(f"{model!r} is not loaded on Triton at {url} ({status}: {message}); a restarting "
                                 f"server is still loading it")
    if status.endswith("DEADLINE_EXCEEDED"):
        return DeadlineExceeded(f"{model!r} at {url} did not answer within {timeout:g} s (DEADLINE_EXCEEDED)")
    return ServingError(f"{model!r} at {url} rejected the request ({status or 'error'}): {message}")


@dataclass(frozen=True)
class ServerStatistics:
    """A model's cumulative counters on its server. Fewer ``executions`` than ``requests`` means requests were
    batched; ``queue_s`` is the requests' total wait in the scheduler (summed over requests), ``compute_s`` the
    model's total execution time (inputs, inference, outputs; each execution once, however many requests it
    served)."""

    requests: int
    executions: int
    queue_s: float
    compute_s: float

    def since(self, earlier: ServerStatistics) -> ServerStatistics:
        """What the counters gathered after ``earlier`` was read."""
        return ServerStatistics(self.requests - earlier.requests, self.executions - earlier.executions,
                                self.queue_s - earlier.queue_s, self.compute_s - earlier.compute_s)


class ModelClient:
    """Synchronous client for one model on one server; safe to share between threads. ``timeout`` is every
    call's deadline; ``retry`` says for how long ``infer`` retries a busy or unreachable server; ``notify``
    hears what it waits for (default: a log warning)."""

    def __init__(self, url: str, model: str, timeout: float = 60.0, retry: RetryPolicy = RetryPolicy(),
                 notify: Callable[[str], None] | None = None):
        self.url, self.model, self.timeout, self.retry = url, model, timeout, retry
        self.notify = notify or log.warning
        self._client = grpcclient.InferenceServerClient(url, channel_args=CHANNEL_ARGS)
        self._served: ServedModel | None = None

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait up to ``timeout`` s for the model to be ready, saying once what it waits for; a server that
        answers without the model fails at once (ModelNotServed), naming the models it has."""
        deadline, told = time.monotonic() + timeout, False
        while True:
            try:
                if self._client.is_model_ready(self.model, client_timeout=min(self.timeout, 5.0)):
                    return
                problem = self._not_ready_reason()
            except InferenceServerException as err:
                problem = str(translate_error(err, self.url, self.model, self.timeout))
            if time.monotonic() > deadline:
                raise ServerUnavailable(f"gave up after {timeout:g} s: {problem}")
            if not told:
                self.notify(f"waiting up to {timeout:g} s for Triton at {self.url} to serve {self.model!r} "
                            f"(now: {problem})")
                told = True
            time.sleep(0.5)

    def _not_ready_reason(self) -> str:
        """Why a live server's model is not ready. A model its repository lacks raises at once; one it has
        is waited for (a starting server lists its models before they have loaded), saying its state."""
        index = self._client.get_model_repository_index(client_timeout=min(self.timeout, 5.0)).models
        states = {entry.name: (entry.state, entry.reason) for entry in index}
        if self.model not in states:
            raise ModelNotServed(f"Triton at {self.url} has no model {self.model!r}; it serves: "
                                 f"{', '.join(sorted(states)) or 'nothing'}")
        state, reason = states[self.model]
        return f"{self.model!r} is {state or 'not loaded'}{': ' + reason if reason else ''}"

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

        A dtype the model does not take is reported by the server; an array that is not [batch, samples] is
        refused here (Triton would read a 1-D array's samples as its batch size). RETRYABLE errors are
        retried as ``self.retry`` says, then the last one is raised with how long it was retried.
        """
        array = np.ascontiguousarray(waveforms)
        if array.ndim != 2:
            raise ServingError(f"waveforms for {self.model!r} must be [batch, samples], got shape "
                               f"{list(array.shape)}")
        request = grpcclient.InferInput(INPUT, list(array.shape), np_to_triton_dtype(array.dtype))
        request.set_data_from_numpy(array)
        wanted = [grpcclient.InferRequestedOutput(name) for name in outputs]

        def once() -> dict[str, np.ndarray]:
            try:
                result = self._client.infer(self.model, [request], outputs=wanted, request_id=request_id,
                                            client_timeout=self.timeout)
            except InferenceServerException as err:
                raise translate_error(err, self.url, self.model, self.timeout) from None
            return {name: result.as_numpy(name) for name in outputs}

        return self.retry.call(once, lambda error: isinstance(error, RETRYABLE), self.notify,
                               subject=f"Triton at {self.url}")

    def statistics(self) -> ServerStatistics:
        """The model's counters on the server so far (Triton's inference statistics)."""
        try:
            stats = self._client.get_inference_statistics(self.model, client_timeout=self.timeout)
        except InferenceServerException as err:
            raise translate_error(err, self.url, self.model, self.timeout) from None
        model_stats = stats.model_stats[0]
        inference = model_stats.inference_stats
        compute_ns = sum(batch.compute_input.ns + batch.compute_infer.ns + batch.compute_output.ns
                         for batch in model_stats.batch_stats)  # per execution, not per request it served
        return ServerStatistics(int(inference.success.count), int(model_stats.execution_count),
                                inference.queue.ns / 1e9, compute_ns / 1e9)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> "ModelClient":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
