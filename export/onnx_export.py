"""ONNX export of a serving graph, in fp32 or mixed fp16, with both axes of ``waveform`` dynamic. The int8 and
bf16 variants start from the fp32 graph: int8 is quantised after export (``export.quantize``), bf16 is the fp32
graph computed in BF16 by the runtime (``export.runtime_choice``)."""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import torch
from torch import nn

from marblekit.core.backbones import BackboneSpec
from marblekit.core.served_model import FRAMES, INPUT, OUTPUTS, POOLED

from .architecture import ServingGraph
from .handcrafted import HandcraftedFeatures

OPSET = 17  # LayerNormalization stays one op (TensorRT keeps it out of FP16 overflow trouble)
PRECISIONS = ("fp32", "fp16", "bf16", "int8")
#: Modules whose statistics overflow or lose precision in FP16; they run in FP32 inside the fp16 graph.
FP32_MODULES = (nn.LayerNorm, nn.GroupNorm)


class _Fp16Input(nn.Module):
    """Accepts the float32 waveform the config declares and casts it for the half-precision encoder."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.encoder(waveform.half())


def mixed_fp16(encoder: nn.Module) -> nn.Module:
    """A half-precision copy of ``encoder`` whose normalisation layers compute in FP32.

    The handcrafted DSP graph stays FP32 inside (its power spectrum exceeds the FP16 range); only its
    outputs are cast.
    """
    if isinstance(encoder, HandcraftedFeatures):
        return encoder
    half = copy.deepcopy(encoder).half()
    for module in half.modules():
        if isinstance(module, FP32_MODULES):
            module.float()
            module.register_forward_pre_hook(lambda _, args: tuple(a.float() for a in args))
            module.register_forward_hook(lambda _, __, output: output.half())
    return _Fp16Input(half)


def serving_graph(encoder: nn.Module, spec: BackboneSpec, precision: str) -> ServingGraph:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "fp16":
        return ServingGraph(encoder, spec.frame_states, torch.float32)
    return ServingGraph(mixed_fp16(encoder), spec.frame_states, torch.float16)


def export_onnx(graph: ServingGraph, path: Path, example_samples: int = 16000) -> Path:
    """Trace ``graph`` to ``path`` (legacy exporter: weight norm already folded, one LayerNormalization op each)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.randn(2, example_samples)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            graph, (example,), str(path), dynamo=False, opset_version=OPSET,
            input_names=[INPUT], output_names=list(OUTPUTS),
            dynamic_axes={INPUT: {0: "batch", 1: "samples"},
                          FRAMES: {0: "batch", 1: "frames"}, POOLED: {0: "batch"}},
        )
    return path
