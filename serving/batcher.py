"""Dynamic batching across concurrent requests: windows of the same length from many requests go to Triton in
one call (never padded: padding changes group-norm outputs), within a bounded queue.

Each request's windows are queued by (length, outputs asked for); a dispatcher thread takes the oldest window,
waits at most ``max_delay_s`` for more of the same kind (up to ``max_batch``), runs them as one batch on ``run_batch`` in a small pool of
callers, and hands every window its own rows back. When ``max_queue`` windows are already waiting, a new
request is refused at once (``QueueFull``), so an overloaded service sheds load instead of timing out.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

#: runs ``[batch, samples]`` float32 windows and returns the named outputs, one row per window
BatchRunner = Callable[[np.ndarray, tuple[str, ...]], dict[str, np.ndarray]]


class QueueFull(RuntimeError):
    """Too many windows are waiting; the caller should retry later."""


@dataclass
class _Pending:
    window: np.ndarray
    future: cf.Future
    queued: float = field(default_factory=time.monotonic)


class Batcher:
    """Batches windows of equal length across callers; ``submit`` is thread-safe."""

    def __init__(self, run_batch: BatchRunner, max_batch: int, max_delay_s: float = 0.005, max_queue: int = 512,
                 callers: int = 2, on_batch: Callable[[int, float], None] | None = None):
        self.run_batch, self.max_batch, self.max_delay_s, self.max_queue = run_batch, max_batch, max_delay_s, max_queue
        self.on_batch = on_batch  # (windows in the batch, seconds the call took), for metrics
        self._queues: dict[tuple[int, tuple[str, ...]], collections.deque[_Pending]] = {}
        self._waiting = 0
        self._condition = threading.Condition()
        self._callers = cf.ThreadPoolExecutor(callers, thread_name_prefix="triton-call")
        self._in_flight = threading.BoundedSemaphore(callers)
        self._closed = False
        self._dispatcher = threading.Thread(target=self._dispatch, name="batcher", daemon=True)
        self._dispatcher.start()

    @property
    def waiting(self) -> int:
        """Windows queued and not yet sent."""
        return self._waiting

    def submit(self, windows: list[np.ndarray], outputs: tuple[str, ...]) -> list[cf.Future]:
        """Queue a request's windows (1-D float32 each); every future resolves to that window's ``outputs``."""
        with self._condition:
            if self._closed:
                raise RuntimeError("the batcher is closed")
            if self._waiting + len(windows) > self.max_queue:
                raise QueueFull(f"{self._waiting} windows are already waiting (the queue holds {self.max_queue})")
            pending = [_Pending(np.ascontiguousarray(window, np.float32), cf.Future()) for window in windows]
            for item in pending:
                self._queues.setdefault((len(item.window), outputs), collections.deque()).append(item)
            self._waiting += len(pending)
            self._condition.notify()
        return [item.future for item in pending]

    def _dispatch(self) -> None:
        while True:
            taken = self._next_batch()
            if taken is None:
                return
            self._in_flight.acquire()
            self._callers.submit(self._run, *taken)

    def _next_batch(self) -> tuple[list[_Pending], tuple[str, ...]] | None:
        """The oldest window's kind, filled up to ``max_batch`` or until the oldest has waited long enough."""
        with self._condition:
            while True:
                if self._closed and not self._waiting:
                    return None
                if self._waiting:
                    kind, queue = min(self._queues.items(), key=lambda item: item[1][0].queued)
                    due = queue[0].queued + self.max_delay_s
                    if len(queue) >= self.max_batch or time.monotonic() >= due or self._closed:
                        batch = [queue.popleft() for _ in range(min(self.max_batch, len(queue)))]
                        if not queue:
                            del self._queues[kind]
                        self._waiting -= len(batch)
                        return batch, kind[1]
                    self._condition.wait(max(due - time.monotonic(), 0.0))
                else:
                    self._condition.wait()

    def _run(self, batch: list[_Pending], names: tuple[str, ...]) -> None:
        started = time.perf_counter()
        try:
            outputs = self.run_batch(np.stack([item.window for item in batch]), names)
        except BaseException as err:  # every window of the batch fails the same way
            for item in batch:
                item.future.set_exception(err)
            return
        finally:
            self._in_flight.release()
        if self.on_batch is not None:
            self.on_batch(len(batch), time.perf_counter() - started)
        for row, item in enumerate(batch):
            item.future.set_result({name: values[row] for name, values in outputs.items()})

    def close(self) -> None:
        """Send what is queued, then stop."""
        with self._condition:
            self._closed = True
            self._condition.notify()
        self._dispatcher.join()
        self._callers.shutdown(wait=True)
