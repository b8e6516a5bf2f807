"""Inference engines behind one small interface: in-process onnxruntime, or a Triton server over gRPC.

Both read the model's facts from the same place, the marblekit parameters of its Triton model config
(``marblekit.core.served_model``): the local engine parses ``<repo>/<name>/config.pbtxt``, the Triton engine
asks the server for the loaded config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from marblekit.core.served_model import INPUT, ServedModel, read_model_config, served_model


class InferenceError(Exception):
    """The engine rejected one request (bad input); the tracks in it fail, the job goes on."""


class Engine(Protocol):
    """Runs ``waveform [B, N]`` float32 through the model; thread-safe up to ``max_in_flight`` calls."""

    info: ServedModel
    max_in_flight: int

    def infer(self, waveforms: np.ndarray, outputs: tuple[str, ...]) -> dict[str, np.ndarray]: ...

    def close(self) -> None: ...


class LocalEngine:
    """onnxruntime in this process, all cores for one call at a time (no server needed)."""

    max_in_flight = 1

    def __init__(self, repo: Path, name: str, threads: int = 0):
        import onnxruntime as ort

        model_dir = Path(repo) / name
        self.info = served_model(read_model_config(model_dir))
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(model_dir / "1" / "model.onnx"), options,
                                            providers=["CPUExecutionProvider"])

    def infer(self, waveforms: np.ndarray, outputs: tuple[str, ...]) -> dict[str, np.ndarray]:
        return dict(zip(outputs, self.session.run(list(outputs), {INPUT: waveforms})))

    def close(self) -> None:
        self.session = None
