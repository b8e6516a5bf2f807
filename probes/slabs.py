"""The features a group of probes trains on, copied out of the layer-major matrix within a memory budget."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch

from marblekit.probes.matrix import LayerMatrix
from marblekit.probes.types import ProbeConfig


class Slabs:
    """The features a group trains on, as a torch tensor [layers, rows, D] (its layers share one width).

    A group's layers are copied out of the (possibly memory-mapped) matrix when they fit ``budget`` bytes,
    as float32 when that fits too (no conversion per batch), and the last copy is kept for the next group
    with the same layers (a worker's next learning rate).
    When they do not fit, the group gets every layer of its width as a view of the matrix itself
    (memory-mapped, or already in RAM) and gathers its batches from it, so memory stays bounded whatever the
    store's size."""

    def __init__(self, features: LayerMatrix, mixed_layers: tuple[int, ...], budget: int | None = None) -> None:
        self.features = features
        self.mixed_layers = mixed_layers
        self.budget = budget
        self.kept: tuple[tuple[int, ...], Any] | None = None

    def layers_for(self, configs: list[ProbeConfig]) -> np.ndarray:
        """The layers a group of ``configs`` reads: its own, with the weighted sum's when it has weighted-sum
        probes, or every layer of their width when those do not fit the budget (then the matrix serves them
        without a copy)."""
        own = {c.layer for c in configs if c.layer is not None}
        if any(c.layer is None for c in configs):
            own |= set(self.mixed_layers)
        needed = sorted(own)
        return np.array(needed if self._fits(needed) else self.features.width_group(needed[0]))

    def _fits(self, layers: list[int], scale: int = 1) -> bool:
        return self.budget is None or scale * sum(self.features.layer(k).nbytes for k in layers) <= self.budget

    def get(self, layers: np.ndarray) -> Any:
        key = tuple(int(layer) for layer in layers)
        if self.kept is not None and self.kept[0] == key:
            return self.kept[1]
        self.kept = None
        with warnings.catch_warnings():  # a read-only memory map is only ever read
            warnings.simplefilter("ignore", UserWarning)
            selected = self.features.slab(key)
            if not self._fits(list(key)):
                return torch.from_numpy(selected)
            dtype = np.float32 if self._fits(list(key), 2) else np.float16  # float32 takes twice the room
            tensor = torch.from_numpy(np.ascontiguousarray(selected, dtype))
        self.kept = (key, tensor)
        return tensor
