"""CLMR's SampleCNN: CLMR's module names and shapes, its checkpoint formats imported exactly, and the registered
``clmr`` backbone exported from such a checkpoint equal to PyTorch. No CLMR weights can be downloaded here, so the checkpoints are written by the test in the
formats CLMR's training code produces (a PyTorch-Lightning .ckpt; a plain state dict)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from marblekit.core.backbones import get_backbone
from marblekit.core.checksums import sha256_of
from marblekit.export.clmr import BLOCKS, SampleCNN, load_clmr_checkpoint, random_sample_cnn
from marblekit.export.pipeline import export_model
from marblekit.export.plugins import CLMR_INPUT_SAMPLES as INPUT_SAMPLES

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


def test_marblekit_export_of_a_clmr_checkpoint_serves_every_block(tmp_path: Path) -> None:
    """``marblekit export clmr --checkpoint FILE``: the graph passes its parity gate, records the checkpoint, and
    serves every block's mean side by side (128 to 512 wide, no padding) and the frames of the two blocks at one
    frame per 59049 samples."""
    import onnxruntime as ort

    trained = random_sample_cnn(4)
    torch.save(_lightning(trained), tmp_path / "clmr.ckpt")
    spec = get_backbone("clmr")
    report = export_model(spec, tmp_path / "repo", checkpoint=tmp_path / "clmr.ckpt")
    assert report.parity_ok and report.provenance["weights"] == "checkpoint", report.summary()
    assert report.provenance["checkpoint_sha256"] == sha256_of(tmp_path / "clmr.ckpt")
    session = ort.InferenceSession(str(report.model_dir / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    audio = (0.1 * np.random.default_rng(0).standard_normal((2, 3 * INPUT_SAMPLES + 100))).astype(np.float32)
    frames, pooled = session.run(["frames", "pooled"], {"waveform": audio})
    with torch.no_grad():
        expected = trained(torch.from_numpy(audio))
    names = [name for name, _, _ in BLOCKS]
    want_pooled = torch.cat([expected[name].mean(dim=1) for name in names], dim=1).numpy()
    want_frames = torch.cat([expected[names[k]] for k in spec.frame_states], dim=2).numpy()
    assert spec.frame_states == (9, 10) and frames.shape == (2, 3, 1024) and pooled.shape == (2, sum(spec.dims))
    np.testing.assert_allclose(pooled, want_pooled, rtol=1e-4, atol=1e-4 * np.abs(want_pooled).max())
    np.testing.assert_allclose(frames, want_frames, rtol=1e-4, atol=1e-4 * np.abs(want_frames).max())
