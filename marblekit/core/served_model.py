"""The served model's contract: its tensor names and the marblekit parameters of its Triton model config.

``marblekit export`` writes a graph ``waveform [batch, samples] fp32 -> pooled [batch, C], frames [batch, T, C_f]``:
``pooled`` is the time-mean of every hidden state, their widths side by side (C = the sum of the widths; see
:mod:`marblekit.core.layers`), and ``frames`` every frame of the hidden states that have frames at the model's
frame rate (``frame_layers``), side by side the same way. It puts :func:`model_parameters` into every config
it writes; the extractor, the serving client and the benchmarks read them back with :func:`served_model`, from
a ``config.pbtxt`` or from a server's ``get_model_config``. Models exported before this interface (version 2)
are refused with a message that says to export them again. The Python-backend runner that runs inside Triton
cannot import marblekit and keeps its own copy of the names it reads (``RUNNER_PARAMETERS`` and ``INPUT``); a
test proves they agree.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from marblekit.core.backbones import BackboneSpec
from marblekit.core.layers import LayerColumns

INPUT = "waveform"
FRAMES = "frames"
POOLED = "pooled"
OUTPUTS = (FRAMES, POOLED)
#: the served interface: 2 = pooled [C] and frames [T, C_f] on concatenated layer columns
INTERFACE_VERSION = 2
#: config parameters every client needs (written by :func:`model_parameters`)
PARAMETERS = ("marblekit_backbone", "marblekit_spec", "marblekit_provenance", "marblekit_interface", "precision",
              "onnx_sha256", "min_samples", "max_samples")
#: config parameters the Python-backend runner reads besides the accepted lengths
RUNNER_PARAMETERS = ("onnx_file", "runtime", "inference_precision", "intra_op_threads", "max_call_windows",
                     "min_samples", "max_samples")
CONFIG_FILE = "config.pbtxt"


def model_parameters(spec: BackboneSpec, precision: str, provenance: dict[str, object], onnx_sha256: str,
                     min_samples: int, max_samples: int) -> dict[str, str]:
    """What a client must know to feed the model and label what it gets back; travels in the config."""
    return {
        "marblekit_backbone": spec.name,
        "marblekit_spec": json.dumps(spec.describe(), sort_keys=True),
        "marblekit_provenance": json.dumps(provenance, sort_keys=True),
        "marblekit_interface": str(INTERFACE_VERSION),
        "precision": precision,
        "onnx_sha256": onnx_sha256,
        "min_samples": str(min_samples),
        "max_samples": str(max_samples),
    }


@dataclass(frozen=True)
class ServedModel:
    """What a served model expects and returns, read from its Triton config."""

    name: str
    backbone: str
    sample_rate: int
    frame_rate: float
    num_hidden_states: int
    layer_dims: tuple[int, ...]
    frame_layers: tuple[int, ...]
    weighted_layers: tuple[int, ...]
    normalize_input: bool
    precision: str
    onnx_sha256: str
    random_init: bool
    min_samples: int
    max_samples: int
    max_batch_size: int
    outputs: dict[str, tuple[str, tuple[int, ...]]]  # name -> (Triton dtype, dims without the batch axis)
    spec: dict[str, object]
    provenance: dict[str, object]
    #: the CPU runtime and compute precision the embedded config runs it with (``marblekit.core.runtimes``)
    runtime: str = "onnxruntime"
    inference_precision: str = "f32"

    @property
    def columns(self) -> LayerColumns:
        """Where every hidden state sits in ``pooled``."""
        return LayerColumns(tuple(range(self.num_hidden_states)), self.layer_dims)

    @property
    def frame_columns(self) -> LayerColumns:
        """Where each frame layer sits in ``frames``."""
        return LayerColumns.of(self.frame_layers, self.layer_dims)

    @property
    def max_batch(self) -> int:
        """Windows one request may carry (at least 1: a config without batching takes one at a time)."""
        return max(self.max_batch_size, 1)


def served_model(config: mc.ModelConfig) -> ServedModel:
    """Parse the marblekit parameters of a model config; a config without them is refused with a ValueError
    naming what it lacks."""
    params = {key: value.string_value for key, value in config.parameters.items()}
    if "marblekit_spec" in params and params.get("marblekit_interface") != str(INTERFACE_VERSION):
        raise ValueError(f"model {config.name!r} was exported by an older marblekit (served interface "
                         f"{params.get('marblekit_interface', '1')}; this one serves {INTERFACE_VERSION}): run "
                         f"marblekit export again")
    missing = set(PARAMETERS) - set(params)
    if missing:
        raise ValueError(f"model {config.name!r} was not exported by marblekit: its config lacks the "
                         f"parameters {', '.join(sorted(missing))}")
    spec = json.loads(params["marblekit_spec"])
    provenance = json.loads(params["marblekit_provenance"])
    return ServedModel(
        name=config.name, backbone=params["marblekit_backbone"], sample_rate=int(spec["sample_rate"]),
        frame_rate=float(spec["frame_rate"]), num_hidden_states=int(spec["hidden_states"]),
        layer_dims=tuple(spec["layer_dims"]), frame_layers=tuple(spec["frame_layers"]),
        weighted_layers=tuple(spec["weighted_layers"]),
        normalize_input=bool(spec["normalize_input"]), precision=params["precision"],
        onnx_sha256=params["onnx_sha256"], random_init=bool(provenance.get("random_init", False)),
        min_samples=int(params["min_samples"]), max_samples=int(params["max_samples"]),
        max_batch_size=config.max_batch_size,
        outputs={out.name: (mc.DataType.Name(out.data_type).removeprefix("TYPE_"), tuple(out.dims))
                 for out in config.output},
        spec=spec, provenance=provenance, runtime=params.get("runtime", "onnxruntime"),
        inference_precision=params.get("inference_precision", "f32"),
    )


def config_to_text(config: mc.ModelConfig) -> str:
    return text_format.MessageToString(config)


def config_from_text(text: str) -> mc.ModelConfig:
    return text_format.Parse(text, mc.ModelConfig())


def read_model_config(model_dir: Path) -> mc.ModelConfig:
    """``<model_dir>/config.pbtxt``, with an error that says how to make it when it is missing."""
    path = Path(model_dir) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no model {path.parent.name!r} in {path.parent.parent}: {path} does not exist "
                                f"(run marblekit export first)")
    return config_from_text(path.read_text())
