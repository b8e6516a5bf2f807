"""INT8 variants of an exported fp32 graph, by onnxruntime's quantisation: the CPU's 8-bit dot-product units
(AVX-512 VNNI) run them several times faster than fp32 (``marblekit bench backbone``)."""

from __future__ import annotations

from pathlib import Path


def dynamic_int8(fp32: Path, out: Path) -> Path:
    """``fp32`` with every MatMul's weights in signed 8 bits and its activations quantised per call
    (onnxruntime's dynamic quantisation, no calibration); inputs and outputs stay fp32."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(fp32), str(out), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"])
    return out
