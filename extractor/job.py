"""The extraction pipeline: decode in worker processes -> window -> batch -> engine -> one block write.

Three stages overlap:
  * a process pool decodes tracks ahead of need (at most ``prefetch`` tracks in flight, catalog order);
  * the main thread cuts windows, batches full windows of a block's tracks together (equal lengths, never
    padded) and sends every shorter tail window alone at its true length, keeping at most
    ``engine.max_in_flight`` requests running (threads);
  * a writer thread waits for a block's requests, assembles the block in catalog order and writes it whole
    (see store.py for why the block is the write unit).
Batches never cross blocks, so a block's results do not depend on which process or run computed it.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import contextlib
import multiprocessing
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from marblekit.core.served_model import HIDDEN_STATES, POOLED
from marblekit.core.store_layout import DONE, FAILED

from .audio import Preparation, prepare_track
from .catalog import Entry
from .engine import Engine, InferenceError
from .progress import Progress
from .store import Block, Store
from .windows import Windowing


@dataclass(frozen=True)
class JobSettings:
    windowing: Windowing
    preparation: Preparation
    frame_layers: tuple[int, ...] = ()
    batch: int = 8
    workers: int = 2
    shard: tuple[int, int] = (0, 1)

    @property
    def outputs(self) -> tuple[str, ...]:
        return (POOLED, HIDDEN_STATES) if self.frame_layers else (POOLED,)


@dataclass
class Summary:
    done: int = 0
    failed: int = 0
    skipped: int = 0
    elsewhere: int = 0
    audio_s: float = 0.0
    wall_s: float = 0.0
    finalized: bool = False
    failures: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class _Window:
    track: int  # index within the block
    start: int
    length: int


@dataclass
class _BlockWork:
    """A block being assembled: per-track outcome, its windows in catalog order, and their requests."""

    index: int
    tracks: range
    claim: contextlib.ExitStack
    errors: list[str] = field(default_factory=list)
    windows: list[_Window] = field(default_factory=list)
    requests: list[tuple[list[int], cf.Future]] = field(default_factory=list)
    pending_full: list[tuple[int, np.ndarray]] = field(default_factory=list)
    audio_s: float = 0.0


class ExtractionJob:
    """Runs one shard of one extraction into ``store``; call :meth:`run` once."""

    def __init__(self, entries: list[Entry], store: Store, engine: Engine, settings: JobSettings,
                 progress: Progress):
        self.entries = entries
        self.store = store
        self.engine = engine
        self.settings = settings
        self.progress = progress
        self.rate = engine.info.sample_rate
        self.summary = Summary()
        self._slots = threading.BoundedSemaphore(engine.max_in_flight * 2)
        self._infer_pool = cf.ThreadPoolExecutor(engine.max_in_flight, thread_name_prefix="infer")
        self._written: queue.Queue[_BlockWork | None] = queue.Queue(maxsize=2)
        self._writer_error: BaseException | None = None

    def my_blocks(self) -> list[int]:
        index, count = self.settings.shard
        return [k for k in range(self.store.num_blocks) if k % count == index]

    def run(self) -> Summary:
        started = time.perf_counter()
        writer = threading.Thread(target=self._writer, name="block-writer", daemon=True)
        writer.start()
        try:
            with _decoder_pool(self.settings.workers) as pool:
                for work, decoded in self._decoded_blocks(pool):
                    self._feed(work, decoded)
                    self._check_writer()
        finally:
            self._written.put(None)
            writer.join()
            self._infer_pool.shutdown()
        self._check_writer()
        self.summary.wall_s = time.perf_counter() - started
        self.summary.finalized = self.store.finalize_if_complete()
        return self.summary

    def _check_writer(self) -> None:
        if self._writer_error is not None:
            raise self._writer_error

    def _claimed_blocks(self) -> Iterator[_BlockWork]:
        """My unfinished blocks, each held under its lock; blocks another process holds are left to it."""
        for index in self.my_blocks():
            tracks = self.store.block_range(index)
            if self.store.is_done(index):
                self._skip(tracks, elsewhere=False)
                continue
            claim = contextlib.ExitStack()
            if not claim.enter_context(self.store.block_lock(index)) or self.store.is_done(index):
                claim.close()  # held by another process, or finished by one since the first look
                self._skip(tracks, elsewhere=not self.store.is_done(index))
                continue
            yield _BlockWork(index, tracks, claim, errors=[""] * len(tracks))

    def _skip(self, tracks: range, elsewhere: bool) -> None:
        if elsewhere:
            self.summary.elsewhere += len(tracks)
        else:
            self.summary.skipped += len(tracks)
        self.progress.skip(len(tracks))

    def _decoded_blocks(self, pool: cf.Executor) -> Iterator[tuple[_BlockWork, list]]:
        """Each claimed block with its tracks' decode futures, submitted ahead of use (bounded)."""
        ahead: collections.deque[tuple[_BlockWork, list]] = collections.deque()
        in_flight = 0
        limit = max(4 * self.settings.workers, 8)
        for work in self._claimed_blocks():
            futures = [self._submit_decode(pool, self.entries[t]) for t in work.tracks]
            ahead.append((work, futures))
            in_flight += len(futures)
            while in_flight > limit and len(ahead) > 1:
                done = ahead.popleft()
                in_flight -= len(done[1])
                yield done
        while ahead:
            yield ahead.popleft()

    def _submit_decode(self, pool: cf.Executor, entry: Entry) -> cf.Future:
        if entry.error:
            future: cf.Future = cf.Future()
            future.set_result((None, entry.error))
            return future
        return pool.submit(prepare_track, entry.path, entry.start, entry.end, self.settings.preparation)

    def _feed(self, work: _BlockWork, decoded: list[cf.Future]) -> None:
        for local, future in enumerate(decoded):
            waveform, error = future.result()
            if waveform is not None:
                bounds = self.settings.windowing.bounds(len(waveform), self.rate)
                error = "" if bounds else self._too_short(len(waveform))
                work.audio_s += len(waveform) / self.rate
                if not error:
                    self._add_windows(work, local, waveform, bounds)
            work.errors[local] = error
        self._flush_full(work)
        self._written.put(work)

    def _too_short(self, samples: int) -> str:
        return f"{samples / self.rate:.2f} s of audio after cropping; at least 1 s is needed for one window"

    def _add_windows(self, work: _BlockWork, local: int, waveform: np.ndarray, bounds: list[tuple[int, int]]) \
            -> None:
        full = int(round(self.settings.windowing.window_s * self.rate))
        for start, stop in bounds:
            slot = len(work.windows)
            work.windows.append(_Window(local, start, stop - start))
            if stop - start == full:
                work.pending_full.append((slot, waveform[start:stop]))
                if len(work.pending_full) == self.settings.batch:
                    self._flush_full(work)
            else:
                self._submit(work, [slot], waveform[None, start:stop])

    def _flush_full(self, work: _BlockWork) -> None:
        if work.pending_full:
            slots = [slot for slot, _ in work.pending_full]
            self._submit(work, slots, np.stack([window for _, window in work.pending_full]))
            work.pending_full = []

    def _submit(self, work: _BlockWork, slots: list[int], batch: np.ndarray) -> None:
        self._slots.acquire()
        future = self._infer_pool.submit(self.engine.infer, np.ascontiguousarray(batch, dtype=np.float32),
                                         self.settings.outputs)
        future.add_done_callback(lambda _: self._slots.release())
        work.requests.append((slots, future))

    def _writer(self) -> None:
        while (work := self._written.get()) is not None:
            if self._writer_error is not None:
                work.claim.close()
                continue
            try:
                self._write(work)
            except BaseException as err:  # handed to the main thread, which stops feeding
                self._writer_error = err
            finally:
                work.claim.close()

    def _write(self, work: _BlockWork) -> None:
        info = self.engine.info
        pooled = np.zeros((len(work.windows), info.num_hidden_states, info.dim), dtype=np.float16)
        frames: list[np.ndarray | None] = [None] * len(work.windows)
        for slots, future in work.requests:
            try:
                outputs = future.result()
            except InferenceError as err:
                for slot in slots:
                    work.errors[work.windows[slot].track] = str(err)
                continue
            pooled[slots] = outputs[POOLED].astype(np.float16)
            for slot in slots:
                if not np.isfinite(pooled[slot]).all():
                    work.errors[work.windows[slot].track] = ("the model output is not finite in float16 "
                                                             "(NaN, or beyond the float16 range)")
            if HIDDEN_STATES in outputs:
                chosen = outputs[HIDDEN_STATES][:, list(self.settings.frame_layers)].astype(np.float16)
                for row, slot in enumerate(slots):
                    frames[slot] = chosen[row].transpose(1, 0, 2)
        self.store.write_block(self._assemble(work, pooled, frames))
        self._account(work)

    def _assemble(self, work: _BlockWork, pooled: np.ndarray, frames: list[np.ndarray | None]) -> Block:
        keep = [slot for slot, window in enumerate(work.windows) if not work.errors[window.track]]
        kept = [work.windows[slot] for slot in keep]
        block = Block(
            index=work.index,
            track_status=np.array([FAILED if error else DONE for error in work.errors], dtype=np.uint8),
            track_error=list(work.errors), pooled=pooled[keep],
            window_track=np.array([work.tracks.start + w.track for w in kept], dtype=np.int32),
            window_start=np.array([w.start / self.rate for w in kept], dtype=np.float64),
            window_length=np.array([w.length / self.rate for w in kept], dtype=np.float64),
        )
        if self.settings.frame_layers:
            chosen = [frames[slot] for slot in keep]
            shape = (0, len(self.settings.frame_layers), self.engine.info.dim)
            block.frames = np.concatenate(chosen) if chosen else np.zeros(shape, dtype=np.float16)
            block.frame_counts = np.array([f.shape[0] for f in chosen], dtype=np.int64)
        return block

    def _account(self, work: _BlockWork) -> None:
        failed = [(self.entries[work.tracks.start + i].id, e) for i, e in enumerate(work.errors) if e]
        self.summary.failed += len(failed)
        self.summary.failures += failed
        self.summary.done += len(work.tracks) - len(failed)
        self.summary.audio_s += work.audio_s
        self.progress.advance(len(work.tracks), work.audio_s)


@contextlib.contextmanager
def _decoder_pool(workers: int) -> Iterator[cf.Executor]:
    """Worker processes (forkserver: never fork a process that runs gRPC or onnxruntime threads)."""
    context = multiprocessing.get_context("forkserver")
    with cf.ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        yield pool
