"""A task's feature rows as one layer-major fp16 matrix ``[L+1, rows, D]``, within a memory budget.

The store is read once, a few chunks at a time, and only the rows the task uses are kept. The matrix lives
in RAM when it fits the budget; otherwise (MTG-sized stores: 477k windows x 25 layers x 1024 dims is
24 GB) it is written to a scratch ``.npy`` and memory-mapped, so the page cache, not the process, holds
it. Layer-major order makes every hidden state one contiguous slab: a single-layer probe copies just its
slab into RAM, and only the weighted-sum probes, which need every layer, read rows from the mapped file.
Per-probe worker processes share the file the same way.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from marblekit.probes.features import StoreFeatures

#: share of the available memory a probe job may fill with features by default
DEFAULT_MEMORY_SHARE = 0.5


def available_memory() -> int:
    """Bytes the kernel reports as available to new allocations (MemAvailable)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class MemoryBudget:
    """``bytes``: the most RAM a job's features may take (the matrix, or the slabs probes copy out of it);
    ``scratch``: the folder where a matrix over budget, or one that worker processes share, is written."""

    bytes: int
    scratch: Path

    @classmethod
    def default(cls, scratch: Path | None = None) -> MemoryBudget:
        return cls(int(available_memory() * DEFAULT_MEMORY_SHARE), Path(scratch or tempfile.gettempdir()))


def load_rows(features: StoreFeatures, row_sets: list[np.ndarray], budget: MemoryBudget | None,
              in_file: bool = False, progress: bool = False) -> tuple[np.ndarray, list[np.ndarray]]:
    """Read the union of ``row_sets`` (store rows) in one pass into a layer-major matrix; returns it and
    each set's positions in it. The matrix is a read-only memory map of a scratch file when ``in_file`` or
    when it exceeds the budget (``budget`` None: no limit, in RAM)."""
    lengths = [len(rows) for rows in row_sets]
    union, inverse = np.unique(np.concatenate(row_sets).astype(np.int64), return_inverse=True)
    shape = (features.n_hidden_states, len(union), features.dim)
    nbytes = int(np.prod(shape)) * 2
    mapped = in_file or (budget is not None and nbytes > budget.bytes)
    if mapped:
        if budget is None:
            raise ValueError("a feature matrix in a file needs a MemoryBudget with a scratch folder")
        path = _scratch_file(budget.scratch, nbytes, features.source)
        matrix = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=shape)
    else:
        matrix = np.empty(shape, np.float16)
    with tqdm(total=nbytes, unit="B", unit_scale=True, desc="reading features", disable=not progress) as bar:
        for index, block in features.read_spans(union):
            matrix[:, index] = block.transpose(1, 0, 2)
            bar.update(block.nbytes)
    if mapped:
        matrix.flush()
        del matrix
        matrix = np.load(path, mmap_mode="r")
    return matrix, np.split(inverse, np.cumsum(lengths)[:-1])


def _scratch_file(folder: Path, nbytes: int, source: str) -> Path:
    """A fresh .npy path in ``folder``, after checking the disk can hold ``nbytes``."""
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if free < nbytes * 1.05:
        raise OSError(f"the features of {source} need {nbytes / 1e9:.1f} GB of scratch space in {folder} but "
                      f"only {free / 1e9:.1f} GB is free; pass --scratch DIR on a larger disk or a larger "
                      "--memory-gb")
    handle, name = tempfile.mkstemp(prefix="features-", suffix=".npy", dir=folder)
    os.close(handle)
    return Path(name)
