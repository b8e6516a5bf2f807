"""The exported graph: raw waveform in, every hidden state's time-mean and the frame layers' frames out.

transformers' ``HubertModel`` / ``Data2VecAudioModel`` provide the modules; this wrapper runs them one by one
and collects the hidden-state list itself, so its meaning does not depend on the library's output-capture
hooks (transformers 5 returns the pre-final-LayerNorm output as the last entry of pre-LN models; MARBLE and
transformers 4 mean the post-LayerNorm one, which is what we return).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from marblekit.core.backbones import BackboneSpec


def _first(output: torch.Tensor | tuple[torch.Tensor, ...]) -> torch.Tensor:
    """Layers return a tensor in transformers 5 and a tuple in 4.x; take the hidden states either way."""
    return output[0] if isinstance(output, tuple) else output


class HiddenStatesEncoder(nn.Module):
    """Wraps a wav2vec2-family base model; ``forward(waveform [B, N])`` -> ``[B, L+1, T, D]``."""

    def __init__(self, base_model: nn.Module, pre_layer_norm: bool):
        super().__init__()
        self.feature_extractor = base_model.feature_extractor
        self.feature_projection = base_model.feature_projection
        self.pos_conv_embed = base_model.encoder.pos_conv_embed
        self.encoder_layer_norm = base_model.encoder.layer_norm
        self.layers = base_model.encoder.layers
        self.pre_layer_norm = pre_layer_norm
        self.eval()

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        features = self.feature_extractor(waveform).transpose(1, 2)
        hidden = _first(self.feature_projection(features))
        hidden = hidden + self.pos_conv_embed(hidden)
        if not self.pre_layer_norm:
            hidden = self.encoder_layer_norm(hidden)
        states = [hidden]
        for layer in self.layers:
            hidden = _first(layer(hidden))
            states.append(hidden)
        if self.pre_layer_norm:
            states[-1] = self.encoder_layer_norm(hidden)
        return torch.stack(states, dim=1)


def hidden_state_list(states: torch.Tensor | list[torch.Tensor]) -> list[torch.Tensor]:
    """An encoder's hidden states as ``[B, T_k, D_k]`` tensors, from the stacked ``[B, L, T, D]`` form or a list
    (the two forms of the backbone contract, ``marblekit.core.backbones.BackbonePlugin``)."""
    return list(states.unbind(1)) if isinstance(states, torch.Tensor) else list(states)


class NamedStates(nn.Module):
    """A model that returns its representations by name, as the backbone contract's list in ``names`` order."""

    def __init__(self, model: nn.Module, names: tuple[str, ...]):
        super().__init__()
        self.model = model
        self.names = tuple(names)
        self.eval()

    def forward(self, waveform: torch.Tensor) -> list[torch.Tensor]:
        outputs = self.model(waveform)
        return [outputs[name] for name in self.names]


def named_state_hooks(random_model: Callable[[int], nn.Module], load_model: Callable[[Path], tuple[nn.Module, str]]
                      ) -> tuple[Callable[[BackboneSpec, int], NamedStates],
                                 Callable[[Path, BackboneSpec], tuple[NamedStates, str]]]:
    """A plugin's ``build`` and ``load_checkpoint`` (``marblekit.core.backbones.BackbonePlugin``) for a model
    that returns its representations by name: ``random_model(seed)`` and ``load_model(path) -> (model,
    sha256)``, each wrapped as :class:`NamedStates` in the spec's layer order."""

    def build(spec: BackboneSpec, seed: int) -> NamedStates:
        return NamedStates(random_model(seed), spec.layer_names)

    def load_checkpoint(path: Path, spec: BackboneSpec) -> tuple[NamedStates, str]:
        model, sha256 = load_model(path)
        return NamedStates(model, spec.layer_names), sha256

    return build, load_checkpoint


class ServingGraph(nn.Module):
    """What Triton serves (``marblekit.core.served_model``): ``frames [B, T, C_f]``, the frames of
    ``frame_layers`` side by side, and ``pooled [B, C]``, every hidden state's mean over its frames side by
    side."""

    def __init__(self, encoder: nn.Module, frame_layers: tuple[int, ...], output_dtype: torch.dtype = torch.float32):
        super().__init__()
        self.encoder = encoder
        self.frame_layers = tuple(frame_layers)
        self.output_dtype = output_dtype
        self.eval()

    def forward(self, waveform: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        states = hidden_state_list(self.encoder(waveform))
        frames = torch.cat([states[k] for k in self.frame_layers], dim=2)
        pooled = torch.cat([state.mean(dim=1) for state in states], dim=1)
        return self._typed(frames), self._typed(pooled)

    def _typed(self, output: torch.Tensor) -> torch.Tensor:
        """The output in ``output_dtype``; no cast where it already is (the tracer would write a no-op Cast,
        which NNCF's ONNX quantiser cannot take as a graph output)."""
        return output if output.dtype == self.output_dtype else output.to(self.output_dtype)
