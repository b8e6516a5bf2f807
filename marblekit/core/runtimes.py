"""The CPU runtimes that run an exported graph, one code path each, chosen by the model config's ``runtime``.

Both the in-process engine (``extract --engine local``) and the Triton Python-backend runner open sessions
here, so a served model runs the same way in both. The runner cannot import marblekit: ``marblekit export``
copies this file beside ``model.py``. It therefore imports nothing from marblekit, and each runtime's package
only when a session of it is opened.

- ``onnxruntime``: the CPU execution provider; fp32, fp16 and INT8 (QDQ or dynamic) graphs.
- ``openvino``: the CPU plugin, reading the ONNX file itself; fp32 and INT8 (QDQ) graphs, and BF16 inference
  of the fp32 graph (``inference_precision="bf16"``) on CPUs with AVX-512 BF16 or AMX.
"""

from __future__ import annotations

RUNTIMES = ("onnxruntime", "openvino")
#: the ``inference_precision`` values: the graph's own types, or BF16 compute of an fp32 graph (openvino only)
INFERENCE_PRECISIONS = ("f32", "bf16")
INPUT = "waveform"


class OnnxRuntimeSession:
    def __init__(self, path: str, threads: int, providers: list[str]):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(path, options, providers=providers)
        self.output_names = [output.name for output in self.session.get_outputs()]

    def run(self, names, waveform):
        return self.session.run(list(names), {INPUT: waveform})


class OpenVinoSession:
    """One compiled model and one infer request (the callers run one call at a time); the latency hint keeps
    a call on every core instead of splitting the cores into streams."""

    def __init__(self, path: str, threads: int, inference_precision: str):
        import openvino as ov

        config = {"INFERENCE_PRECISION_HINT": inference_precision, "PERFORMANCE_HINT": "LATENCY"}
        if threads:  # a share of the cores: unpinned, or every instance's threads would be pinned to the first ones
            config |= {"INFERENCE_NUM_THREADS": threads, "ENABLE_CPU_PINNING": False}
        core = ov.Core()
        model = core.read_model(path)
        # the graph's own output names; a compiled model's ports also carry the names of fused inner tensors
        self.output_names = [output.get_any_name() for output in model.outputs]
        self.request = core.compile_model(model, "CPU", config).create_infer_request()

    def run(self, names, waveform):
        self.request.infer({INPUT: waveform})
        return [self.request.get_tensor(name).data.copy() for name in names]  # the request reuses its buffers


def open_session(path: str, runtime: str = "onnxruntime", threads: int = 0, inference_precision: str = "f32",
                 providers: list[str] | None = None):
    """A session of ``runtime`` over the ONNX file at ``path``: ``.output_names`` and
    ``.run(names, waveform [B, N] float32) -> list of arrays``. ``threads`` 0 = the runtime's default (all cores);
    ``providers`` are onnxruntime's execution providers (default the CPU one)."""
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    if inference_precision not in INFERENCE_PRECISIONS:
        raise ValueError(f"inference_precision must be one of {', '.join(INFERENCE_PRECISIONS)}, "
                         f"got {inference_precision!r}")
    if runtime == "openvino":
        return OpenVinoSession(path, threads, inference_precision)
    if inference_precision != "f32":
        raise ValueError(f"onnxruntime runs a graph in its own types; inference_precision {inference_precision!r} "
                         f"needs runtime 'openvino'")
    return OnnxRuntimeSession(path, threads, providers or ["CPUExecutionProvider"])
