"""Which CPU runtime serves an exported graph: picked per model by measuring the candidates on it.

The candidates follow the precision: fp32 and int8 graphs run in onnxruntime and OpenVINO, BF16 compute only
in OpenVINO (onnxruntime's CPU provider has no BF16 kernels on x86), fp16 graphs (for GPUs) in onnxruntime.
``auto`` times each candidate on a batch of windows of the model's typical length and keeps the fastest; a
candidate that cannot open the graph is left out with its reason. The choice and the figures go into the
model config (``runtime``, ``inference_precision``) and ``marblekit.json``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from marblekit.core.backbones import BackboneSpec
from marblekit.core.runtimes import RUNTIMES, open_session
from marblekit.core.served_model import OUTPUTS

CANDIDATES = {"fp32": RUNTIMES, "int8": RUNTIMES, "bf16": ("openvino",), "fp16": ("onnxruntime",)}
#: windows per timed call and timed calls per candidate (after one warm-up call)
TIMING_BATCH = 2
TIMING_CALLS = 2


def inference_precision(precision: str) -> str:
    """What the runtime computes in: BF16 for a bf16 export (its graph is fp32), else the graph's own types."""
    return "bf16" if precision == "bf16" else "f32"


@dataclass(frozen=True)
class RuntimeChoice:
    runtime: str
    inference_precision: str
    #: audio seconds per second each candidate ran at export, or why it could not run
    measured: dict[str, float | str] = field(default_factory=dict)

    def describe(self) -> dict[str, object]:
        return {"runtime": self.runtime, "inference_precision": self.inference_precision,
                "measured_audio_s_per_s": self.measured}

    def __str__(self) -> str:
        figures = ", ".join(f"{name} {value:.2f}" if isinstance(value, float) else f"{name}: {value}"
                            for name, value in self.measured.items())
        return f"runtime {self.runtime} ({self.inference_precision})" + (
            f"; measured audio-s/s: {figures}" if figures else "")


def candidates(precision: str, runtime: str) -> tuple[str, ...]:
    """The runtimes to consider for ``precision``: all that can run it (``auto``) or the one asked for."""
    allowed = CANDIDATES[precision]
    if runtime == "auto":
        return allowed
    if runtime not in allowed:
        raise ValueError(f"--runtime {runtime} cannot run a {precision} export on the CPU; "
                         f"expected one of {', '.join(allowed)} (or auto)")
    return (runtime,)


def throughput(onnx_path: Path, runtime: str, precision: str, samples: int, sample_rate: int) -> float:
    """Audio seconds per second of ``TIMING_CALLS`` calls of ``TIMING_BATCH`` seeded windows."""
    session = open_session(str(onnx_path), runtime, 0, inference_precision(precision))
    waveform = (0.1 * np.random.default_rng(0).standard_normal((TIMING_BATCH, samples))).astype(np.float32)
    session.run(OUTPUTS, waveform)
    started = time.perf_counter()
    for _ in range(TIMING_CALLS):
        session.run(OUTPUTS, waveform)
    return TIMING_CALLS * TIMING_BATCH * samples / sample_rate / (time.perf_counter() - started)


def choose_runtime(onnx_path: Path, spec: BackboneSpec, precision: str, runtime: str,
                   samples: int) -> RuntimeChoice:
    """The runtime for this graph: the one asked for, or under ``auto`` the fastest candidate measured."""
    names = candidates(precision, runtime)
    if len(names) == 1:
        return RuntimeChoice(names[0], inference_precision(precision))
    measured: dict[str, float | str] = {}
    for name in names:
        try:
            measured[name] = throughput(onnx_path, name, precision, samples, spec.sample_rate)
        except Exception as err:  # each runtime raises its own types for a graph it cannot compile
            measured[name] = f"cannot run this graph ({type(err).__name__}: {str(err).splitlines()[0][:200]})"
    timed = {name: value for name, value in measured.items() if isinstance(value, float)}
    if not timed:
        raise RuntimeError(f"no runtime can run {onnx_path}: {measured}")
    return RuntimeChoice(max(timed, key=timed.get), inference_precision(precision), measured)
