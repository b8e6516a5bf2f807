"""Export pipeline: load -> serving graph -> ONNX -> Triton configs (-> TensorRT) -> parity gate."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from marblekit.core.backbones import BackboneSpec, plugin_for

from .loading import load_encoder
from .onnx_export import export_onnx, serving_graph
from .parity import ParityResult, compare_with_onnxruntime
from .quantize import dynamic_int8
from .repository import version_dir, write_model_configs
from .tensorrt import build_engine


@dataclass
class ExportReport:
    name: str
    model_dir: Path
    precision: str
    provenance: dict[str, object]
    seconds: float
    parity: list[ParityResult] = field(default_factory=list)
    plan: Path | None = None

    @property
    def parity_ok(self) -> bool:
        return all(result.ok for result in self.parity)

    def summary(self) -> str:
        lines = [f"exported {self.name} ({self.precision}, weights: {self.provenance['weights']}) "
                 f"to {self.model_dir} in {self.seconds:.1f} s"]
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
                 check_parity: bool = True) -> ExportReport:
    """Export ``spec`` into ``repo`` and, unless told not to, gate it on onnxruntime-vs-PyTorch parity."""
    started = time.perf_counter()
    name = name or default_name(spec, precision)
    encoder, provenance = load_encoder(spec, checkpoint, random_init, seed)
    provenance_dict = dataclasses.asdict(provenance) | {"random_init": provenance.random_init}
    onnx_path = version_dir(repo, name) / "model.onnx"
    traced = export_onnx(serving_graph(encoder, spec, precision),
                         onnx_path.with_name("model.fp32.onnx") if precision == "int8" else onnx_path,
                         max(spec.sample_rate, 2 * spec.receptive_field))
    if precision == "int8":
        dynamic_int8(traced, onnx_path)
        traced.unlink()
    model_dir = write_model_configs(repo, name, spec, precision, provenance_dict)
    report = ExportReport(name, model_dir, precision, provenance_dict, 0.0)
    if check_parity:
        report.parity = check_parity_of(encoder, onnx_path, spec, precision)
    if tensorrt:
        report.plan = build_engine(onnx_path, onnx_path.with_name("model.plan"), spec)
    report.seconds = time.perf_counter() - started
    return report


def check_parity_of(encoder: torch.nn.Module, onnx_path: Path, spec: BackboneSpec,
                    precision: str) -> list[ParityResult]:
    """Two batch sizes x two lengths (1.5 and 2.25 s, or receptive fields where those are longer) of seeded
    noise-like audio, against the fp32 PyTorch reference."""
    rng = np.random.default_rng(1234)
    unit = max(spec.sample_rate, spec.receptive_field)  # a second, or what the backbone needs for one frame
    shapes = [(1, int(unit * 1.5)), (3, int(unit * 2.25))]
    inputs = [(0.1 * rng.standard_normal(shape)).astype(np.float32) for shape in shapes]
    plugin = plugin_for(spec)
    return compare_with_onnxruntime(encoder, spec, onnx_path, inputs, precision, plugin.parity_rtol if plugin else 0.0)
