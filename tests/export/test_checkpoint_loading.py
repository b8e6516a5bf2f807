"""Loader parity: checkpoints written by transformers, read back through marblekit's loading path, give the
hidden states transformers computes on the original weights, for every backbone shape."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from marblekit.core.backbones import get_backbone
from marblekit.export.builders import MODEL_CLASSES, transformers_config
from marblekit.export.checkpoint import CheckpointError
from marblekit.export.loading import load_encoder

#: One backbone per distinct shape: post-LN HuBERT (all 95M MERTs, HuBERT), pre-LN 330M, data2vec-audio; the
#: HuBERT shapes also in the older weight_g/weight_v pickle (data2vec-audio has no weight-normed layer).
CASES = [("mert-v1-95m", "parametrizations"), ("mert-v1-95m", "weight_g/weight_v"),
         pytest.param("mert-v1-330m", "parametrizations", marks=pytest.mark.slow),
         pytest.param("mert-v1-330m", "weight_g/weight_v", marks=pytest.mark.slow),
         ("music2vec-v1", "parametrizations")]


def reference_model(name: str, seed: int = 7) -> torch.nn.Module:
    spec = get_backbone(name)
    _, model_class = MODEL_CLASSES[spec.family]
    torch.manual_seed(seed)
    return model_class(transformers_config(spec)).eval()


def reference_hidden_states(model: torch.nn.Module, waveform: torch.Tensor, pre_layer_norm: bool) -> torch.Tensor:
    """transformers' own list; for pre-LN the last entry is defined as last_hidden_state (post final LN)."""
    with torch.no_grad():
        out = model(waveform, output_hidden_states=True)
    states = list(out.hidden_states)
    if pre_layer_norm:
        states[-1] = out.last_hidden_state
    return torch.stack(states, dim=1)


def to_legacy_weight_norm_bin(directory: Path) -> None:
    """Rewrite a save_pretrained directory as the pre-2024 pickle with weight_g / weight_v names."""
    tensors = load_file(str(directory / "model.safetensors"))
    renamed = {key.replace("parametrizations.weight.original0", "weight_g")
               .replace("parametrizations.weight.original1", "weight_v"): value for key, value in tensors.items()}
    assert any(key.endswith("weight_g") for key in renamed), "fixture expects a weight-normed positional conv"
    (directory / "model.safetensors").unlink()
    torch.save(renamed, directory / "pytorch_model.bin")


