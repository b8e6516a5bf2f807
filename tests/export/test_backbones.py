"""Backbone specs: the frame-count formula against the models themselves, and the `models` listing."""

from __future__ import annotations

import json

import pytest
import torch

from marblekit.app.cli import main
from marblekit.core.backbones import BACKBONES, get_backbone
from marblekit.export.builders import random_encoder

# The specs marblekit.core holds, and those that come through marblekit's own `marblekit.backbones` entry points.
PUBLISHED = ["mert-v1-95m", "mert-v1-330m", "mert-v0", "mert-v0-public", "music2vec-v1", "hubert-base",
             "data2vec-audio-base", "handcrafted"]
PLUGGED_IN = ["musicnn-mtt", "musicnn-msd", "clmr", "mule"]


def test_every_published_backbone_is_listed(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert sorted(rows) == sorted(PUBLISHED + PLUGGED_IN)
    assert rows["mert-v1-95m"]["frame_rate"] == 75 and rows["mert-v1-95m"]["hidden_states"] == 13
    assert rows["mert-v1-330m"]["hidden_states"] == 25 and rows["mert-v1-330m"]["dim"] == 1024
    assert rows["mert-v1-330m"]["normalize_input"] is False and rows["mert-v1-95m"]["normalize_input"] is True
    assert rows["hubert-base"]["sample_rate"] == 16000


@pytest.mark.parametrize("family_member", ["mert-v1-95m", "music2vec-v1"])
def test_frame_formula_matches_the_conv_encoder(family_member: str) -> None:
    spec = get_backbone(family_member).with_layers(1)
    encoder = random_encoder(spec, seed=0)
    for samples in (400, 401, 719, 720, 24000, 24001):
        with torch.no_grad():
            frames = encoder(torch.zeros(1, samples) + 0.01 * torch.randn(1, samples)).shape[2]
        assert frames == spec.num_frames(samples) == (samples - 400) // 320 + 1
    assert spec.num_frames(399) == 0


def test_unknown_backbone_names_the_choices() -> None:
    with pytest.raises(ValueError, match="unknown backbone 'mert-v2'; expected one of: ") as refused:
        get_backbone("mert-v2")
    choices = str(refused.value).split("expected one of: ")[1].split(", ")
    assert choices == sorted(PUBLISHED + PLUGGED_IN)


def test_specs_are_consistent() -> None:
    for spec in BACKBONES.values():
        assert spec.frame_rate == spec.sample_rate / spec.hop
        if spec.needs_weights:
            assert spec.dim % spec.heads == 0 and spec.dim // spec.heads == 64
