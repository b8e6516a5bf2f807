"""TensorRT FP16 engine from the mixed-precision ONNX graph (GPU only).

TensorRT 10.12+ deprecates weak typing and TensorRT 11 builds only strongly typed networks, so precision
is carried by the graph: the fp16 ONNX export already keeps LayerNorm / GroupNorm in FP32 and the engine is
built strongly typed from it. One optimisation profile spans batch 1..max and 1 s..30 s of audio.
"""

from __future__ import annotations

from pathlib import Path

from marblekit.core.backbones import BackboneSpec
from marblekit.core.served_model import INPUT

from .triton_config import ServingShape


class TensorRTUnavailable(RuntimeError):
    """Raised where TensorRT or a CUDA GPU is missing; the message says which."""


def gpu_unavailable_reason() -> str | None:
    """None when a TensorRT build can run here, else why not (used by the CLI and to skip tests)."""
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return "TensorRT is not installed (pip install tensorrt; needs an NVIDIA GPU and driver)"
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if not torch.cuda.is_available():
        return "no CUDA GPU is visible"
    return None


def build_engine(onnx_path: Path, plan_path: Path, spec: BackboneSpec, shape: ServingShape = ServingShape(),
                 workspace_bytes: int = 4 << 30) -> Path:
    """Parse ``onnx_path`` and serialise a strongly typed engine with one dynamic profile to ``plan_path``."""
    reason = gpu_unavailable_reason()
    if reason:
        raise TensorRTUnavailable(reason)
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"{onnx_path}: TensorRT could not parse the graph: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    profile = builder.create_optimization_profile()
    profile.set_shape(INPUT,
                      (1, shape.samples(spec, shape.min_seconds)),
                      (shape.gpu_max_batch // 2, shape.samples(spec, shape.opt_seconds)),
                      (shape.gpu_max_batch, shape.samples(spec, shape.max_seconds)))
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"{onnx_path}: TensorRT engine build failed (see the log above)")
    plan_path.write_bytes(bytes(serialized))
    return plan_path
