"""Hidden states of different widths side by side on one feature axis: where each one's columns are.

A served model returns, and a store keeps, the features of several hidden states concatenated along the last
axis (``pooled [.., sum of widths]``); layer ``k`` of the selection owns columns ``offsets[k]:offsets[k+1]``.
For a transformer every width is the same and the axis is ``[layers x dim]`` flattened; MusiCNN's named
representations (408, 153, 64, ... wide) sit next to each other without any padding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LayerColumns:
    """``layers``: hidden-state indices in axis order; ``dims``: the width of each."""

    layers: tuple[int, ...]
    dims: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.layers) != len(self.dims):
            raise ValueError(f"{len(self.layers)} layers but {len(self.dims)} widths")

    @classmethod
    def of(cls, layers: Sequence[int], widths_by_state: Sequence[int]) -> LayerColumns:
        """The columns of ``layers`` (hidden-state indices) given every hidden state's width."""
        return cls(tuple(int(k) for k in layers), tuple(int(widths_by_state[k]) for k in layers))

    @property
    def offsets(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.dims, dtype=np.int64)]).astype(np.int64)

    @property
    def width(self) -> int:
        return int(sum(self.dims))

    @property
    def uniform(self) -> bool:
        """Every layer is one width (the axis is a flattened ``[layers, dim]``)."""
        return len(set(self.dims)) <= 1

    def position(self, layer: int) -> int:
        """Where hidden state ``layer`` is in this selection, with an error naming what is there."""
        if layer not in self.layers:
            raise ValueError(f"hidden state {layer} is not among these layers {list(self.layers)}")
        return self.layers.index(layer)

    def span(self, layer: int) -> slice:
        """The columns of hidden state ``layer``."""
        position = self.position(layer)
        offsets = self.offsets
        return slice(int(offsets[position]), int(offsets[position + 1]))

    def indices(self, layers: Sequence[int]) -> np.ndarray:
        """Column indices of ``layers`` in the given order (to take them out of a concatenated axis)."""
        offsets = self.offsets
        return np.concatenate([np.arange(offsets[self.position(k)], offsets[self.position(k) + 1])
                               for k in layers]).astype(np.int64) if len(layers) else np.zeros(0, np.int64)

    def select(self, layers: Sequence[int]) -> LayerColumns:
        """The columns of a sub-selection, in the order given."""
        return LayerColumns(tuple(int(k) for k in layers), tuple(self.dims[self.position(k)] for k in layers))

    def split(self, array: np.ndarray) -> list[np.ndarray]:
        """``array [..., width]`` as one ``[..., dim_k]`` view per layer."""
        if array.shape[-1] != self.width:
            raise ValueError(f"feature axis of {array.shape[-1]} columns; these layers {list(self.layers)} "
                             f"take {self.width} ({list(self.dims)})")
        offsets = self.offsets
        return [array[..., offsets[i]:offsets[i + 1]] for i in range(len(self.layers))]

    def stacked(self, array: np.ndarray) -> np.ndarray:
        """``array [..., width]`` as ``[..., layers, dim]`` (a view) when every layer is one width."""
        if not self.uniform:
            raise ValueError(f"layers {list(self.layers)} have widths {list(self.dims)}: they do not stack")
        if array.shape[-1] != self.width:
            raise ValueError(f"feature axis of {array.shape[-1]} columns; expected {self.width}")
        return array.reshape(*array.shape[:-1], len(self.layers), self.dims[0] if self.dims else 0)

    def width_groups(self) -> list[tuple[int, ...]]:
        """The layers by width, each group in axis order, groups in order of their first layer."""
        groups: dict[int, list[int]] = {}
        for layer, dim in zip(self.layers, self.dims):
            groups.setdefault(dim, []).append(layer)
        return [tuple(group) for group in groups.values()]

    def describe(self, names: Sequence[str] = ()) -> str:
        """``"0 timbral (408), 1 temporal (153), ..."`` for error messages."""
        return ", ".join(f"{k}{' ' + names[k] if k < len(names) else ''} ({d})" for k, d in zip(self.layers, self.dims))
