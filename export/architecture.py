"""The exported graph: raw waveform in, every hidden state and its time-mean out.

transformers' ``HubertModel`` / ``Data2VecAudioModel`` provide the modules; this wrapper runs them one by one
and collects the hidden-state list itself, so its meaning does not depend on the library's output-capture
hooks (transformers 5 returns the pre-final-LayerNorm output as the last entry of pre-LN models; MARBLE and
transformers 4 mean the post-LayerNorm one, which is what we return).
"""

from __future__ import annotations

import torch
from torch import nn


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


class ServingGraph(nn.Module):
    """What Triton serves: ``hidden_states [B, L, T, D]`` and ``pooled [B, L, D]`` (mean over frames)."""

    def __init__(self, encoder: nn.Module, output_dtype: torch.dtype = torch.float32):
        super().__init__()
        self.encoder = encoder
        self.output_dtype = output_dtype
        self.eval()

    def forward(self, waveform: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden_states = self.encoder(waveform)
        pooled = hidden_states.mean(dim=2)
        return hidden_states.to(self.output_dtype), pooled.to(self.output_dtype)
