"""The one loading path the CLI, the exporter, the benchmarks and the tests share."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import nn

from marblekit.core.backbones import BackboneSpec

from .builders import random_encoder
from .checkpoint import load_checkpoint


@dataclass(frozen=True)
class Provenance:
    """Where an encoder's weights came from; recorded in every export and store built from it."""

    weights: str  # "checkpoint" | "random-init" | "none"
    checkpoint: str = ""
    checkpoint_sha256: str = ""
    seed: int | None = None

    @property
    def random_init(self) -> bool:
        return self.weights == "random-init"


def load_encoder(spec: BackboneSpec, checkpoint: Path | None = None, random_init: bool = False,
                 seed: int = 0) -> tuple[nn.Module, Provenance]:
    """Build ``spec``'s hidden-state encoder from a local checkpoint, or seeded random weights on request."""
    if not spec.needs_weights:
        if checkpoint is not None:
            raise ValueError(f"backbone {spec.name!r} has no weights; drop --checkpoint")
        return random_encoder(spec, seed), Provenance("none")
    if checkpoint is not None and random_init:
        raise ValueError("give either --checkpoint DIR or --random-init, not both")
    if checkpoint is not None:
        loaded = load_checkpoint(Path(checkpoint), spec)
        return loaded.encoder, Provenance("checkpoint", str(checkpoint), loaded.sha256)
    if random_init:
        return random_encoder(spec, seed), Provenance("random-init", seed=seed)
    raise ValueError(f"backbone {spec.name!r} needs weights: pass --checkpoint DIR (a local HF-format "
                     f"directory) or --random-init for seeded random weights in the published shape")
