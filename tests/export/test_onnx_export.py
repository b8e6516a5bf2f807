"""ONNX export: onnxruntime against PyTorch (fp32 max abs <= 1e-4, fp16 per-layer cosine >= 0.999, int8 >= 0.99)
over two batch sizes and two lengths; the Triton configs parse with model_config.proto and match the graph."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from tritonclient.grpc import model_config_pb2 as mc

from marblekit.app.cli import main
from marblekit.core.backbones import get_backbone
from marblekit.core.served_model import config_from_text as parse
from marblekit.export.builders import random_encoder
from marblekit.export.parity import per_layer_cosine
from marblekit.export.pipeline import export_model
from marblekit.export.tensorrt import gpu_unavailable_reason

#: Every architecture at a shallow depth (same modules, a fraction of the export time) plus handcrafted.
ARCHITECTURES = {
    "post-LN hubert": get_backbone("mert-v1-95m").with_layers(2),
    "pre-LN hubert": get_backbone("mert-v1-330m").with_layers(2),
    "data2vec-audio": get_backbone("music2vec-v1").with_layers(2),
    "handcrafted": get_backbone("handcrafted"),
}
ONNX_TYPES = {onnx.TensorProto.FLOAT: mc.TYPE_FP32, onnx.TensorProto.FLOAT16: mc.TYPE_FP16}


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The module's exports (most of a GB): removed once its tests are done, so CI's disk does not fill."""
    path = tmp_path_factory.mktemp("model_repository")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def waveforms(sample_rate: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [(0.1 * rng.standard_normal((batch, int(seconds * sample_rate)))).astype(np.float32)
            for batch, seconds in [(1, 1.3), (2, 2.1)]]


def run_onnx(path: Path, waveform: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    frames, pooled = session.run(["frames", "pooled"], {"waveform": waveform})
    return frames, pooled


def side_by_side(stacked: np.ndarray) -> np.ndarray:
    """[B, L, T, D] -> [B, T, L*D]: the served frames of a one-width backbone."""
    return stacked.transpose(0, 2, 1, 3).reshape(stacked.shape[0], stacked.shape[2], -1)


@pytest.mark.parametrize("label", ARCHITECTURES)
def test_exports_match_pytorch(label: str, repo: Path) -> None:
    spec = ARCHITECTURES[label]
    reports = {precision: export_model(spec, repo, random_init=True, seed=5, precision=precision)
               for precision in ("fp32", "fp16", "int8")}
    assert all(report.parity_ok for report in reports.values()), [r.summary() for r in reports.values()]
    reference_encoder = random_encoder(spec, seed=5)  # rebuilt independently from the same seed
    columns = spec.columns
    for waveform in waveforms(spec.sample_rate):
        with torch.no_grad():
            stacked = reference_encoder(torch.from_numpy(waveform)).numpy()
        reference, reference_pooled = side_by_side(stacked), stacked.mean(axis=2).reshape(len(waveform), -1)
        frames32, pooled32 = run_onnx(reports["fp32"].model_dir / "1" / "model.onnx", waveform)
        assert frames32.dtype == np.float32 and frames32.shape == reference.shape
        assert frames32.shape[1] == spec.num_frames(waveform.shape[1])
        assert np.abs(frames32 - reference).max() <= 1e-4
        assert np.abs(pooled32 - reference_pooled).max() <= 1e-4
        frames16, pooled16 = run_onnx(reports["fp16"].model_dir / "1" / "model.onnx", waveform)
        assert frames16.dtype == np.float16 and pooled16.dtype == np.float16
        assert per_layer_cosine(reference, frames16, columns).min() >= 0.999
        assert per_layer_cosine(reference_pooled, pooled16, columns).min() >= 0.999
        frames8, pooled8 = run_onnx(reports["int8"].model_dir / "1" / "model.onnx", waveform)
        assert frames8.dtype == np.float32 and np.abs(frames8 - reference).max() > 1e-4  # really quantised
        assert per_layer_cosine(reference, frames8, columns).min() >= 0.99
        assert per_layer_cosine(reference_pooled, pooled8, columns).min() >= 0.99
    int8_ops = {node.op_type for node in onnx.load(str(reports["int8"].model_dir / "1" / "model.onnx")).graph.node}
    assert {"DynamicQuantizeLinear", "MatMulInteger"} <= int8_ops  # the weights' MatMuls are 8-bit
    assert not (reports["int8"].model_dir / "1" / "model.fp32.onnx").exists()


def test_export_records_random_init(repo: Path) -> None:
    spec = ARCHITECTURES["post-LN hubert"]
    report = export_model(spec, repo, name="recorded", random_init=True, seed=3, check_parity=False)
    config = parse((report.model_dir / "config.pbtxt").read_text())
    assert '"random_init": true' in config.parameters["marblekit_provenance"].string_value
    assert '"seed": 3' in config.parameters["marblekit_provenance"].string_value


def declared_io(config: mc.ModelConfig) -> dict[str, tuple[int, int]]:
    """name -> (data type, rank including the batch axis Triton adds)."""
    extra = 1 if config.max_batch_size > 0 else 0
    return {t.name: (t.data_type, len(t.dims) + extra) for t in [*config.input, *config.output]}


def graph_io(path: Path) -> dict[str, tuple[int, int]]:
    graph = onnx.load(str(path), load_external_data=False).graph
    return {v.name: (ONNX_TYPES[v.type.tensor_type.elem_type], len(v.type.tensor_type.shape.dim))
            for v in [*graph.input, *graph.output]}


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_configs_parse_and_declare_exactly_the_graph_io(precision: str, repo: Path) -> None:
    spec = ARCHITECTURES["pre-LN hubert"]
    report = export_model(spec, repo, name=f"io-{precision}", random_init=True, precision=precision,
                          check_parity=False)
    io = graph_io(report.model_dir / "1" / "model.onnx")
    paths = [report.model_dir / "config.pbtxt", *sorted((report.model_dir / "configs").glob("*.pbtxt"))]
    expected_gpu = ["gpu-onnxruntime", "gpu-tensorrt"] if precision == "fp16" else ["gpu-onnxruntime"]
    assert [p.stem for p in paths[1:]] == expected_gpu
    for path in paths:
        config = parse(path.read_text())
        assert config.name == f"io-{precision}"
        assert declared_io(config) == io, path
        output_dims = {o.name: list(o.dims) for o in config.output}
        assert output_dims == {"frames": [-1, spec.num_hidden_states * spec.dim],
                               "pooled": [spec.num_hidden_states * spec.dim]}


def test_cli_export_writes_repository(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "handcrafted", "--repo", str(tmp_path)]) == 0
    assert "parity 1x24000 samples" in capsys.readouterr().out
    assert (tmp_path / "handcrafted" / "1" / "model.onnx").is_file()
    assert (tmp_path / "handcrafted" / "1" / "model.py").is_file()


def test_cli_refuses_missing_weights(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "mert-v1-95m", "--repo", str(tmp_path)]) == 2
    assert "--random-init" in capsys.readouterr().err
    assert not (tmp_path / "mert-v1-95m").exists()


