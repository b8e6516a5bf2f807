"""Triton model configurations, built as ``model_config.proto`` messages so they always parse.

Three configs per model, all over the same graph and I/O:
  ``config.pbtxt``                 the embedded CPU default: Python backend running onnxruntime;
  ``configs/gpu-onnxruntime.pbtxt`` the NGC container: ONNX Runtime with the TensorRT EP in FP16;
  ``configs/gpu-tensorrt.pbtxt``    the NGC container: a native TensorRT plan (``model.plan``; fp16 exports).
Triton picks one of ``configs/`` with ``--model-config-name``.
"""

from __future__ import annotations

from dataclasses import dataclass

from tritonclient.grpc import model_config_pb2 as mc

from marblekit.core.backbones import BackboneSpec
from marblekit.core.served_model import FRAMES, INPUT, POOLED


@dataclass(frozen=True)
class ServingShape:
    """The envelope of inputs a served model accepts, in seconds of audio and windows per batch."""

    min_seconds: float = 1.0
    opt_seconds: float = 5.0
    max_seconds: float = 30.0
    cpu_max_batch: int = 16
    #: windows per onnxruntime call in the CPU runner: MERT-95M on 5 s windows ran 8.3 audio-s/s in calls of 4
    #: and 8, 6.3 in calls of 16 (2-core VM), as activations leave the caches
    cpu_call_windows: int = 8
    #: CPU model instances (each its own runtime session) and each one's intra-op threads (0: all cores)
    cpu_instances: int = 1
    cpu_threads: int = 0
    gpu_max_batch: int = 32

    def samples(self, spec: BackboneSpec, seconds: float) -> int:
        return max(int(round(seconds * spec.sample_rate)), spec.receptive_field)


def _io(spec: BackboneSpec, output_type: int) -> dict:
    return dict(
        input=[mc.ModelInput(name=INPUT, data_type=mc.TYPE_FP32, dims=[-1])],
        output=[mc.ModelOutput(name=FRAMES, data_type=output_type,
                               dims=[-1, spec.frame_columns.width]),
                mc.ModelOutput(name=POOLED, data_type=output_type, dims=[spec.columns.width])],
    )


def _parameters(values: dict[str, object]) -> dict[str, mc.ModelParameter]:
    return {key: mc.ModelParameter(string_value=str(value)) for key, value in values.items()}


def _batching(max_queue_delay_us: int, max_queue_size: int) -> mc.ModelDynamicBatching:
    return mc.ModelDynamicBatching(max_queue_delay_microseconds=max_queue_delay_us,
                                   default_queue_policy=mc.ModelQueuePolicy(max_queue_size=max_queue_size))


def _warmup(spec: BackboneSpec, shape: ServingShape, batch: int) -> list[mc.ModelWarmup]:
    data = mc.ModelWarmup.Input(data_type=mc.TYPE_FP32, dims=[shape.samples(spec, shape.opt_seconds)],
                                random_data=True)
    return [mc.ModelWarmup(name=f"bs{batch}", batch_size=batch, inputs={INPUT: data})]


def embedded_config(name: str, spec: BackboneSpec, output_type: int, metadata: dict[str, object], shape: ServingShape,
                    runtime: str = "onnxruntime", inference_precision: str = "f32") -> mc.ModelConfig:
    """CPU Triton (the pytriton wheel's server has only the Python backend): ``runtime`` inside model.py."""
    return mc.ModelConfig(
        name=name, backend="python", max_batch_size=shape.cpu_max_batch, **_io(spec, output_type),
        instance_group=[mc.ModelInstanceGroup(kind=mc.ModelInstanceGroup.KIND_CPU, count=shape.cpu_instances)],
        dynamic_batching=_batching(2000, 4 * shape.cpu_max_batch),
        parameters=_parameters({**metadata, "onnx_file": "model.onnx", "runtime": runtime,
                                "inference_precision": inference_precision, "intra_op_threads": shape.cpu_threads,
                                "max_call_windows": shape.cpu_call_windows}),
    )


def gpu_onnxruntime_config(name: str, spec: BackboneSpec, output_type: int, metadata: dict[str, object],
                           shape: ServingShape, cache_dir: str) -> mc.ModelConfig:
    """ONNX Runtime backend with the TensorRT EP in FP16, an engine cache and explicit profiles."""
    profile = {
        "trt_profile_min_shapes": f"{INPUT}:1x{shape.samples(spec, shape.min_seconds)}",
        "trt_profile_opt_shapes": f"{INPUT}:{shape.gpu_max_batch // 2}x{shape.samples(spec, shape.opt_seconds)}",
        "trt_profile_max_shapes": f"{INPUT}:{shape.gpu_max_batch}x{shape.samples(spec, shape.max_seconds)}",
    }
    tensorrt = mc.ModelOptimizationPolicy.ExecutionAccelerators.Accelerator(
        name="tensorrt",
        parameters={"precision_mode": "FP16", "max_workspace_size_bytes": str(4 << 30),
                    "trt_engine_cache_enable": "1", "trt_engine_cache_path": f"{cache_dir}/{name}",
                    "trt_layer_norm_fp32_fallback": "1", **profile},
    )
    return mc.ModelConfig(
        name=name, platform="onnxruntime_onnx", max_batch_size=shape.gpu_max_batch, **_io(spec, output_type),
        instance_group=[mc.ModelInstanceGroup(kind=mc.ModelInstanceGroup.KIND_GPU, count=2)],
        dynamic_batching=_batching(3000, 4 * shape.gpu_max_batch),
        optimization=mc.ModelOptimizationPolicy(
            execution_accelerators=mc.ModelOptimizationPolicy.ExecutionAccelerators(
                gpu_execution_accelerator=[tensorrt])),
        model_warmup=_warmup(spec, shape, shape.gpu_max_batch // 2),
        parameters=_parameters(metadata),
    )


def gpu_tensorrt_config(name: str, spec: BackboneSpec, metadata: dict[str, object],
                        shape: ServingShape) -> mc.ModelConfig:
    """A native TensorRT plan built by ``marblekit export --format tensorrt`` on the serving GPU."""
    return mc.ModelConfig(
        name=name, platform="tensorrt_plan", max_batch_size=shape.gpu_max_batch, **_io(spec, mc.TYPE_FP16),
        default_model_filename="model.plan",
        instance_group=[mc.ModelInstanceGroup(kind=mc.ModelInstanceGroup.KIND_GPU, count=2, profile=["0"])],
        dynamic_batching=_batching(3000, 4 * shape.gpu_max_batch),
        model_warmup=_warmup(spec, shape, shape.gpu_max_batch // 2),
        parameters=_parameters(metadata),
    )
