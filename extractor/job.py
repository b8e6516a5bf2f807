"""The extraction pipeline: decode in worker processes -> window -> batch -> engine -> one block write.

Three stages overlap:
  * decoder processes (``Decoders``) stream tracks ahead of need into scratch files of model-rate samples
    (at most 2 x workers + 2 tracks ahead, catalog order), so no track is ever whole in memory;
  * the main thread reads windows from those files, batches full windows of a block's tracks together (equal lengths, never
    padded) and sends every shorter tail window alone at its true length, keeping at most
    ``engine.max_in_flight`` requests running (threads);
  * a writer thread waits for a block's requests, assembles the block in catalog order and writes it whole
    (see ``store`` for why the block is the write unit).
Batches never cross blocks, so a block's results do not depend on which process or run computed it.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import logging
import multiprocessing
import os
import queue
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np

from marblekit.core.audio_input import Preparation, Prepared, prepare_track
from marblekit.core.served_model import FRAMES, POOLED
from marblekit.core.store_layout import DONE, FAILED, storable_text
from marblekit.core.windows import Windowing

from .catalog import Entry
from .engine import Engine, InferenceError
from .lookahead import submitted_ahead
from .progress import Progress
from .store import Block, Store

log = logging.getLogger(__name__)
#: scratch folders are named after the process that owns them, so a later run can remove those of dead ones
SCRATCH_PREFIX = "marblekit-decoded-"


def remove_stale_scratch(root: Path) -> None:
    """Remove the scratch folders that processes killed before they could clean up (kill -9) left in ``root``."""
    for folder in root.glob(f"{SCRATCH_PREFIX}*-*"):
        pid = folder.name[len(SCRATCH_PREFIX):].split("-")[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


@dataclass(frozen=True)
class JobSettings:
    """``scratch``: where decoded tracks wait to be windowed (None: the system's temporary folder)."""

    windowing: Windowing
    preparation: Preparation
    frame_layers: tuple[int, ...] = ()
    batch: int = 8
    workers: int = 2
    shard: tuple[int, int] = (0, 1)
    scratch: Path | None = None

    @property
    def outputs(self) -> tuple[str, ...]:
        return (POOLED, FRAMES) if self.frame_layers else (POOLED,)


@dataclass
class Summary:
    """What one run did (``done``, ``failed``, ...: this run's tracks) and the state of the whole store
    (``failed_in_store``: failed tracks of every block done so far, by any run or process)."""

    done: int = 0
    failed: int = 0
    skipped: int = 0
    elsewhere: int = 0
    audio_s: float = 0.0
    wall_s: float = 0.0
    finalized: bool = False
    failures: list[tuple[str, str]] = field(default_factory=list)
    failed_in_store: int = 0
    retried: int = 0


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
    """Runs one shard of one extraction into ``store``; call :meth:`run` once. ``entries``: the catalog, or
    (a Ray worker's) the tracks of the blocks it runs, by catalog row."""

    def __init__(self, entries: Sequence[Entry] | Mapping[int, Entry], store: Store, engine: Engine,
                 settings: JobSettings, progress: Progress):
        self.entries = entries
        self.store = store
        self.engine = engine
        self.settings = settings
        self.progress = progress
        self.rate = engine.info.sample_rate
        self._frame_columns = engine.info.frame_columns.indices(settings.frame_layers)  # the stored layers'
        self.summary = Summary()
        self._slots = threading.BoundedSemaphore(engine.max_in_flight * 2)
        self._infer_pool = cf.ThreadPoolExecutor(engine.max_in_flight, thread_name_prefix="infer")
        self._written: queue.Queue[_BlockWork | None] = queue.Queue(maxsize=2)
        self._writer_error: BaseException | None = None

    def my_blocks(self) -> list[int]:
        index, count = self.settings.shard
        return [k for k in range(self.store.num_blocks) if k % count == index]

    def run(self, blocks: list[int] | None = None, finalize: bool = True, decoders: Decoders | None = None) -> Summary:
        """Extract ``blocks`` (default: my shard's), then, with ``finalize``, complete the store if every block
        is done (a Ray worker leaves that to the driver, which owns the schedule). ``decoders``: ones kept open
        across runs (a Ray worker's, one run per block); by default this run starts its own."""
        started = time.perf_counter()
        writer = threading.Thread(target=self._writer, name="block-writer", daemon=True)
        writer.start()
        try:
            with contextlib.ExitStack() as stack:
                if decoders is None:
                    decoders = stack.enter_context(open_decoders(self.settings))
                mine = self.my_blocks() if blocks is None else blocks
                for work, local, pending in self._tracks_ahead(decoders, mine):
                    self._feed(work, local, decoders.result(self.entries[work.tracks[local]], pending))
                    if local == len(work.tracks) - 1:
                        self._flush_full(work)
                        self._written.put(work)
                    self._check_writer()
        finally:
            self._written.put(None)
            writer.join()
            self._infer_pool.shutdown()
        self._check_writer()
        self.summary.wall_s = time.perf_counter() - started
        if finalize:
            self.summary.finalized = self.store.finalize_if_complete()
            self.summary.failed_in_store = self.store.failed_tracks()
        return self.summary

    def _check_writer(self) -> None:
        if self._writer_error is not None:
            raise self._writer_error

    def _claimed_blocks(self, blocks: list[int]) -> Iterator[_BlockWork]:
        """The unfinished ones of ``blocks``, each held under its lock; blocks another process holds are left to it."""
        for index in blocks:
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

    def _tracks_ahead(self, decoders: Decoders, blocks: list[int]) -> Iterator[tuple[_BlockWork, int, Pending]]:
        """Every track of the claimed ones of ``blocks`` in catalog order with its decoding, submitted at most
        2 x workers + 2 tracks ahead of use (decoded tracks wait on the scratch disk, so this bounds it)."""
        tracks = ((work, local, track) for work in self._claimed_blocks(blocks)
                  for local, track in enumerate(work.tracks))
        decode = lambda t: decoders.submit(self.entries[t[2]])  # noqa: E731
        for (work, local, _), pending in submitted_ahead(tracks, decode, 2 * self.settings.workers + 2):
            yield work, local, pending

    def _feed(self, work: _BlockWork, local: int, decoded: tuple[Prepared | None, str]) -> None:
        """Cut one decoded track into windows and send them; its scratch file goes once they are read."""
        prepared, error = decoded
        if prepared is not None:
            try:
                bounds = self.settings.windowing.bounds(prepared.samples, self.rate)
                error = "" if bounds else self._too_short(prepared.samples)
                work.audio_s += prepared.samples / self.rate
                if not error:
                    self._add_windows(work, local, prepared, bounds)
            finally:
                prepared.path.unlink(missing_ok=True)
        work.errors[local] = storable_text(error)  # a decoder's message may quote a non-UTF-8 file name

    def _too_short(self, samples: int) -> str:
        return f"{samples / self.rate:.2f} s of audio after cropping; at least 1 s is needed for one window"

    def _add_windows(self, work: _BlockWork, local: int, prepared: Prepared, bounds: list[tuple[int, int]]) -> None:
        full = int(round(self.settings.windowing.window_s * self.rate))
        for start, stop in bounds:
            slot = len(work.windows)
            work.windows.append(_Window(local, start, stop - start))
            if stop - start == full:
                work.pending_full.append((slot, prepared.read(start, stop)))
                if len(work.pending_full) == self.settings.batch:
                    self._flush_full(work)
            else:
                self._submit(work, [slot], prepared.read(start, stop)[None])

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
        pooled = np.zeros((len(work.windows), info.columns.width), dtype=np.float16)
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
            if FRAMES in outputs:
                chosen = outputs[FRAMES][:, :, self._frame_columns].astype(np.float16)
                for row, slot in enumerate(slots):
                    frames[slot] = chosen[row]
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
            empty = np.zeros((0, len(self._frame_columns)), dtype=np.float16)
            block.frames = np.concatenate(chosen) if chosen else empty
            block.frame_counts = np.array([f.shape[0] for f in chosen], dtype=np.int64)
        return block

    def _account(self, work: _BlockWork) -> None:
        failed = [(self.entries[work.tracks.start + i].id, e) for i, e in enumerate(work.errors) if e]
        self.summary.failed += len(failed)
        self.summary.failures += failed
        self.summary.done += len(work.tracks) - len(failed)
        self.summary.audio_s += work.audio_s
        self.progress.advance(len(work.tracks), work.audio_s, len(failed))


@contextlib.contextmanager
def open_decoders(settings: JobSettings) -> Iterator[Decoders]:
    """The decoder processes with their scratch folder, removed afterwards (and those of dead processes first)."""
    scratch_root = Path(settings.scratch or tempfile.gettempdir())
    scratch_root.mkdir(parents=True, exist_ok=True)
    remove_stale_scratch(scratch_root)
    with tempfile.TemporaryDirectory(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-", dir=scratch_root) as scratch, \
            Decoders(settings.workers, settings.preparation, Path(scratch)) as decoders:
        yield decoders


@dataclass(frozen=True)
class Pending:
    """A track's decoding: its future and the pool that runs it."""

    future: cf.Future
    pool: cf.ProcessPoolExecutor | None


class Decoders:
    """The decoder processes (forkserver: never fork a process that runs gRPC or onnxruntime threads).

    A decoder that dies (the OOM killer on a huge file, a crashing codec) breaks the pool: the pool is
    started again and every track it held is decoded again alone, in a process of its own, so only the
    track that kills its decoder fails ("decoder process died (signal N)") and the job goes on."""

    def __init__(self, workers: int, preparation: Preparation, scratch: Path):
        self.workers, self.preparation, self.scratch = workers, preparation, scratch
        self.context = multiprocessing.get_context("forkserver")
        self.pool = self._start()

    def _start(self) -> cf.ProcessPoolExecutor:
        return cf.ProcessPoolExecutor(max_workers=self.workers, mp_context=self.context)

    def submit(self, entry: Entry) -> Pending:
        if entry.error:
            future: cf.Future = cf.Future()
            future.set_result((None, entry.error))
            return Pending(future, None)
        try:
            return Pending(self._submit(entry), self.pool)
        except BrokenProcessPool:
            self._restart(self.pool)
            return Pending(self._submit(entry), self.pool)

    def _submit(self, entry: Entry) -> cf.Future:
        return self.pool.submit(prepare_track, entry.path, entry.start, entry.end, self.preparation, self.scratch)

    def result(self, entry: Entry, pending: Pending) -> tuple[Prepared | None, str]:
        try:
            return pending.future.result()
        except BrokenProcessPool:
            self._restart(pending.pool)
            return self._alone(entry)

    def _restart(self, broken: cf.ProcessPoolExecutor | None) -> None:
        if broken is self.pool:
            log.warning("a decoder process died; restarting the decoders and decoding its tracks one by one")
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool = self._start()

    def _alone(self, entry: Entry) -> tuple[Prepared | None, str]:
        """Decode one track in a process of its own, to learn whether it is the one that kills its decoder."""
        receiver, sender = self.context.Pipe(duplex=False)
        process = self.context.Process(target=_decode_alone, name="decoder", daemon=True,
                                       args=(sender, entry.path, entry.start, entry.end, self.preparation,
                                             self.scratch))
        process.start()
        sender.close()
        try:
            decoded = receiver.recv()
        except EOFError:  # it died before answering
            decoded = None
        process.join()
        if decoded is None:
            code = process.exitcode or 0
            cause = f"signal {-code}: {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
            return None, f"decoder process died ({cause})"
        return decoded

    def __enter__(self) -> Decoders:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.pool.shutdown(cancel_futures=True)


def _decode_alone(sender: Connection, path: Path, start: float, end: float | None, how: Preparation,
                  scratch: Path) -> None:
    sender.send(prepare_track(path, start, end, how, scratch))
    sender.close()
