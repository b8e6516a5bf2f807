"""The features a group of probes trains on, copied out of the layer-major matrix within a memory budget."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch

from marblekit.probes.types import ProbeConfig


class Slabs:
    """The features a group trains on, as a torch tensor [layers, rows, D].

    A group's layers are copied out of the (possibly memory-mapped) matrix when they fit ``budget`` bytes,
    as float32 when that fits too (no conversion per batch), and the last copy is kept for the next group
    with the same layers (a worker's next learning rate).
    When they do not fit, the group gets every layer as the matrix itself (memory-mapped, or already in
    RAM) and gathers its batches from it, so memory stays bounded whatever the store's size."""

    def __init__(self, features: np.ndarray, budget: int | None = None) -> None:
        self.features = features
        self.budget = budget
        self.kept: tuple[tuple[int, ...], Any] | None = None

    def layers_for(self, configs: list[ProbeConfig]) -> np.ndarray:
        """The layers a group of ``configs`` reads: its own, or every layer when it mixes them or when its
        own do not fit the budget (then the matrix serves every layer without a copy)."""
        every = np.arange(self.features.shape[0])
        if any(c.layer is None for c in configs):
            return every
        own = np.unique([c.layer for c in configs])
        return own if self._fits(len(own)) else every

    def _fits(self, n_layers: int) -> bool:
        return self.budget is None or n_layers * self.features[0].nbytes <= self.budget

    def get(self, layers: np.ndarray) -> Any:
        key = tuple(int(layer) for layer in layers)
        if self.kept is not None and self.kept[0] == key:
            return self.kept[1]
        self.kept = None
        with warnings.catch_warnings():  # a read-only memory map is only ever read
            warnings.simplefilter("ignore", UserWarning)
            if len(key) == self.features.shape[0] and not self._fits(len(key)):
                return torch.from_numpy(self.features)
            selected = self.features if len(key) == self.features.shape[0] else self.features[layers]
            dtype = np.float32 if self._fits(2 * len(key)) else np.float16  # float32 takes twice the room
            tensor = torch.from_numpy(np.ascontiguousarray(selected, dtype))
        self.kept = (key, tensor)
        return tensor
