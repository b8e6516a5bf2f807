"""Every Triton config that export writes parses as model_config.proto and declares exactly the ONNX graph's
inputs and outputs (names, dtypes, ranks, static dims), checked against the graph itself with onnx."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from onnx import TensorProto
from tritonclient.grpc import model_config_pb2 as mc

from marblekit.backbones import get_backbone
from marblekit.export.pipeline import export_model
from marblekit.export.triton_config import ServingShape, parse
from marblekit.serving.client import served_model

ONNX_TO_TRITON = {TensorProto.FLOAT: mc.TYPE_FP32, TensorProto.FLOAT16: mc.TYPE_FP16}
EXPORTS = [("handcrafted", "fp32"), ("handcrafted", "fp16"), ("mert-v1-95m", "fp32"), ("mert-v1-95m", "fp16")]


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("configs")
    for backbone, precision in EXPORTS:
        spec = get_backbone(backbone)
        spec = spec.with_layers(2) if spec.needs_weights else spec
        export_model(spec, repo=root, precision=precision, random_init=spec.needs_weights, check_parity=False)
    return root


def _graph_io(value_infos) -> dict[str, tuple[int, list[int | None]]]:
    """name -> (Triton dtype, dims with None for symbolic axes)."""
    io = {}
    for info in value_infos:
        tensor = info.type.tensor_type
        dims = [dim.dim_value if dim.HasField("dim_value") else None for dim in tensor.shape.dim]
        io[info.name] = (ONNX_TO_TRITON[tensor.elem_type], dims)
    return io


def _config_io(config: mc.ModelConfig, tensors) -> dict[str, tuple[int, list[int | None]]]:
    """The same view of a config's tensors: the batch axis prepended, -1 as None."""
    batch = [None] if config.max_batch_size > 0 else []
    return {t.name: (t.data_type, batch + [None if d == -1 else d for d in t.dims]) for t in tensors}


def _configs(repo: Path) -> list[Path]:
    return sorted(repo.glob("*/config.pbtxt")) + sorted(repo.glob("*/configs/*.pbtxt"))


def test_every_config_declares_the_graph_io(repo: Path) -> None:
    configs = _configs(repo)
    assert len(configs) == 3 * len(EXPORTS)
    for path in configs:
        model_dir = path.parent if path.name == "config.pbtxt" else path.parent.parent
        graph = onnx.load(str(model_dir / "1" / "model.onnx"), load_external_data=False).graph
        config = parse(path.read_text())
        assert config.name == model_dir.name, path
        assert _config_io(config, config.input) == _graph_io(graph.input), path
        assert _config_io(config, config.output) == _graph_io(graph.output), path


def test_embedded_config_carries_what_clients_need(repo: Path) -> None:
    shape = ServingShape()
    for backbone, precision in EXPORTS:
        spec = get_backbone(backbone)
        spec = spec.with_layers(2) if spec.needs_weights else spec
        name = spec.name if precision == "fp32" else f"{spec.name}-{precision}"
        config = parse((repo / name / "config.pbtxt").read_text())
        served = served_model(config)
        assert config.backend == "python"
        assert (served.sample_rate, served.precision) == (spec.sample_rate, precision)
        assert served.min_samples == round(shape.min_seconds * spec.sample_rate)
        assert served.max_samples == round(shape.max_seconds * spec.sample_rate)
        assert served.outputs["pooled"] == (precision.upper(), (spec.num_hidden_states, spec.dim))
