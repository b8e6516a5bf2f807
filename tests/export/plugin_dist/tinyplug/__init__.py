"""A tiny third-party backbone, registered with marblekit only through the ``marblekit.backbones`` entry point
(see ../tinyplug-0.1.dist-info/entry_points.txt), as a user's package would be. Checkpoints are .npz files."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from marblekit.core.backbones import BackbonePlugin, BackboneSpec

SPEC = BackboneSpec(name="tiny-plug", family="tinyplug", sample_rate=16000, hop=320, receptive_field=400,
                    num_layers=2, dim=16, weights="tinyplug/weights.npz (shipped with the package)",
                    description="a strided conv and two 1x1 conv layers, for plugin tests")
PLUGIN = BackbonePlugin(specs=(SPEC,), build="tinyplug:build", load_checkpoint="tinyplug:load_checkpoint",
                        find_checkpoint="tinyplug:find_checkpoint")
SHIPPED = Path(__file__).with_name("weights.npz")


def build(spec: BackboneSpec, seed: int):
    import torch
    from torch import nn

    class Tiny(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.frames = nn.Conv1d(1, spec.dim, spec.receptive_field, stride=spec.hop)
            self.layers = nn.ModuleList(nn.Conv1d(spec.dim, spec.dim, 1) for _ in range(spec.num_layers))

        def forward(self, waveform: torch.Tensor) -> torch.Tensor:
            hidden = self.frames(waveform[:, None])
            states = [hidden]
            for layer in self.layers:
                hidden = torch.tanh(layer(hidden))
                states.append(hidden)
            return torch.stack(states, dim=1).transpose(2, 3)  # [B, L + 1, T, D]

    return Tiny()


def load_checkpoint(path: Path, spec: BackboneSpec):
    import torch

    model = build(spec, 0)
    with np.load(path) as arrays:
        model.load_state_dict({name: torch.from_numpy(arrays[name]) for name in arrays.files})
    return model, hashlib.sha256(path.read_bytes()).hexdigest()


def find_checkpoint(spec: BackboneSpec) -> Path | None:
    return SHIPPED if SHIPPED.exists() else None


def save_checkpoint(model, path: Path) -> None:
    np.savez(path, **{name: value.detach().numpy() for name, value in model.state_dict().items()})
