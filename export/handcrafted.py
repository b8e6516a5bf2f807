"""The weight-free ``handcrafted`` backbone: classic MIR features as four "layers" of one graph.

Layers (each 128-d, 50 frames/s at 16 kHz):
  0 log-mel (128 bands, 0-8 kHz), 1 MFCC (orthonormal DCT-II of the log-mel, all 128 coefficients),
  2 log semitone spectrogram (MIDI pitches 0-127), 3 chroma (12 pitch classes, max-normalised,
  zero-padded to 128).
The STFT is a strided convolution with fixed DFT kernels so that the graph exports to ONNX and TensorRT
with nothing but Conv/MatMul/elementwise ops, exactly like the learned backbones.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from marblekit.core.backbones import BackboneSpec

from .spectral import dft_kernels

N_FFT = 2048
LOG_FLOOR = 1e-8


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + hz / 700.0)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    """Triangular HTK-scale filters [n_mels, n_fft // 2 + 1], each normalised to unit area."""
    bin_hz = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    edges_mel = np.linspace(0.0, _hz_to_mel(np.array(sample_rate / 2)), n_mels + 2)
    edges_hz = 700.0 * (10 ** (edges_mel / 2595.0) - 1.0)
    lower, centre, upper = edges_hz[:-2, None], edges_hz[1:-1, None], edges_hz[2:, None]
    rising = (bin_hz[None] - lower) / (centre - lower)
    falling = (upper - bin_hz[None]) / (upper - centre)
    filters = np.maximum(0.0, np.minimum(rising, falling))
    return filters / np.maximum(filters.sum(axis=1, keepdims=True), 1e-12)


def semitone_filterbank(sample_rate: int, n_fft: int) -> np.ndarray:
    """Triangular filters [128, n_fft // 2 + 1] on the MIDI axis, one per pitch 0..127."""
    bin_hz = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)[1:]
    bin_midi = 69.0 + 12.0 * np.log2(bin_hz / 440.0)
    weights = np.maximum(0.0, 1.0 - np.abs(bin_midi[None, :] - np.arange(128)[:, None]))
    return np.concatenate([np.zeros((128, 1)), weights], axis=1)


def dct_matrix(n: int) -> np.ndarray:
    """Orthonormal DCT-II matrix [n, n] (row k = coefficient k), as scipy.fft.dct(norm='ortho')."""
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    basis = np.cos(np.pi * k * (2 * i + 1) / (2 * n)) * np.sqrt(2.0 / n)
    basis[0] /= np.sqrt(2.0)
    return basis


class HandcraftedFeatures(nn.Module):
    """``forward(waveform [B, N])`` -> ``[B, 4, T, 128]`` with ``T = N // hop + 1``."""

    def __init__(self, spec: BackboneSpec):
        super().__init__()
        self.hop = spec.hop
        self.dim = spec.dim
        self.register_buffer("dft", torch.tensor(dft_kernels(N_FFT), dtype=torch.float32))
        self.register_buffer("mel", torch.tensor(mel_filterbank(spec.sample_rate, N_FFT, spec.dim).T,
                                                 dtype=torch.float32))
        self.register_buffer("dct", torch.tensor(dct_matrix(spec.dim).T, dtype=torch.float32))
        semitone = semitone_filterbank(spec.sample_rate, N_FFT)
        self.register_buffer("semitone", torch.tensor(semitone.T, dtype=torch.float32))
        fold = np.zeros((128, spec.dim))
        fold[np.arange(128), np.arange(128) % 12] = 1.0
        self.register_buffer("chroma_fold", torch.tensor(fold, dtype=torch.float32))
        self.eval()

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        padded = nn.functional.pad(waveform[:, None, :], (N_FFT // 2, N_FFT // 2))
        spectrum = nn.functional.conv1d(padded, self.dft, stride=self.hop).transpose(1, 2)
        real, imag = spectrum.chunk(2, dim=-1)
        power = real * real + imag * imag
        log_mel = torch.log(power @ self.mel + LOG_FLOOR)
        mfcc = log_mel @ self.dct
        pitch_power = power @ self.semitone
        log_semitone = torch.log(pitch_power + LOG_FLOOR)
        chroma = pitch_power @ self.chroma_fold
        chroma = chroma / (chroma.amax(dim=-1, keepdim=True) + LOG_FLOOR)
        return torch.stack([log_mel, mfcc, log_semitone, chroma], dim=1)