@pytest.mark.gpu
@pytest.mark.skipif(gpu_unavailable_reason() is not None, reason=f"TensorRT build: {gpu_unavailable_reason()}")
def test_tensorrt_fp16_engine_matches_fp32(repo: Path) -> None:  # pragma: no cover - runs on GPU machines
    import tensorrt as trt

    spec = ARCHITECTURES["post-LN hubert"]
    report = export_model(spec, repo, name="trt", random_init=True, precision="fp16", tensorrt=True)
    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    engine = runtime.deserialize_cuda_engine(report.plan.read_bytes())
    context = engine.create_execution_context()
    encoder = random_encoder(spec, seed=0)
    for waveform in waveforms(spec.sample_rate):
        x = torch.from_numpy(waveform).cuda()
        columns = spec.columns
        frames = torch.empty(waveform.shape[0], spec.num_frames(waveform.shape[1]), columns.width,
                             dtype=torch.float16, device="cuda")
        pooled = torch.empty(waveform.shape[0], columns.width, dtype=torch.float16, device="cuda")
        context.set_input_shape("waveform", tuple(x.shape))
        for name, tensor in (("waveform", x), ("frames", frames), ("pooled", pooled)):
            context.set_tensor_address(name, tensor.data_ptr())
        assert context.execute_async_v3(torch.cuda.current_stream().cuda_stream)
        torch.cuda.synchronize()
        with torch.no_grad():
            reference = side_by_side(encoder(torch.from_numpy(waveform)).numpy())
        assert per_layer_cosine(reference, frames.cpu().numpy(), columns).min() >= 0.999


def test_bench_backbone_runs_all_three_runtimes(tmp_path: Path) -> None:
    from argparse import Namespace

    from marblekit.app.bench.backbone import bench_backbone

    args = Namespace(model="hubert-base", checkpoint=None, random_init=True, windows=2, window_seconds=0.5,
                     batch=2, threads=1, workdir=str(tmp_path))
    result = bench_backbone(args)
    assert [row.runtime.split(",")[0] for row in result.rows] == [
        "(a) transformers eager fp32", "(b) onnxruntime fp32", "(b) onnxruntime int8"]
    assert all(row.speed > 0 and row.audio_seconds == 1.0 for row in result.rows)
    assert "min layer cosine vs fp32 0.99" in result.rows[-1].note
    assert "audio s/s" in result.render()
