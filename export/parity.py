"""Parity gates between an exported graph and the fp32 PyTorch encoder it came from.

fp32: max abs difference over every layer <= 1e-4. fp16: per-layer cosine similarity >= 0.999.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnxruntime as ort
import torch

from marblekit.core.served_model import HIDDEN_STATES, INPUT, OUTPUTS, POOLED

FP32_MAX_ABS = 1e-4
FP16_MIN_COSINE = 0.999


@dataclass(frozen=True)
class ParityResult:
    shape: tuple[int, int]
    precision: str
    max_abs: float
    min_cosine: float

    @property
    def ok(self) -> bool:
        if self.precision == "fp32":
            return self.max_abs <= FP32_MAX_ABS
        return self.min_cosine >= FP16_MIN_COSINE

    def __str__(self) -> str:
        gate = f"max|diff| {self.max_abs:.2e} (<= {FP32_MAX_ABS:g})" if self.precision == "fp32" else (
            f"min layer cosine {self.min_cosine:.6f} (>= {FP16_MIN_COSINE})")
        return f"{self.shape[0]}x{self.shape[1]} samples: {gate} {'ok' if self.ok else 'FAIL'}"


def per_layer_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity per layer of two [B, L, ...] arrays, each layer flattened over batch and time."""
    a = np.moveaxis(a.astype(np.float64), 1, 0).reshape(a.shape[1], -1)
    b = np.moveaxis(b.astype(np.float64), 1, 0).reshape(b.shape[1], -1)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return (a * b).sum(axis=1) / np.maximum(norms, 1e-30)


def differences(reference: np.ndarray, candidate: np.ndarray) -> tuple[float, float]:
    """(max abs difference, smallest per-layer cosine) of two [B, L, ...] arrays of the same shape."""
    if reference.shape != candidate.shape:
        raise AssertionError(f"exported graph returned shape {candidate.shape}, PyTorch {reference.shape}")
    return (float(np.abs(reference - candidate.astype(np.float32)).max()),
            float(per_layer_cosine(reference, candidate).min()))


def compare_with_onnxruntime(encoder: torch.nn.Module, onnx_path, inputs: list[np.ndarray],
                             precision: str) -> list[ParityResult]:
    """Run ``inputs`` through both and compare ``hidden_states`` and ``pooled`` (worst of the two)."""
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    results = []
    for waveform in inputs:
        with torch.no_grad():
            hidden = encoder(torch.from_numpy(waveform)).numpy()
        reference = {HIDDEN_STATES: hidden, POOLED: hidden.mean(axis=2)}
        outputs = dict(zip(OUTPUTS, session.run(list(OUTPUTS), {INPUT: waveform})))
        diffs = [differences(reference[name], outputs[name]) for name in reference]
        results.append(ParityResult(waveform.shape, precision, max(d[0] for d in diffs),
                                    min(d[1] for d in diffs)))
    return results
