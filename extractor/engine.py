"""Inference engines behind one small interface: in-process onnxruntime, or a Triton server over gRPC.

Both read the model's facts from the same place, the ``parameters`` of its Triton model config, which
``marblekit export`` writes (spec, provenance, precision, ONNX checksum, accepted window lengths): the local
engine parses ``<repo>/<name>/config.pbtxt``, the Triton engine asks the server for the loaded config.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from marblekit.serving.client import ServedModel, served_model

INPUT = "waveform"
POOLED = "pooled"
HIDDEN = "hidden_states"


@dataclass(frozen=True)
class ModelInfo:
    """What the extractor needs to feed a served model and to label what it returns."""

    name: str
    backbone: str
    sample_rate: int
    frame_rate: float
    num_hidden_states: int
    dim: int
    normalize_input: bool
    precision: str
    onnx_sha256: str
    random_init: bool
    min_samples: int
    max_samples: int
    max_batch: int

    @classmethod
    def from_config(cls, config: mc.ModelConfig) -> "ModelInfo":
        return cls.from_served(served_model(config))

    @classmethod
    def from_served(cls, served: ServedModel) -> "ModelInfo":
        spec = served.spec
        return cls(name=served.name, backbone=served.backbone, sample_rate=served.sample_rate,
                   frame_rate=float(spec["frame_rate"]), num_hidden_states=int(spec["hidden_states"]),
                   dim=int(spec["dim"]), normalize_input=bool(spec["normalize_input"]),
                   precision=served.precision, onnx_sha256=served.onnx_sha256,
                   random_init=bool(served.provenance.get("random_init", False)),
                   min_samples=served.min_samples, max_samples=served.max_samples,
                   max_batch=max(served.max_batch_size, 1))


class InferenceError(Exception):
    """The engine rejected one request (bad input); the tracks in it fail, the job goes on."""


class Engine(Protocol):
    """Runs ``waveform [B, N]`` float32 through the model; thread-safe up to ``max_in_flight`` calls."""

    info: ModelInfo
    max_in_flight: int

    def infer(self, waveforms: np.ndarray, outputs: tuple[str, ...]) -> dict[str, np.ndarray]: ...

    def close(self) -> None: ...


def read_config(model_dir: Path) -> mc.ModelConfig:
    path = model_dir / "config.pbtxt"
    if not path.is_file():
        raise FileNotFoundError(f"no model {model_dir.name!r} in {model_dir.parent}: {path} does not exist "
                                f"(run marblekit export first)")
    return text_format.Parse(path.read_text(), mc.ModelConfig())


class LocalEngine:
    """onnxruntime in this process, all cores for one call at a time (no server needed)."""

    max_in_flight = 1

    def __init__(self, repo: Path, name: str, threads: int = 0):
        import onnxruntime as ort

        model_dir = Path(repo) / name
        self.info = ModelInfo.from_config(read_config(model_dir))
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(model_dir / "1" / "model.onnx"), options,
                                            providers=["CPUExecutionProvider"])

    def infer(self, waveforms: np.ndarray, outputs: tuple[str, ...]) -> dict[str, np.ndarray]:
        return dict(zip(outputs, self.session.run(list(outputs), {INPUT: waveforms})))

    def close(self) -> None:
        self.session = None
