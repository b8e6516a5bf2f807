"""INT8 variants of an exported fp32 graph, for the CPU's 8-bit dot-product units (AVX-512 VNNI).

Static (when a calibration set is given): NNCF's post-training quantisation of the ONNX graph into QDQ form
(mixed preset: symmetric 8-bit weights per channel, asymmetric activations; ranges from the calibration windows,
then fast bias correction; the transformer preset where the graph has attention), of MatMul, Conv and Gemm
only. Dynamic (no calibration
set): onnxruntime's, MatMul weights in 8 bits and activations quantised per call.

Measured on MERT-v1-95M (random init, 2-core AVX-512 VNNI/BF16 VM, 4 x 5 s windows, audio-s/s; frame-layer
cosine to fp32 on held-out music windows):
  fp32                                   onnxruntime 8.3, OpenVINO 8.7
  onnxruntime dynamic, MatMul            onnxruntime 13.1
  onnxruntime static QDQ, MatMul         onnxruntime 13.0, OpenVINO 13.6   (0.9994; does not pay over dynamic)
  onnxruntime static QDQ, MatMul + Conv  onnxruntime 19.5, OpenVINO 23.4   (0.94: the conv front end's errors
                                                                            add up, fails the 0.99 parity)
  NNCF static QDQ                        onnxruntime 10.2, OpenVINO 26.5   (0.993)
  BF16 compute of the fp32 graph         OpenVINO 16.8-17.2                 (1.000)
so static INT8 is NNCF's, served by the runtime measured fastest on it (``export.runtime_choice``).

Both leave a spectral front end in fp32: every node that feeds a ``Log`` (STFT convolutions, mel and semitone
filterbanks), and every node that reads what those compute (a quantised reader puts its 8-bit copy of the
tensor in front of the log path too). Linear 8-bit ranges cannot hold a power spectrum's dynamic range, which the
log then expands: handcrafted's log-mel came out with a cosine of -0.997 to fp32's with its front end quantised,
and its log-semitone layer with 0.31 while only its chroma fold (a reader of the semitone power) was.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import onnx

from marblekit.core.served_model import INPUT

#: the only ops whose inputs are quantised: the dot products the 8-bit units run. Reductions and divisions stay
#: fp32 (NNCF's default also quantised handcrafted's chroma max and division: silent frames came out 0 / 0)
QUANTISED_OPS = ("MatMul", "Conv", "Gemm")


def spectral_front_end(path: Path) -> list[str]:
    """The names of the nodes upstream of any ``Log`` node of the graph at ``path``, and of their readers."""
    graph = onnx.load(str(path), load_external_data=False).graph
    producer = {output: node for node in graph.node for output in node.output}
    pending = [name for node in graph.node if node.op_type == "Log" for name in node.input]
    upstream: set[str] = set()
    while pending:
        node = producer.get(pending.pop())
        if node is not None and node.name not in upstream:
            upstream.add(node.name)
            pending.extend(node.input)
    computed = {output for node in graph.node if node.name in upstream for output in node.output}
    readers = {node.name for node in graph.node if computed & set(node.input)}
    return sorted(upstream | readers)


def dynamic_int8(fp32: Path, out: Path) -> Path:
    """``fp32`` with every MatMul's weights in signed 8 bits and its activations quantised per call
    (onnxruntime's dynamic quantisation, no calibration), the spectral front end left out; inputs and outputs
    stay fp32."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _prepared(fp32, out.parent) as prepared:
        quantize_dynamic(str(prepared), str(out), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"],
                         nodes_to_exclude=spectral_front_end(prepared))
    return out


def static_int8(fp32: Path, out: Path, windows: Sequence[np.ndarray]) -> Path:
    """``fp32`` quantised by NNCF (see the module docstring) on the calibration ``windows`` ``[1, samples]``,
    the spectral front end left out; inputs and outputs stay fp32."""
    import nncf

    with _prepared(fp32, out.parent) as prepared:
        model = onnx.load(str(prepared))
        front_end = spectral_front_end(prepared)
    others = sorted({node.op_type for node in model.graph.node} - set(QUANTISED_OPS))
    with _quiet():
        quantized = nncf.quantize(
            model, nncf.Dataset(list(windows), lambda window: {INPUT: window}), subset_size=len(windows),
            preset=nncf.QuantizationPreset.MIXED,
            model_type=nncf.ModelType.TRANSFORMER if any(n.op_type == "Softmax" for n in model.graph.node) else None,
            ignored_scope=nncf.IgnoredScope(names=front_end, types=others, validate=False))
    onnx.save(quantized, str(out))
    return out


@contextlib.contextmanager
def _prepared(fp32: Path, scratch_parent: Path) -> Iterator[Path]:
    """``fp32`` after onnxruntime's quantisation pre-processing (shape inference, graph optimisation: constants
    become initializers, which NNCF needs), in a scratch folder removed afterwards."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(dir=scratch_parent) as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        yield prepared


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """NNCF's own log at warnings only (its INFO lines list every ignored node)."""
    from nncf.common.logging.logger import nncf_logger

    level = nncf_logger.level
    nncf_logger.setLevel("WARNING")
    try:
        yield
    finally:
        nncf_logger.setLevel(level)
