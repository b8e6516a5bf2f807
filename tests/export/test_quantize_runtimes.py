"""Reduced-precision exports and the CPU runtimes that serve them: the calibration set, static and dynamic INT8
(the spectral front end kept in fp32), BF16 in OpenVINO, and the measured runtime choice. References: the fp32
graph in onnxruntime, and each runtime against the other."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from marblekit.app.cli import main
from marblekit.core.audio_input import Preparation, prepare
from marblekit.core.backbones import get_backbone
from marblekit.core.runtimes import OpenVinoSession, open_session
from marblekit.core.task_format import load_task
from marblekit.export import runtime_choice
from marblekit.export.calibration import HELD_OUT, calibration_set, calibration_windows
from marblekit.export.parity import per_layer_cosine
from marblekit.export.pipeline import export_model
from marblekit.export.quantize import QUANTISED_OPS, spectral_front_end
from marblekit.extractor.engine import LocalEngine
from marblekit.synth.fluid import missing_renderer

MERT = get_backbone("mert-v1-95m").with_layers(2)
HANDCRAFTED = get_backbone("handcrafted")
TASKS = ("synth-pitch", "synth-key")


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    problem = missing_renderer()
    if problem:
        pytest.skip(f"no FluidSynth to render a calibration suite: {problem}")
    out = tmp_path_factory.mktemp("suite")
    assert main(["synth", str(out), "--scale", "tiny", "--tasks", *TASKS]) == 0
    return out


def _waveform(spec, seconds: float, seed: int = 0) -> np.ndarray:
    samples = int(seconds * spec.sample_rate)
    return (0.1 * np.random.default_rng(seed).standard_normal((2, samples))).astype(np.float32)


def _quantised_inputs(path: Path) -> dict[str, set[str]]:
    """op type -> names of the nodes of that type whose inputs come through a DequantizeLinear."""
    graph = onnx.load(str(path), load_external_data=False).graph
    dequantised = {output for node in graph.node if node.op_type == "DequantizeLinear" for output in node.output}
    found: dict[str, set[str]] = {}
    for node in graph.node:
        if dequantised & set(node.input):
            found.setdefault(node.op_type, set()).add(node.name)
    return found


def test_calibration_windows_are_slices_of_train_clips_only(suite: Path) -> None:
    how = Preparation(MERT.sample_rate, MERT.normalize_input)
    clips = {split: [prepare(item.path, 0.0, None, how) for task in TASKS
                     for item in load_task(suite / task).split(split)] for split in ("train", "test")}
    windows = calibration_windows(suite, MERT, count=10, seconds=2.0, seed=3)
    assert len(windows) == 10 and all(w.shape == (1, 2 * MERT.sample_rate) for w in windows)

    def found_in(split: str, window: np.ndarray) -> bool:
        length = window.shape[1]
        for clip in clips[split]:
            starts = np.flatnonzero(clip[:len(clip) - length + 1] == window[0, 0])
            if any(np.array_equal(clip[start:start + length], window[0]) for start in starts):
                return True
        return False

    assert all(found_in("train", w) for w in windows)
    assert not any(found_in("test", w) for w in windows)
    again = calibration_windows(suite, MERT, count=10, seconds=2.0, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(windows, again))
    held = calibration_set(suite, MERT, count=6, seconds=2.0, seed=3)
    assert (len(held.fit), len(held.held_out)) == (6, HELD_OUT)
    assert not any(np.array_equal(f, h) for f in held.fit for h in held.held_out)


def test_a_suite_folder_without_tasks_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no task folders"):
        calibration_windows(tmp_path, MERT)


def test_spectral_front_end_stays_fp32_in_static_int8(suite: Path, tmp_path: Path) -> None:
    """Handcrafted's STFT convolution and filterbanks feed a Log: left in fp32, while the DCT after the log is
    quantised; the held-out parity passes."""
    fp32 = export_model(HANDCRAFTED, tmp_path, check_parity=False, runtime="onnxruntime")
    graph_path = fp32.model_dir / "1" / "model.onnx"
    graph = onnx.load(str(graph_path)).graph
    front_end = set(spectral_front_end(graph_path))
    convolutions = {node.name for node in graph.node if node.op_type == "Conv"}
    assert convolutions and convolutions <= front_end
    log_outputs = {out for node in graph.node if node.op_type == "Log" for out in node.output}
    after_log = {node.name for node in graph.node if node.op_type == "MatMul" and log_outputs & set(node.input)}
    assert after_log and not after_log & front_end  # the MFCC's DCT reads the log-mel

    report = export_model(HANDCRAFTED, tmp_path, precision="int8", runtime="onnxruntime",
                          calibration=calibration_set(suite, HANDCRAFTED))
    assert report.parity_ok, report.summary()
    quantised = _quantised_inputs(report.model_dir / "1" / "model.onnx")
    assert set(quantised) == {"MatMul"}  # not the STFT's Conv, nor the chroma's max and division
    assert not quantised["MatMul"] & front_end


def test_static_int8_quantises_convolutions_and_matmuls_and_records_how(suite: Path, tmp_path: Path) -> None:
    report = export_model(MERT, tmp_path, random_init=True, precision="int8", calibration=calibration_set(suite, MERT))
    assert report.parity_ok, report.summary()
    quantised = _quantised_inputs(report.model_dir / "1" / "model.onnx")
    assert len(quantised["Conv"]) >= 7 and len(quantised["MatMul"]) >= 2 * 6  # the CNN front end, every layer
    assert set(quantised) <= set(QUANTISED_OPS)
    summary = json.loads((report.model_dir / "marblekit.json").read_text())
    assert summary["quantization"].startswith("static (NNCF")
    measured = summary["runtime"]["measured_audio_s_per_s"]
    assert set(measured) == {"onnxruntime", "openvino"} and all(v > 0 for v in measured.values())
    assert summary["runtime"]["runtime"] == max(measured, key=measured.get)
    # the fp32 graph in onnxruntime is the reference of the quantised one in its chosen runtime
    fp32 = export_model(MERT, tmp_path, random_init=True, runtime="onnxruntime", check_parity=False)
    waveform = _waveform(MERT, 2.0)
    expected = open_session(str(fp32.model_dir / "1" / "model.onnx")).run(["pooled"], waveform)[0]
    served = LocalEngine(tmp_path, report.name).infer(waveform, ("pooled",))["pooled"]
    cosines = per_layer_cosine(expected, served, MERT.columns)
    assert cosines.min() > 0.95 and not np.allclose(expected, served, atol=1e-4)


def test_dynamic_int8_without_calibration(tmp_path: Path) -> None:
    report = export_model(MERT, tmp_path, random_init=True, precision="int8", runtime="onnxruntime")
    assert report.parity_ok and report.quantization.startswith("dynamic")
    graph = onnx.load(str(report.model_dir / "1" / "model.onnx"), load_external_data=False).graph
    assert any(node.op_type == "MatMulInteger" for node in graph.node)


def test_openvino_runs_the_fp32_graph_as_onnxruntime_does_and_bf16_in_bf16(tmp_path: Path) -> None:
    report = export_model(MERT, tmp_path, random_init=True, runtime="onnxruntime", check_parity=False)
    path = str(report.model_dir / "1" / "model.onnx")
    waveform = _waveform(MERT, 1.5, seed=1)
    reference = open_session(path, "onnxruntime").run(["frames", "pooled"], waveform)
    fp32 = open_session(path, "openvino").run(["frames", "pooled"], waveform)
    bf16 = open_session(path, "openvino", inference_precision="bf16").run(["frames", "pooled"], waveform)
    for ref, f32, b16 in zip(reference, fp32, bf16):
        assert f32.shape == ref.shape and b16.shape == ref.shape
        scale = np.abs(ref).max()
        assert np.abs(f32 - ref).max() <= 1e-4 * scale
        assert 1e-3 * scale < np.abs(b16 - ref).max() < 0.1 * scale  # really computed in BF16, and close
    assert per_layer_cosine(reference[1], bf16[1], MERT.columns).min() > 0.999


def test_bf16_export_is_served_by_openvino_in_process(tmp_path: Path) -> None:
    report = export_model(MERT, tmp_path, random_init=True, precision="bf16")
    assert report.parity_ok and report.runtime.runtime == "openvino"
    engine = LocalEngine(tmp_path, report.name)
    assert isinstance(engine.session, OpenVinoSession)
    assert (engine.info.runtime, engine.info.inference_precision) == ("openvino", "bf16")
    assert engine.infer(_waveform(MERT, 1.0), ("pooled",))["pooled"].shape == (2, MERT.columns.width)


def test_runtime_choice_keeps_the_fastest_that_runs(monkeypatch, tmp_path: Path) -> None:
    speeds = {"onnxruntime": 3.0, "openvino": 5.0}

    def timed(path, runtime, precision, samples, rate):
        if runtime in failing:
            raise RuntimeError("unsupported operator Foo\nmore")
        return speeds[runtime]

    monkeypatch.setattr(runtime_choice, "throughput", timed)
    failing: set[str] = set()
    choice = runtime_choice.choose_runtime(tmp_path / "m.onnx", MERT, "int8", "auto", 1000)
    assert (choice.runtime, choice.measured) == ("openvino", speeds)
    failing.add("openvino")
    choice = runtime_choice.choose_runtime(tmp_path / "m.onnx", MERT, "fp32", "auto", 1000)
    assert choice.runtime == "onnxruntime" and "unsupported operator Foo" in choice.measured["openvino"]
    failing.add("onnxruntime")
    with pytest.raises(RuntimeError, match="no runtime can run"):
        runtime_choice.choose_runtime(tmp_path / "m.onnx", MERT, "fp32", "auto", 1000)


def test_a_runtime_that_cannot_run_the_precision_is_refused() -> None:
    with pytest.raises(ValueError, match="--runtime onnxruntime cannot run a bf16 export"):
        runtime_choice.candidates("bf16", "onnxruntime")
    with pytest.raises(ValueError, match="needs runtime 'openvino'"):
        open_session("unused.onnx", "onnxruntime", inference_precision="bf16")
    with pytest.raises(ValueError, match="runtime must be one of onnxruntime, openvino"):
        open_session("unused.onnx", "tensorflow")
