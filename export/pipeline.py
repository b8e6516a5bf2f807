"""Export pipeline: load -> serving graph -> ONNX (-> INT8) -> CPU runtime choice -> Triton configs (-> TensorRT)
-> parity gate."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from marblekit.core.backbones import BackboneSpec, plugin_for

from .calibration import Calibration
from .loading import load_encoder
from .onnx_export import export_onnx, serving_graph
from .parity import ParityResult, compare_served
from .quantize import dynamic_int8, static_int8
from .repository import version_dir, write_model_configs
from .runtime_choice import RuntimeChoice, choose_runtime
from .tensorrt import build_engine
from .triton_config import ServingShape


@dataclass
class ExportReport:
    name: str
    model_dir: Path
    precision: str
    provenance: dict[str, object]
    seconds: float
    runtime: RuntimeChoice
    quantization: str | None = None
    parity: list[ParityResult] = field(default_factory=list)
    plan: Path | None = None

    @property
    def parity_ok(self) -> bool:
        return all(result.ok for result in self.parity)

    def summary(self) -> str:
        lines = [f"exported {self.name} ({self.precision}, weights: {self.provenance['weights']}) "
                 f"to {self.model_dir} in {self.seconds:.1f} s", f"  {self.runtime}"]
        if self.quantization:
            lines.append(f"  quantisation: {self.quantization}")
        lines += [f"  parity {result}" for result in self.parity]
        if self.plan:
            lines.append(f"  TensorRT plan: {self.plan}")
        if self.parity and not self.parity_ok:
            lines.append("  PARITY FAILED: the exported graph does not match PyTorch")
        return "\n".join(lines)


def default_name(spec: BackboneSpec, precision: str) -> str:
    return spec.name if precision == "fp32" else f"{spec.name}-{precision}"


def export_model(spec: BackboneSpec, repo: Path, name: str | None = None, checkpoint: Path | None = None,
                 random_init: bool = False, seed: int = 0, precision: str = "fp32", tensorrt: bool = False,
                 check_parity: bool = True, runtime: str = "auto", calibration: Calibration | None = None,
                 shape: ServingShape = ServingShape()) -> ExportReport:
    """Export ``spec`` into ``repo`` and, unless told not to, gate it on exported-vs-PyTorch parity in the
    runtime that will serve it. ``calibration``: windows for a static INT8 export (dynamic without them)."""
    started = time.perf_counter()
    name = name or default_name(spec, precision)
    encoder, provenance = load_encoder(spec, checkpoint, random_init, seed)
    provenance_dict = dataclasses.asdict(provenance) | {"random_init": provenance.random_init}
    onnx_path = version_dir(repo, name) / "model.onnx"
    traced = export_onnx(serving_graph(encoder, spec, precision),
                         onnx_path.with_name("model.fp32.onnx") if precision == "int8" else onnx_path,
                         max(spec.sample_rate, 2 * spec.receptive_field))
    quantization = None
    if precision == "int8":
        if calibration:
            static_int8(traced, onnx_path, calibration.fit)
            quantization = (f"static (NNCF, QDQ), ranges of {len(calibration.fit)} calibration windows; parity on "
                            f"{len(calibration.held_out)} held-out ones")
        else:
            dynamic_int8(traced, onnx_path)
            quantization = "dynamic (MatMul), no calibration set"
        traced.unlink()
    choice = choose_runtime(onnx_path, spec, precision, runtime, shape.samples(spec, shape.opt_seconds))
    details = {"runtime": choice.describe()} | ({"quantization": quantization} if quantization else {})
    model_dir = write_model_configs(repo, name, spec, precision, provenance_dict, choice, details, shape)
    report = ExportReport(name, model_dir, precision, provenance_dict, 0.0, choice, quantization)
    if check_parity:
        held_out = calibration if precision == "int8" else None
        report.parity = check_parity_of(encoder, onnx_path, spec, precision, choice, held_out)
    if tensorrt:
        report.plan = build_engine(onnx_path, onnx_path.with_name("model.plan"), spec)
    report.seconds = time.perf_counter() - started
    return report


def check_parity_of(encoder: torch.nn.Module, onnx_path: Path, spec: BackboneSpec, precision: str,
                    choice: RuntimeChoice, calibration: Calibration | None = None) -> list[ParityResult]:
    """Two batch sizes x two lengths (1.5 and 2.25 s, or receptive fields where those are longer) of seeded
    noise-like audio (a static INT8 export: of its held-out calibration windows), against the fp32 PyTorch
    reference."""
    unit = max(spec.sample_rate, spec.receptive_field)  # a second, or what the backbone needs for one frame
    if calibration:
        inputs = calibration.parity_inputs(unit)
    else:
        rng = np.random.default_rng(1234)
        inputs = [(0.1 * rng.standard_normal(shape)).astype(np.float32)
                  for shape in [(1, int(unit * 1.5)), (3, int(unit * 2.25))]]
    plugin = plugin_for(spec)
    return compare_served(encoder, spec, onnx_path, inputs, precision, plugin.parity_rtol if plugin else 0.0,
                          choice.runtime, choice.inference_precision)
