"""CLMR's encoder (Spijkervet & Burgoyne, ISMIR 2021): SampleCNN on the raw 22.05 kHz waveform, in its published
shape, with an importer for the checkpoints CLMR's training code writes.

The input unit is 59049 = 3^10 samples (2.68 s): a strided first convolution and nine blocks that pool by 3
each, then a last 512-channel block leave one frame per 59049 samples. Every block's output is a named
representation with its own width and frame rate (``BLOCKS``); the last one is CLMR's 512-d embedding.
No CLMR weights can be downloaded here: the importer is tested on checkpoints written in CLMR's formats.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

from marblekit.core.checksums import sha256_of

from .architecture import named_state_hooks
from .plugins import CLMR_BLOCKS as BLOCKS
from .plugins import CLMR_HIDDEN as HIDDEN


class SampleCNN(nn.Module):
    """``waveform [B, N]`` -> every block's output ``[B, frames, width]`` by name; ``self.sequential`` keeps
    CLMR's module names, so its state dict loads as it is (the fully connected head is not part of it)."""

    def __init__(self) -> None:
        super().__init__()
        blocks = [nn.Sequential(nn.Conv1d(1, 128, kernel_size=3, stride=3), nn.BatchNorm1d(128), nn.ReLU())]
        blocks += [nn.Sequential(nn.Conv1d(width_in, width_out, kernel_size=3, padding=1), nn.BatchNorm1d(width_out),
                                 nn.ReLU(), nn.MaxPool1d(3, stride=3)) for width_in, width_out in HIDDEN]
        blocks.append(nn.Sequential(nn.Conv1d(512, 512, kernel_size=3, padding=1), nn.BatchNorm1d(512), nn.ReLU()))
        self.sequential = nn.Sequential(*blocks)
        self.eval()

    def forward(self, waveform: torch.Tensor) -> dict[str, torch.Tensor]:
        hidden, outputs = waveform[:, None], {}
        for (name, _, _), block in zip(BLOCKS, self.sequential):
            hidden = block(hidden)
            outputs[name] = hidden.transpose(1, 2)
        return outputs


def random_sample_cnn(seed: int) -> SampleCNN:
    """The published shape with seeded random weights (CLMR initialises its convolutions Kaiming-uniform)."""
    torch.manual_seed(seed)
    model = SampleCNN()
    for module in model.modules():
        if isinstance(module, nn.Conv1d):
            nn.init.kaiming_uniform_(module.weight, mode="fan_in", nonlinearity="relu")
    return model.eval()


def encoder_state(checkpoint: dict) -> OrderedDict[str, torch.Tensor]:
    """The encoder's tensors of a CLMR checkpoint: a PyTorch-Lightning ``.ckpt`` (``state_dict`` with
    ``model.encoder.`` keys) or a plain state dict with ``encoder.`` keys; the head (``fc``) is dropped."""
    if "pytorch-lightning_version" in checkpoint:
        tensors, prefix = checkpoint.get("state_dict", {}), "model.encoder."
    else:
        tensors, prefix = checkpoint, "encoder."
    return OrderedDict((key[len(prefix):], value) for key, value in tensors.items()
                       if key.startswith(prefix) and not key[len(prefix):].startswith("fc."))


def load_clmr_checkpoint(path: Path) -> tuple[SampleCNN, str]:
    """SampleCNN with the encoder weights of ``path`` (read with ``weights_only``: tensors and plain data only)
    and the file's SHA-256; an error names the file and what did not fit."""
    from .checkpoint import load_state  # transformers comes with it: only when a checkpoint is read

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CLMR checkpoint {path} does not exist (expected a .ckpt or .pt file)")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - unpickling refusals and corrupt files alike
        raise ValueError(f"{path}: not a loadable CLMR checkpoint ({type(err).__name__}: {err})") from None
    if not isinstance(checkpoint, dict):
        raise ValueError(f"{path}: expected a checkpoint dict, got {type(checkpoint).__name__}")
    state = encoder_state(checkpoint)
    if not state:
        raise ValueError(f"{path}: no encoder weights (expected 'model.encoder.*' keys in a Lightning "
                         f"checkpoint's state_dict, or 'encoder.*' keys)")
    model = SampleCNN()
    load_state(model, state, f"{path} (CLMR SampleCNN encoder)")
    return model.eval(), sha256_of(path)


# --- the backbone plugin (marblekit.export.plugins) --------------------------------------------------------

build, load_checkpoint = named_state_hooks(random_sample_cnn, load_clmr_checkpoint)
