"""The served-model contract: what export writes into a Triton config is what every client parses back, and
the Python-backend runner (which cannot import marblekit) reads the same names."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from tritonclient.grpc import model_config_pb2 as mc

from marblekit.core import runtimes, served_model
from marblekit.core.backbones import BackboneSpec, get_backbone
from marblekit.export import triton_config

RUNNER = Path(served_model.__file__).resolve().parents[2] / "serving" / "triton_python_model.py"


def runner_names() -> tuple[str, set[str]]:
    """The runner's input name and every config parameter it reads (``params[...]`` / ``params.get(...)``)."""
    tree = ast.parse(RUNNER.read_text())
    input_name = next(node.value.value for node in tree.body if isinstance(node, ast.Assign)
                      and node.targets[0].id == "INPUT_NAME")
    read = set()
    for node in ast.walk(tree):
        is_params = isinstance(node, (ast.Subscript, ast.Attribute)) and getattr(node.value, "id", "") == "params"
        if isinstance(node, ast.Subscript) and is_params:
            read.add(node.slice.value)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get" \
                and getattr(node.func.value, "id", "") == "params":
            read.add(node.args[0].value)
    return input_name, read


def test_the_runner_reads_the_contract_names() -> None:
    input_name, read = runner_names()
    assert input_name == served_model.INPUT
    assert read == set(served_model.RUNNER_PARAMETERS)


def test_the_runtimes_copied_beside_the_runner_stand_alone() -> None:
    """``export`` copies ``marblekit.core.runtimes`` into the model folder, where marblekit cannot be imported."""
    tree = ast.parse(Path(runtimes.__file__).read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not any(name.startswith("marblekit") for name in imported), imported
    assert runtimes.INPUT == served_model.INPUT


def test_what_export_writes_is_what_clients_parse() -> None:
    spec = get_backbone("mert-v1-95m").with_layers(2)
    shape = triton_config.ServingShape()
    provenance = {"weights": "random-init", "seed": 3, "random_init": True}
    parameters = served_model.model_parameters(spec, "fp16", provenance, "ab" * 32, shape.samples(spec, 1.0),
                                               shape.samples(spec, 30.0))
    config = triton_config.embedded_config("m", spec, mc.TYPE_FP16, parameters, shape)
    served = served_model.served_model(served_model.config_from_text(served_model.config_to_text(config)))
    assert (served.name, served.backbone, served.precision, served.onnx_sha256) == ("m", spec.name, "fp16", "ab" * 32)
    assert (served.sample_rate, served.frame_rate, served.num_hidden_states) == (24000, 75.0, 3)
    assert (served.layer_dims, served.frame_layers, served.weighted_layers) == ((768,) * 3, (0, 1, 2), (1, 2))
    assert (served.min_samples, served.max_samples, served.max_batch) == (24000, 720000, shape.cpu_max_batch)
    assert served.random_init and served.normalize_input and served.provenance == provenance
    assert served.outputs == {served_model.FRAMES: ("FP16", (-1, 3 * 768)), served_model.POOLED: ("FP16", (3 * 768,))}
    assert set(config.parameters) >= set(served_model.PARAMETERS) | set(served_model.RUNNER_PARAMETERS)


def test_layers_of_different_widths_are_served_side_by_side() -> None:
    """MusiCNN-like: widths 4, 2, 2 and only the first two with frames; the weighted sum over the 2-wide pair."""
    spec = BackboneSpec("toy", "toy", 16000, 256, 512, 2, 4, layer_dims=(4, 2, 2), frame_layers=(0, 1),
                        weighted_layers=(1, 2))
    shape = triton_config.ServingShape()
    parameters = served_model.model_parameters(spec, "fp32", {"weights": "none"}, "00", 512, 16000)
    served = served_model.served_model(triton_config.embedded_config("t", spec, mc.TYPE_FP32, parameters, shape))
    assert served.outputs == {served_model.FRAMES: ("FP32", (-1, 6)), served_model.POOLED: ("FP32", (8,))}
    assert served.frame_columns.span(1) == slice(4, 6) and served.columns.span(2) == slice(6, 8)


def test_a_model_exported_before_interface_2_is_refused_with_what_to_do() -> None:
    spec = get_backbone("handcrafted")
    parameters = served_model.model_parameters(spec, "fp32", {"weights": "none"}, "00", 512, 16000)
    del parameters["marblekit_interface"]
    config = triton_config.embedded_config("old", spec, mc.TYPE_FP32, parameters, triton_config.ServingShape())
    with pytest.raises(ValueError, match="'old' was exported by an older marblekit .*run marblekit export again"):
        served_model.served_model(config)


def test_a_config_not_from_marblekit_is_refused_naming_what_it_lacks() -> None:
    config = mc.ModelConfig(name="other", parameters={"precision": mc.ModelParameter(string_value="fp32")})
    with pytest.raises(ValueError, match="'other' was not exported by marblekit.*marblekit_spec"):
        served_model.served_model(config)


def test_a_missing_model_directory_says_how_to_make_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="run marblekit export first"):
        served_model.read_model_config(tmp_path / "absent")
