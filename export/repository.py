"""Writes one model directory of a Triton model repository.

Layout::

    <repo>/<name>/config.pbtxt           embedded CPU Triton (Python backend + onnxruntime)
    <repo>/<name>/configs/*.pbtxt        NGC Triton on GPUs (--model-config-name gpu-onnxruntime, and
                                         gpu-tensorrt for fp16 exports)
    <repo>/<name>/1/model.onnx           the graph; model.plan beside it after a TensorRT build
    <repo>/<name>/1/model.py             the Python-backend runner
    <repo>/<name>/1/marblekit_runtimes.py  its runtimes (``marblekit.core.runtimes``, which it cannot import)
    <repo>/<name>/marblekit.json         spec, provenance and checksums, for humans and the extractor
"""

from __future__ import annotations

import json
import shutil
from importlib import resources
from pathlib import Path

from tritonclient.grpc import model_config_pb2 as mc

from marblekit import __version__
from marblekit.core.backbones import BackboneSpec
from marblekit.core.checksums import sha256_of
from marblekit.core.served_model import CONFIG_FILE, config_to_text, model_parameters

from . import triton_config
from .runtime_choice import RuntimeChoice
from .triton_config import ServingShape

OUTPUT_TYPES = {"fp32": mc.TYPE_FP32, "fp16": mc.TYPE_FP16, "bf16": mc.TYPE_FP32, "int8": mc.TYPE_FP32}
VERSION = "1"


def version_dir(repo: Path, name: str) -> Path:
    return repo / name / VERSION


def write_model_configs(repo: Path, name: str, spec: BackboneSpec, precision: str, provenance: dict[str, object],
                        runtime: RuntimeChoice, details: dict[str, object] | None = None,
                        shape: ServingShape = ServingShape()) -> Path:
    """Write every config and the runner around an already exported ``<repo>/<name>/1/model.onnx``;
    ``details`` (how it was made) go into ``marblekit.json``."""
    model_dir = repo / name
    onnx_path = version_dir(repo, name) / "model.onnx"
    onnx_sha256 = sha256_of(onnx_path)
    metadata = model_parameters(spec, precision, provenance, onnx_sha256, shape.samples(spec, shape.min_seconds),
                                shape.samples(spec, shape.max_seconds))
    output_type = OUTPUT_TYPES[precision]
    configs = {
        model_dir / CONFIG_FILE: triton_config.embedded_config(
            name, spec, output_type, metadata, shape, runtime.runtime, runtime.inference_precision),
        model_dir / "configs" / "gpu-onnxruntime.pbtxt": triton_config.gpu_onnxruntime_config(
            name, spec, output_type, metadata, shape, cache_dir="/models/.trt_cache"),
    }
    if precision == "fp16":  # TensorRT engines are built from the fp16 graph only
        configs[model_dir / "configs" / "gpu-tensorrt.pbtxt"] = triton_config.gpu_tensorrt_config(
            name, spec, metadata, shape)
    for path, config in configs.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(config_to_text(config))
    shutil.copyfile(str(resources.files("marblekit.serving").joinpath("triton_python_model.py")),
                    version_dir(repo, name) / "model.py")
    shutil.copyfile(str(resources.files("marblekit.core").joinpath("runtimes.py")),
                    version_dir(repo, name) / "marblekit_runtimes.py")
    summary = {"name": name, "marblekit_version": __version__, "precision": precision,
               "spec": spec.describe(), "provenance": provenance, "onnx_sha256": onnx_sha256} | (details or {})
    (model_dir / "marblekit.json").write_text(json.dumps(summary, indent=2) + "\n")
    return model_dir