@pytest.mark.parametrize(("name", "spelling"), CASES)
def test_loaded_checkpoint_matches_transformers(name: str, spelling: str, tmp_path: Path) -> None:
    spec = get_backbone(name)
    model = reference_model(name)
    model.save_pretrained(tmp_path)
    if spelling == "weight_g/weight_v":
        to_legacy_weight_norm_bin(tmp_path)
    encoder, provenance = load_encoder(spec, checkpoint=tmp_path)
    assert provenance.weights == "checkpoint" and len(provenance.checkpoint_sha256) == 64
    waveform = torch.randn(2, int(spec.sample_rate * 0.6), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ours = encoder(waveform)
    expected = reference_hidden_states(model, waveform, spec.pre_layer_norm)
    assert ours.shape == (2, spec.num_hidden_states, spec.num_frames(waveform.shape[1]), spec.dim)
    assert (ours - expected).abs().max().item() <= 1e-5


@pytest.mark.slow
def test_pre_ln_last_state_is_after_final_layer_norm(tmp_path: Path) -> None:
    """Whatever transformers version is installed, index L is the output of the final encoder LayerNorm."""
    spec = get_backbone("mert-v1-330m").with_layers(2)
    torch.manual_seed(0)
    model = MODEL_CLASSES["hubert"][1](transformers_config(spec)).eval()
    model.save_pretrained(tmp_path)
    encoder, _ = load_encoder(spec, checkpoint=tmp_path)
    waveform = torch.randn(1, 12000)
    with torch.no_grad():
        ours = encoder(waveform)
        last_layer_raw = ours[:, -2]
        features = model.feature_extractor(waveform).transpose(1, 2)
        hidden = model.feature_projection(features)
        hidden = hidden[0] if isinstance(hidden, tuple) else hidden
        hidden = hidden + model.encoder.pos_conv_embed(hidden)
        for layer in model.encoder.layers:
            hidden = layer(hidden)
            hidden = hidden[0] if isinstance(hidden, tuple) else hidden
        expected_last = model.encoder.layer_norm(hidden)
    assert torch.allclose(ours[:, -1], expected_last, atol=1e-5)
    assert not torch.allclose(ours[:, -1], hidden, atol=1e-2), "last state must not be the raw layer output"
    assert not torch.allclose(last_layer_raw, ours[:, -1], atol=1e-2)


# ---- bad input: every error names the file and the key -------------------------------------------------


@pytest.fixture()
def saved_95m(tmp_path: Path) -> Path:
    spec = get_backbone("mert-v1-95m").with_layers(1)
    torch.manual_seed(0)
    MODEL_CLASSES["hubert"][1](transformers_config(spec)).save_pretrained(tmp_path)
    return tmp_path


def load_1_layer(directory: Path) -> None:
    load_encoder(get_backbone("mert-v1-95m").with_layers(1), checkpoint=directory)


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_1_layer(tmp_path / "nope")


def test_missing_config(saved_95m: Path) -> None:
    (saved_95m / "config.json").unlink()
    with pytest.raises(CheckpointError, match=r"config\.json: missing"):
        load_1_layer(saved_95m)


def test_corrupt_config(saved_95m: Path) -> None:
    (saved_95m / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"config\.json: not valid JSON"):
        load_1_layer(saved_95m)


def test_unknown_architecture(saved_95m: Path) -> None:
    config = json.loads((saved_95m / "config.json").read_text())
    config["model_type"] = "wavlm"
    (saved_95m / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"config\.json: key 'model_type' is 'wavlm'; expected one of"):
        load_1_layer(saved_95m)


def test_config_of_another_backbone(saved_95m: Path) -> None:
    with pytest.raises(CheckpointError, match=r"config\.json: key 'num_hidden_layers' is 1; .* expects 12"):
        load_encoder(get_backbone("mert-v1-95m"), checkpoint=saved_95m)


def test_missing_weights(saved_95m: Path) -> None:
    (saved_95m / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="no weights; expected model.safetensors"):
        load_1_layer(saved_95m)


def test_truncated_weights(saved_95m: Path) -> None:
    path = saved_95m / "model.safetensors"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match=r"model\.safetensors: cannot read weights"):
        load_1_layer(saved_95m)


def test_shape_mismatch_names_key(saved_95m: Path) -> None:
    path = saved_95m / "model.safetensors"
    tensors = load_file(str(path))
    key = "encoder.layers.0.attention.q_proj.weight"
    tensors[key] = torch.zeros(768, 700)
    save_file(tensors, str(path))
    with pytest.raises(CheckpointError, match=rf"model\.safetensors: key '{key}' has shape \(768, 700\)"):
        load_1_layer(saved_95m)


def test_missing_key_is_named(saved_95m: Path) -> None:
    path = saved_95m / "model.safetensors"
    tensors = load_file(str(path))
    del tensors["encoder.layer_norm.weight"]
    save_file(tensors, str(path))
    with pytest.raises(CheckpointError, match=r"model\.safetensors: missing 1 key\(s\), e\.g\. 'encoder\.layer_norm\.weight'"):
        load_1_layer(saved_95m)


def test_pickle_with_code_is_refused(saved_95m: Path) -> None:
    (saved_95m / "model.safetensors").unlink()
    torch.save({"weights": torch.zeros(1), "payload": Path("x")}, saved_95m / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match=r"pytorch_model\.bin: cannot read weights"):
        load_1_layer(saved_95m)


def test_weights_required_unless_random_init() -> None:
    with pytest.raises(ValueError, match="--checkpoint DIR .* or --random-init"):
        load_encoder(get_backbone("mert-v1-95m"))
