"""The whole grid in one of three modes, which differ only in how probes share the hardware:

* ``vectorised``: one group holding every probe of one width (pays on a GPU): a backbone whose layers differ
  in width trains one group per width;
* ``per-layer``: one group per layer choice (its learning rates stacked: they share the input batch and
  the per-step overhead, as long as a batch's activations stay small) spread over worker processes with
  one thread each, the features shared through a memory-mapped file; the weighted-sum group, the slowest,
  is handed out first (pays on a small CPU, where all probes stacked fall out of cache: ``marblekit bench
  probe`` measures it against the others);
* ``per-probe``: groups of one, spread over the workers the same way.

Features are layer-major fp16 (``marblekit.probes.matrix.LayerMatrix``). A group copies the layers it
uses into RAM when they fit the memory budget; otherwise it reads batches straight from the memory-mapped
matrix, so a store larger than RAM trains with the same results, only slower.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from marblekit.probes.parallel import fork_context
from marblekit.probes.slabs import Slabs
from marblekit.probes.training import train_group
from marblekit.probes.types import BATCH_ITEMS, HIDDEN_UNITS, ProbeConfig, ProbeData, ProbeResult

MODES = ("vectorised", "per-layer", "per-probe")
JOBS_PER_WORKER = 6  # per-layer mode splits layer groups below this many jobs per worker
STACK_BYTES = 8 << 20  # per-layer mode stacks probes while a batch's hidden activations fit in this


_WORKER: dict[str, Any] = {}


def _worker_init(features_path: str, payload: ProbeData, seed: int, budget: int | None) -> None:
    """One thread per worker; the features are a shared read-only memory map, the rest is sent once."""
    torch.set_num_threads(1)
    features = dataclasses.replace(payload.features, buffer=np.load(features_path, mmap_mode="r"))
    _WORKER.update(data=dataclasses.replace(payload, features=features), seed=seed,
                   slabs=Slabs(features, payload.mixed_layers, budget))


def _worker_train(job: list[tuple[int, ProbeConfig]]) -> list[ProbeResult]:
    ids, configs = zip(*job)
    return train_group(_WORKER["data"], list(configs), np.array(ids), _WORKER["seed"], slabs=_WORKER["slabs"])


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def default_mode() -> str:
    """Vectorised on a GPU, one layer choice per worker process on a CPU (measured: `marblekit bench probe`)."""
    return "vectorised" if torch.cuda.is_available() else "per-layer"


def run_grid(data: ProbeData, configs: list[ProbeConfig], seed: int, mode: str, workers: int = 0,
             device: str | None = None, progress: bool = True, memory_bytes: int | None = None
             ) -> list[ProbeResult]:
    """Train every probe of ``configs`` in the given mode; results in ``configs`` order. ``memory_bytes``
    bounds the features copied into RAM (in the worker modes, shared among the workers)."""
    if mode not in MODES:
        raise ValueError(f"--mode must be one of {', '.join(MODES)}, got {mode!r}")
    ids = np.arange(len(configs))
    if mode == "vectorised":
        device = device or default_device()
        groups = width_groups(data, configs)
        with tqdm(total=data.schedule.max_epochs * len(groups), desc="grid epochs", disable=not progress) as bar:
            def on_epoch(epoch: int, live: int) -> None:
                bar.update(1)
                bar.set_postfix(live=live)
            # a matrix in RAM already holds its share of the budget: copies may use only the rest
            in_ram = 0 if isinstance(data.features.buffer, np.memmap) else data.features.nbytes
            budget = None if memory_bytes is None else max(memory_bytes - in_ram, 0)
            slabs = Slabs(data.features, data.mixed_layers, budget)
            results = {}
            for group in groups:
                results.update(zip(group, train_group(data, [configs[i] for i in group], ids[group], seed, device,
                                                      on_epoch, slabs)))
            return [results[int(i)] for i in ids]
    workers = workers or os.cpu_count() or 1
    groups = _worker_groups(configs, mode, workers, BATCH_ITEMS * len(data.train.rows) / data.train.n_items)
    workers = min(workers, len(groups))
    per_worker = None if memory_bytes is None else memory_bytes // workers
    payload = dataclasses.replace(data, features=dataclasses.replace(data.features, buffer=np.empty(0, np.float16)))
    with contextlib.ExitStack() as stack:
        path = getattr(data.features.buffer, "filename", None)
        if path is None:  # an in-RAM matrix: share it through a temporary file
            path = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="marblekit-probe-"))) / "features.npy"
            np.save(path, data.features.buffer)
        pool = stack.enter_context(fork_context().Pool(workers, initializer=_worker_init,
                                                        initargs=(str(path), payload, seed, per_worker)))
        jobs = [[(int(i), configs[i]) for i in group] for group in groups]
        results = {}
        with tqdm(total=len(configs), desc="probes", disable=not progress) as bar:
            for group, trained in zip(groups, pool.imap(_worker_train, jobs)):
                results.update(zip(group, trained))
                bar.update(len(group))
    return [results[int(i)] for i in ids]


def width_groups(data: ProbeData, configs: list[ProbeConfig]) -> list[list[int]]:
    """Probe indices by the width of the layers they read (one group for a transformer)."""
    groups: dict[int, list[int]] = {}
    for i, config in enumerate(configs):
        layers = data.mixed_layers if config.layer is None else (config.layer,)
        groups.setdefault(data.features.width(layers), []).append(i)
    return list(groups.values())


def _worker_groups(configs: list[ProbeConfig], mode: str, workers: int, batch_rows: float) -> list[list[int]]:
    """Probe indices of each worker job, the weighted-sum jobs (the slowest) first.

    per-probe: one probe each. per-layer: one layer choice's learning rates, stacked only as far as their
    hidden activations of a batch stay within STACK_BYTES (stacking pays by sharing per-step overhead
    while the activations stay in cache; frame-level batches of thousands of rows are faster one probe at a
    time), and split further when that leaves fewer than JOBS_PER_WORKER jobs per worker (a backbone with
    few hidden states: a few long jobs leave workers idle at the end)."""
    if mode == "per-probe":
        groups = [[i] for i in range(len(configs))]
    else:
        by_layer: dict[int | None, list[int]] = {}
        for i, config in enumerate(configs):
            by_layer.setdefault(config.layer, []).append(i)
        stack = max(1, int(STACK_BYTES // (batch_rows * HIDDEN_UNITS * 4)))
        parts = max(-(-JOBS_PER_WORKER * workers // len(by_layer)), -(-max(map(len, by_layer.values())) // stack))
        groups = [part.tolist() for group in by_layer.values()
                  for part in np.array_split(group, min(parts, len(group)))]
    return sorted(groups, key=lambda group: configs[group[0]].layer is not None)
