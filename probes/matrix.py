"""A task's feature rows as one layer-major fp16 matrix, within a memory budget.

The store is read once, a few chunks at a time, and only the rows the task uses are kept. The matrix lives
in RAM when it fits the budget; otherwise (MTG-sized stores: 477k windows x 25 layers x 1024 dims is
24 GB) it is written to a scratch ``.npy`` and memory-mapped, so the page cache, not the process, holds
it. Layer-major order makes every hidden state one contiguous ``[rows, D_k]`` slab, and the slabs of one
width lie side by side: a single-layer probe copies just its slab into RAM, a transformer's layers read as
one ``[L+1, rows, D]`` array, and the weighted-sum probes, which need several layers, read rows from the
mapped file. Per-probe worker processes share the file the same way.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from marblekit.core.layers import LayerColumns
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


@dataclass
class LayerMatrix:
    """Layer-major fp16 features of ``rows`` rows in one flat ``buffer`` (in RAM or a read-only memory map):
    the hidden state at position i of ``columns`` owns elements ``rows * offsets[i]`` on, as ``[rows, D_i]``.
    ``columns`` lists the store's layers grouped by width (:meth:`LayerColumns.width_groups`)."""

    buffer: np.ndarray
    rows: int
    columns: LayerColumns

    @classmethod
    def empty(cls, rows: int, columns: LayerColumns) -> LayerMatrix:
        return cls(np.empty(rows * columns.width, np.float16), rows, columns)

    @property
    def layers(self) -> tuple[int, ...]:
        return self.columns.layers

    @property
    def nbytes(self) -> int:
        return int(self.buffer.nbytes)

    def width(self, layers: Sequence[int]) -> int:
        """The one width of ``layers``, with an error when they differ."""
        widths = {self.columns.dims[self.columns.position(k)] for k in layers}
        if len(widths) != 1:
            raise ValueError(f"layers {list(layers)} have widths {sorted(widths)}: a probe group needs one width")
        return widths.pop()

    def layer(self, layer: int) -> np.ndarray:
        """Hidden state ``layer`` as ``[rows, D]`` (a view)."""
        span = self.columns.span(layer)
        return self.buffer[self.rows * span.start:self.rows * span.stop].reshape(self.rows, span.stop - span.start)

    def slab(self, layers: Sequence[int]) -> np.ndarray:
        """``layers`` (one width) as ``[len(layers), rows, D]``: a view when they lie side by side in this
        order, else a copy."""
        width = self.width(layers)
        positions = [self.columns.position(k) for k in layers]
        if positions == list(range(positions[0], positions[0] + len(positions))):
            start = self.rows * int(self.columns.offsets[positions[0]])
            return self.buffer[start:start + len(layers) * self.rows * width].reshape(len(layers), self.rows, width)
        return np.stack([self.layer(k) for k in layers])

    def width_group(self, layer: int) -> tuple[int, ...]:
        """Every layer as wide as ``layer`` (they lie side by side)."""
        return next(group for group in self.columns.width_groups() if layer in group)


def load_rows(features: StoreFeatures, row_sets: list[np.ndarray], budget: MemoryBudget | None,
              in_file: bool = False, progress: bool = False) -> tuple[LayerMatrix, list[np.ndarray]]:
    """Read the union of ``row_sets`` (store rows) in one pass into a layer-major matrix; returns it and
    each set's positions in it. The matrix is a read-only memory map of a scratch file when ``in_file`` or
    when it exceeds the budget (``budget`` None: no limit, in RAM)."""
    lengths = [len(rows) for rows in row_sets]
    union, inverse = np.unique(np.concatenate(row_sets).astype(np.int64), return_inverse=True)
    columns = features.columns.select([k for group in features.columns.width_groups() for k in group])
    nbytes = len(union) * columns.width * 2
    mapped = in_file or (budget is not None and nbytes > budget.bytes)
    if mapped:
        if budget is None:
            raise ValueError("a feature matrix in a file needs a MemoryBudget with a scratch folder")
        path = _scratch_file(budget.scratch, nbytes, features.source)
        matrix = LayerMatrix(np.lib.format.open_memmap(path, mode="w+", dtype=np.float16,
                                                       shape=(len(union) * columns.width,)), len(union), columns)
    else:
        matrix = LayerMatrix.empty(len(union), columns)
    spans = [(k, features.columns.span(k)) for k in columns.layers]
    with tqdm(total=nbytes, unit="B", unit_scale=True, desc="reading features", disable=not progress) as bar:
        for index, block in features.read_spans(union):
            for layer, span in spans:
                matrix.layer(layer)[index] = block[:, span]
            bar.update(block.nbytes)
    if mapped:
        matrix.buffer.flush()
        matrix = LayerMatrix(np.load(path, mmap_mode="r"), matrix.rows, columns)
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
