"""Parity gates between an exported graph and the fp32 PyTorch encoder it came from.

fp32: max abs difference over every layer <= 1e-4, or, for a backbone whose plugin declares ``parity_rtol``
(a front end that rounds to float16, where the two runtimes' float32 sums flip a rounding now and then),
every layer's max abs difference within that share of the layer's largest value. fp16: per-layer cosine
similarity >= 0.999 (bf16, the fp32 graph computed in BF16, too); int8: >= 0.99 (8-bit weights and activations
lose more; whether that costs probe scores is the export gate's question, not this one's). The exported graph
runs in the runtime chosen to serve it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from marblekit.core.backbones import BackboneSpec
from marblekit.core.layers import LayerColumns
from marblekit.core.runtimes import open_session
from marblekit.core.served_model import FRAMES, OUTPUTS, POOLED

from .architecture import ServingGraph

FP32_MAX_ABS = 1e-4
#: the smallest per-layer cosine similarity to the fp32 encoder a reduced-precision export may have
MIN_COSINE = {"fp16": 0.999, "bf16": 0.999, "int8": 0.99}


@dataclass(frozen=True)
class ParityResult:
    shape: tuple[int, int]
    precision: str
    max_abs: float
    min_cosine: float
    max_relative: float = 0.0  # the largest per-layer max |diff| / max |reference|
    rtol: float = 0.0

    @property
    def ok(self) -> bool:
        if self.precision == "fp32":
            return self.max_abs <= FP32_MAX_ABS or (self.rtol > 0 and self.max_relative <= self.rtol)
        return self.min_cosine >= MIN_COSINE[self.precision]

    def __str__(self) -> str:
        relative = f", per layer {self.max_relative:.2e} of its range (<= {self.rtol:g})" if self.rtol else ""
        gate = f"max|diff| {self.max_abs:.2e} (<= {FP32_MAX_ABS:g}){relative}" if self.precision == "fp32" else (
            f"min layer cosine {self.min_cosine:.6f} (>= {MIN_COSINE[self.precision]})")
        return f"{self.shape[0]}x{self.shape[1]} samples: {gate} {'ok' if self.ok else 'FAIL'}"


def per_layer_cosine(a: np.ndarray, b: np.ndarray, columns: LayerColumns) -> np.ndarray:
    """Cosine similarity per layer of two ``[..., C]`` arrays, each layer's columns flattened over batch and time."""
    cosines = []
    for left, right in zip(columns.split(a.astype(np.float64)), columns.split(b.astype(np.float64))):
        norms = np.linalg.norm(left) * np.linalg.norm(right)
        cosines.append((left * right).sum() / max(norms, 1e-30))
    return np.array(cosines)


def differences(reference: np.ndarray, candidate: np.ndarray, columns: LayerColumns) -> tuple[float, float, float]:
    """(max abs difference, smallest per-layer cosine, largest per-layer max abs difference relative to the
    layer's largest |value|) of two ``[..., C]`` arrays of the same shape."""
    if reference.shape != candidate.shape:
        raise AssertionError(f"exported graph returned shape {candidate.shape}, PyTorch {reference.shape}")
    error = np.abs(reference - candidate.astype(np.float32))
    relative = max(float(diff.max() / max(np.abs(ref).max(), 1e-30))
                   for diff, ref in zip(columns.split(error), columns.split(reference)))
    return float(error.max()), float(per_layer_cosine(reference, candidate, columns).min()), relative


def compare_served(encoder: torch.nn.Module, spec: BackboneSpec, onnx_path, inputs: list[np.ndarray],
                   precision: str, rtol: float = 0.0, runtime: str = "onnxruntime",
                   inference_precision: str = "f32") -> list[ParityResult]:
    """Run ``inputs`` through both and compare ``frames`` and ``pooled`` (worst of the two)."""
    session = open_session(str(onnx_path), runtime, 0, inference_precision)
    graph = ServingGraph(encoder, spec.frame_states)
    columns = {POOLED: spec.columns,
               FRAMES: spec.frame_columns}
    results = []
    for waveform in inputs:
        with torch.no_grad():
            reference = dict(zip(OUTPUTS, (output.numpy() for output in graph(torch.from_numpy(waveform)))))
        outputs = dict(zip(OUTPUTS, session.run(OUTPUTS, waveform)))
        diffs = [differences(reference[name], outputs[name], columns[name]) for name in OUTPUTS]
        results.append(ParityResult(waveform.shape, precision, max(d[0] for d in diffs), min(d[1] for d in diffs),
                                    max(d[2] for d in diffs), rtol))
    return results
