"""The extraction on a Ray cluster: the driver owns the block schedule, Ray actors run the blocks.

Each worker is a Ray actor that holds its own inference engine (a client of one of the Triton endpoints, taken
round-robin, or onnxruntime in its process when no server is given, on the GPU Ray gives it with
``--device cuda``) and runs the extractor's own block pipeline
(``job.ExtractionJob``, decoding in the actor's decoder processes) on one block at a time, writing it whole as a
single process does. So a block's bytes do not depend on where it ran, and no claims are needed: the driver
gives every pending block to exactly one worker, and a worker that dies (its process killed, its node lost)
is restarted by Ray, which runs its block again from the start; writing a block again yields the same bytes.
The driver alone finalises the store. A driver killed and started again finds the blocks marked done and
gives out only the others (a block that a worker of the dead driver still holds is given out again until it is
done).

Why actors rather than Ray Data: the block is both the unit of work and of writing, whole and in catalog order
(``store``), and a worker's engine (a gRPC channel, an onnxruntime session) is built once and not per block;
Ray Data would re-batch rows behind our back and bring its own sink, which the store's protocol has no use for.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import logging
import time
from typing import Any

from marblekit.core.served_model import ServedModel
from marblekit.core.store_layout import DONE, StoreAttrs

from .api import ExtractRequest, Plan, catalog_entries, open_engine, plan_extraction
from .catalog import Entry
from .engine import local_model_info
from .job import ExtractionJob, JobSettings, Summary, open_decoders
from .progress import Progress
from .store import Store

log = logging.getLogger(__name__)
#: how often Ray starts a worker again after its process died, and runs its block again
WORKER_RESTARTS = 3
#: blocks queued per worker, so that it starts the next while the driver hears about the last
QUEUED_PER_WORKER = 2
#: how long the workers may take to stop their decoders before they are killed
CLOSE_TIMEOUT_S = 30.0
#: how long a worker waits before it hands back a block another process holds, to be given out again
HELD_RETRY_S = 0.5


@dataclasses.dataclass(frozen=True)
class RaySettings:
    """``address``: a running cluster (``auto``, ``ray://host:10001``, ``host:6379``); None starts a local Ray on
    this machine. ``workers``: actors (None: one per ``--workers`` CPUs of the cluster)."""

    address: str | None = None
    workers: int | None = None


class BlockWorker:
    """One Ray actor: an engine, the open store, and the block pipeline (see the module docstring)."""

    def __init__(self, request: ExtractRequest, num_tracks: int, settings: JobSettings, attrs: StoreAttrs):
        self.engine = open_engine(request, log.warning)
        self.settings = settings
        self.store = Store(request.store, attrs, num_tracks, request.block_tracks)
        self._decoders = contextlib.ExitStack()  # kept open across blocks
        self.decoders = self._decoders.enter_context(open_decoders(settings))

    def close(self) -> None:
        """Stop the decoders (removing their scratch folder) and the engine."""
        self._decoders.close()
        self.engine.close()

    def run_block(self, index: int, entries: dict[int, Entry]) -> Summary:
        """Extract block ``index``; ``entries``: its tracks by catalog row (a worker never holds the catalog)."""
        job = ExtractionJob(entries, self.store, self.engine, self.settings, Progress(enabled=False))
        summary = job.run([index], finalize=False, decoders=self.decoders)
        if summary.elsewhere:  # another process holds it (on a local store: a worker of a killed driver)
            time.sleep(HELD_RETRY_S)
            return summary
        return self._recorded(index, entries) if summary.skipped else summary

    def _recorded(self, index: int, entries: dict[int, Entry]) -> Summary:
        """A block found done: an earlier try of this task wrote it, then its worker died before answering.
        Its outcome is read back from the store (its audio duration is not recorded there)."""
        status, errors = self.store.block_record(index)
        tracks = self.store.block_range(index)
        failures = [(entries[track].id, error) for track, error in zip(tracks, errors) if error]
        return Summary(done=int((status == DONE).sum()), failed=len(failures), failures=failures)


def extract_on_ray(request: ExtractRequest, ray_settings: RaySettings) -> Summary:
    """The whole extraction on Ray, with the same summary as ``api.extract`` (``elsewhere`` is always 0)."""
    import ray

    request.check()
    entries = catalog_entries(request)
    if not ray.is_initialized():
        ray.init(address=ray_settings.address, log_to_driver=False, include_dashboard=False,
                 configure_logging=False)
    servers = request.servers or [None]
    with contextlib.closing(Progress(enabled=request.progress)) as progress:
        gpus = 1 if request.device != "cpu" else 0
        count = _worker_count(ray_settings.workers, request.decoders, gpus)
        plan = plan_extraction(request, entries, _model_info(request, servers[0], progress))
        actor = ray.remote(BlockWorker).options(num_cpus=plan.settings.workers, num_gpus=gpus,
                                                max_restarts=WORKER_RESTARTS, max_task_retries=WORKER_RESTARTS)
        workers = [actor.remote(dataclasses.replace(request, server=servers[k % len(servers)]), len(plan.entries),
                                plan.settings, plan.store.attrs) for k in range(count)]
        started = time.perf_counter()
        try:
            summary = _run_blocks(plan, workers, progress)
            summary.wall_s = time.perf_counter() - started
        finally:
            ray.wait([worker.close.remote() for worker in workers], num_returns=len(workers), timeout=CLOSE_TIMEOUT_S)
            for worker in workers:
                ray.kill(worker)
    summary.finalized = plan.store.finalize_if_complete()
    summary.failed_in_store = plan.store.failed_tracks()
    summary.retried = plan.retried
    return summary


def _model_info(request: ExtractRequest, server: str | None, progress: Progress) -> ServedModel:
    """What the driver plans with: the first server's model, or the local repository's config (the driver
    loads no graph: on a cluster its node may have no GPU, nor the memory a worker has)."""
    if server is None:
        return local_model_info(request.repo, request.model)
    with contextlib.closing(open_engine(dataclasses.replace(request, server=server), progress.waiting)) as engine:
        return engine.info


def _worker_count(requested: int | None, cpus_per_worker: int, gpus_per_worker: int) -> int:
    """``requested`` (--ray-workers), or one worker per ``cpus_per_worker`` CPUs of the cluster, or per GPU when
    the workers need one (a cluster without any would leave them waiting for ever: refused)."""
    import ray

    resources = ray.cluster_resources()
    if gpus_per_worker and resources.get("GPU", 0) < gpus_per_worker:
        raise ValueError("--device cuda with --ray: the Ray cluster has no GPU; start its nodes with GPUs, "
                         "or give --server")
    if requested is not None:
        if requested < 1:
            raise ValueError(f"--ray-workers must be at least 1, got {requested}")
        return requested
    if gpus_per_worker:
        return int(resources["GPU"]) // gpus_per_worker
    return max(1, int(resources.get("CPU", 1)) // cpus_per_worker)


def _run_blocks(plan: Plan, workers: list[Any], progress: Progress) -> Summary:
    """Give every pending block to one worker, ``QUEUED_PER_WORKER`` at a time each, and add up what they did."""
    import ray

    store, summary = plan.store, Summary()
    done = store.done_blocks()
    pending = collections.deque(k for k in range(store.num_blocks) if not done[k])
    summary.skipped = sum(len(store.block_range(k)) for k in range(store.num_blocks) if done[k])
    progress.plan(sum(len(store.block_range(k)) for k in pending))
    running: dict[Any, tuple[Any, int]] = {}

    def give(worker: Any) -> None:
        index = pending.popleft()
        entries = {track: plan.entries[track] for track in store.block_range(index)}
        running[worker.run_block.remote(index, entries)] = (worker, index)

    for _ in range(QUEUED_PER_WORKER):
        for worker in workers:
            if pending:
                give(worker)
    while running:
        [ready], _ = ray.wait(list(running), num_returns=1)
        worker, index = running.pop(ready)
        try:
            block = ray.get(ready)
        except ray.exceptions.RayTaskError as err:  # the block's own error (e.g. the server gone): stop, as here
            raise err.as_instanceof_cause() from None
        except ray.exceptions.RayActorError as err:
            if err.actor_init_failed:  # not retried by Ray: the same error on every node
                reason = err.error_msg.strip().splitlines()[-1]
                raise RuntimeError(f"a Ray worker could not start: {reason}") from None
            raise RuntimeError(f"block {index}: its Ray worker died {WORKER_RESTARTS + 1} times; the blocks done "
                               f"so far are kept, run the same command again ({err})") from None
        if block.elsewhere:
            pending.append(index)  # given out again until it is done, by whoever holds it or by us
        else:
            _add(summary, block)
            progress.advance(block.done + block.failed, block.audio_s, block.failed)
        if pending:
            give(worker)
    return summary


def _add(total: Summary, block: Summary) -> None:
    total.done += block.done
    total.failed += block.failed
    total.audio_s += block.audio_s
    total.failures += block.failures
