"""MARBLE's separation head (``MUSDB18Prober``, after open-unmix): frame features of one layer, or the
softmax-weighted sum of layers 1..L, to a magnitude mask applied to the mixture spectrogram.

Linear(no bias) on shifted/scaled input -> BatchNorm -> tanh -> 3-layer unidirectional LSTM (dropout 0.4)
-> concat(LSTM input, LSTM output) -> Linear(no bias) + BatchNorm + ReLU -> Linear(no bias) + BatchNorm to
the STFT bins -> learnable output scale and bias -> ReLU -> times the mixture magnitude. The reference's
initial values are kept: input shift 0 and scale 1, output scale 1 and bias 1, mix logits ``randn``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

LSTM_LAYERS = 3
LSTM_DROPOUT = 0.4
HIDDEN = 512


class MaskHead(nn.Module):
    """Takes ``n_inputs`` hidden states per frame: one (a single-layer probe) or layers 1..L, which it
    mixes with learnable softmax weights."""

    def __init__(self, n_features: int, n_bins: int, n_inputs: int, hidden: int = HIDDEN) -> None:
        super().__init__()
        self.mix = nn.Parameter(torch.randn(n_inputs)) if n_inputs > 1 else None
        self.input_shift = nn.Parameter(torch.zeros(n_features))
        self.input_scale = nn.Parameter(torch.ones(n_features))
        self.fc1 = nn.Linear(n_features, hidden, bias=False)
        self.bn1 = nn.BatchNorm1d(hidden)
        self.lstm = nn.LSTM(hidden, hidden, num_layers=LSTM_LAYERS, dropout=LSTM_DROPOUT)
        self.fc2 = nn.Linear(2 * hidden, hidden, bias=False)
        self.bn2 = nn.BatchNorm1d(hidden)
        self.fc3 = nn.Linear(hidden, n_bins, bias=False)
        self.bn3 = nn.BatchNorm1d(n_bins)
        self.output_scale = nn.Parameter(torch.ones(n_bins))
        self.output_bias = nn.Parameter(torch.ones(n_bins))

    def select(self, features: torch.Tensor) -> torch.Tensor:
        """[frames, batch, n_inputs, D] -> [frames, batch, D]: the one layer or the weighted sum."""
        if self.mix is None:
            return features[:, :, 0]
        return torch.einsum("l,tbld->tbd", torch.softmax(self.mix, 0), features)

    def forward(self, features: torch.Tensor, mixture: torch.Tensor) -> torch.Tensor:
        """features [frames, batch, n_inputs, D], mixture magnitude [frames, batch, bins] -> target magnitude."""
        frames, batch = mixture.shape[:2]
        x = (self.select(features) + self.input_shift) * self.input_scale
        x = torch.tanh(self.bn1(self.fc1(x.reshape(frames * batch, -1)))).reshape(frames, batch, -1)
        x = torch.cat([x, self.lstm(x)[0]], -1).reshape(frames * batch, -1)
        x = F.relu(self.bn2(self.fc2(x)))
        x = self.bn3(self.fc3(x)).reshape(frames, batch, -1)
        return F.relu(x * self.output_scale + self.output_bias) * mixture
