"""The one loading path the CLI, the exporter, the benchmarks and the tests share."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from marblekit.core.backbones import BackbonePlugin, BackboneSpec, plugin_for

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
    """Build ``spec``'s hidden-state encoder from a local checkpoint, or seeded random weights on request;
    a plugin's backbone may find a checkpoint of its own (one that ships with an installed package)."""
    plugin = plugin_for(spec)
    if not spec.needs_weights:
        if checkpoint is not None:
            raise ValueError(f"backbone {spec.name!r} has no weights; drop --checkpoint")
        return build_random(spec, seed, plugin), Provenance("none")
    if checkpoint is not None and random_init:
        raise ValueError("give either --checkpoint DIR or --random-init, not both")
    if checkpoint is None and not random_init and plugin is not None and plugin.find_checkpoint:
        checkpoint = plugin.resolve("find_checkpoint")(spec)
    if checkpoint is not None:
        if plugin is None:
            loaded = load_checkpoint(Path(checkpoint), spec)
            return loaded.encoder, Provenance("checkpoint", str(checkpoint), loaded.sha256)
        if not plugin.load_checkpoint:
            raise ValueError(f"backbone {spec.name!r} has no checkpoint importer; use --random-init")
        encoder, sha256 = plugin.resolve("load_checkpoint")(Path(checkpoint), spec)
        return encoder.eval(), Provenance("checkpoint", str(checkpoint), sha256)
    if random_init:
        return build_random(spec, seed, plugin), Provenance("random-init", seed=seed)
    raise ValueError(f"backbone {spec.name!r} needs weights ({spec.weights}): pass --checkpoint DIR (a local "
                     f"checkpoint) or --random-init for seeded random weights in the published shape")


def build_random(spec: BackboneSpec, seed: int, plugin: BackbonePlugin | None) -> nn.Module:
    """The encoder with seeded random weights, from marblekit's builders or the plugin's."""
    if plugin is None:
        return random_encoder(spec, seed)
    torch.manual_seed(seed)
    return plugin.resolve("build")(spec, seed).eval()
