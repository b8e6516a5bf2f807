"""CLMR's SampleCNN: CLMR's module names and shapes, its checkpoint formats imported exactly, and an ONNX export
that equals PyTorch. No CLMR weights can be downloaded here, so the checkpoints are written by the test in the
formats CLMR's training code produces (a PyTorch-Lightning .ckpt; a plain state dict)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from marblekit.export.clmr import BLOCKS, INPUT_SAMPLES, SampleCNN, load_clmr_checkpoint, random_sample_cnn

#: CLMR's SampleCNN(strides=[3] * 9): conv widths of its 11 blocks (clmr/models/sample_cnn.py)
CLMR_CONVS = [(1, 128)] + [(128, 128), (128, 128), (128, 256)] + [(256, 256)] * 5 + [(256, 512), (512, 512)]


def test_the_module_has_clmrs_names_and_shapes() -> None:
    state = SampleCNN().state_dict()
    for block, (width_in, width_out) in enumerate(CLMR_CONVS):
        assert state[f"sequential.{block}.0.weight"].shape == (width_out, width_in, 3)
        for statistic in ("weight", "bias", "running_mean", "running_var"):
            assert state[f"sequential.{block}.1.{statistic}"].shape == (width_out,)
    assert len(state) == 11 * 7  # conv weight + bias, batch norm's five tensors


def test_one_input_unit_gives_one_frame_of_every_block() -> None:
    with torch.no_grad():
        outputs = random_sample_cnn(0)(torch.randn(2, 2 * INPUT_SAMPLES))
    assert [(name, tuple(outputs[name].shape)) for name, _, _ in BLOCKS] == [
        (name, (2, 2 * INPUT_SAMPLES // hop, width)) for name, width, hop in BLOCKS]


def _lightning(model: SampleCNN) -> dict:
    """What CLMR's ContrastiveLearning module saves: encoder, its unused head and the SimCLR projector."""
    tensors = {f"model.encoder.{key}": value for key, value in model.state_dict().items()}
    tensors |= {"model.encoder.fc.weight": torch.zeros(50, 512), "model.encoder.fc.bias": torch.zeros(50),
                "model.projector.0.weight": torch.randn(512, 512), "model.projector.2.weight": torch.randn(64, 512)}
    return {"pytorch-lightning_version": "1.4.9", "epoch": 9999, "global_step": 1, "state_dict": tensors,
            "hyper_parameters": {"batch_size": 48, "projection_dim": 64, "sample_rate": 22050}}


@pytest.mark.parametrize("layout", ["lightning", "plain"])
def test_checkpoints_in_clmrs_formats_load_exactly(tmp_path: Path, layout: str) -> None:
    trained = random_sample_cnn(3)
    with torch.no_grad():  # moving statistics that are not the initial ones, as after training
        for module in trained.modules():
            if isinstance(module, torch.nn.BatchNorm1d):
                module.running_mean.uniform_(-1, 1)
                module.running_var.uniform_(0.5, 2)
    payload = _lightning(trained) if layout == "lightning" else {
        f"encoder.{key}": value for key, value in trained.state_dict().items()}
    torch.save(payload, tmp_path / "clmr.ckpt")
    loaded, sha256 = load_clmr_checkpoint(tmp_path / "clmr.ckpt")
    for key, value in trained.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    audio = torch.randn(1, INPUT_SAMPLES)
    with torch.no_grad():
        assert torch.equal(loaded(audio)["block10"], trained(audio)["block10"])
    assert len(sha256) == 64


def test_what_is_not_a_clmr_checkpoint_is_refused_with_a_reason(tmp_path: Path) -> None:
    torch.save({"state_dict": {"something.else": torch.zeros(1)}, "pytorch-lightning_version": "1.4"},
               tmp_path / "other.ckpt")
    with pytest.raises(ValueError, match="no encoder weights .*model.encoder"):
        load_clmr_checkpoint(tmp_path / "other.ckpt")
    wrong = {f"encoder.{key}": value[..., :1] if value.dim() == 3 else value
             for key, value in SampleCNN().state_dict().items()}
    torch.save(wrong, tmp_path / "wrong.pt")
    shape = r"key 'sequential.0.0.weight' has shape \(128, 1, 1\); the model expects \(128, 1, 3\)"
    with pytest.raises(ValueError, match=r"CLMR SampleCNN encoder\): " + shape):
        load_clmr_checkpoint(tmp_path / "wrong.pt")
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.ckpt: not a loadable CLMR checkpoint"):
        load_clmr_checkpoint(tmp_path / "junk.ckpt")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_clmr_checkpoint(tmp_path / "absent.ckpt")


class _Named(torch.nn.Module):
    def __init__(self, model: SampleCNN):
        super().__init__()
        self.model = model

    def forward(self, waveform: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs = self.model(waveform)
        return tuple(outputs[name] for name, _, _ in BLOCKS)


def test_the_onnx_export_equals_pytorch(tmp_path: Path) -> None:
    import onnxruntime as ort

    model = random_sample_cnn(1)
    names = [name for name, _, _ in BLOCKS]
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_Named(model).eval(), (torch.randn(1, INPUT_SAMPLES),), str(tmp_path / "clmr.onnx"),
                          dynamo=False, opset_version=17, input_names=["waveform"], output_names=names,
                          dynamic_axes={"waveform": {0: "batch", 1: "samples"}})
    session = ort.InferenceSession(str(tmp_path / "clmr.onnx"), providers=["CPUExecutionProvider"])
    audio = (0.1 * np.random.default_rng(0).standard_normal((2, 3 * INPUT_SAMPLES))).astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(audio))
    for name, got in zip(names, session.run(None, {"waveform": audio})):
        want = expected[name].numpy()
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max(), err_msg=name)
