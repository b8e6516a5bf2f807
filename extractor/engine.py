"""Inference engines behind one small interface: in process (the runtime the model config names, as the
Triton runner runs it), or a Triton server over gRPC.

Both read the model's facts from the same place, the marblekit parameters of its Triton model config
(``marblekit.core.served_model``): the local engine parses ``<repo>/<name>/config.pbtxt``, the Triton engine
asks the server for the loaded config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from marblekit.core.runtimes import open_session
from marblekit.core.served_model import ServedModel, read_model_config, served_model


class InferenceError(Exception):
    """The engine rejected one request (bad input); the tracks in it fail, the job goes on."""


class Engine(Protocol):
    """Runs ``waveform [B, N]`` float32 through the model; thread-safe up to ``max_in_flight`` calls."""

    info: ServedModel
    max_in_flight: int

    def infer(self, waveforms: np.ndarray, outputs: tuple[str, ...]) -> dict[str, np.ndarray]: ...

    def close(self) -> None: ...


#: ``--device`` names, and the onnxruntime execution providers each asks for (the CPU one as the fallback for
#: operators a GPU provider lacks)
DEVICE_PROVIDERS = {"cpu": ["CPUExecutionProvider"], "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"]}


def local_model_info(repo: Path, name: str) -> ServedModel:
    """The model's facts from ``<repo>/<name>/config.pbtxt``, without loading its graph."""
    return served_model(read_model_config(Path(repo) / name))


class LocalEngine:
    """The model's runtime in this process, all cores, for one call at a time; ``device="cuda"``: onnxruntime
    on this machine's GPU instead."""

    max_in_flight = 1

    def __init__(self, repo: Path, name: str, threads: int = 0, device: str = "cpu"):
        self.info = local_model_info(repo, name)
        path = str(Path(repo) / name / "1" / "model.onnx")
        if device == "cpu":
            self.session = open_session(path, self.info.runtime, threads, self.info.inference_precision)
            return
        import onnxruntime as ort

        providers = DEVICE_PROVIDERS[device]
        if providers[0] not in ort.get_available_providers():
            raise ValueError(f"--device {device}: this onnxruntime {ort.__version__} has no {providers[0]} (it has "
                             f"{', '.join(ort.get_available_providers())}); install onnxruntime-gpu for CUDA")
        if self.info.inference_precision != "f32":
            raise ValueError(f"--device {device}: model {name!r} is a {self.info.precision} export for CPUs "
                             f"({self.info.inference_precision} compute in {self.info.runtime}); export an fp32 or "
                             f"fp16 variant for the GPU")
        self.session = open_session(path, "onnxruntime", threads, providers=providers)

    def infer(self, waveforms: np.ndarray, outputs: tuple[str, ...]) -> dict[str, np.ndarray]:
        return dict(zip(outputs, self.session.run(outputs, waveforms)))

    def close(self) -> None:
        self.session = None
