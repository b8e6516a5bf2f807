"""The main job at tiny scale, through the real embedded Triton: the leaderboard has every synthetic task for
every backbone, the pretrained musicnn-mtt row included (its stores extracted through Triton and probed end to
end), and the handcrafted features beat each task's recorded chance level where they carry the information."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from marblekit.app.cli import main
from marblekit.core.backbones import get_backbone
from marblekit.export.plugins import musicnn_unavailable
from marblekit.serving.environment import environment_problem
from marblekit.synth.fluid import missing_renderer
from marblekit.synth.registry import TASKS

MISSING = environment_problem()
PRETRAINED = [] if musicnn_unavailable(get_backbone("musicnn-mtt")) else ["musicnn-mtt"]


pytestmark = [pytest.mark.triton,
              pytest.mark.skipif(MISSING is not None, reason=f"no serving environment: {MISSING}"),
              pytest.mark.skipif(missing_renderer() is not None, reason=f"no FluidSynth: {missing_renderer()}")]

#: Tasks whose labels the handcrafted layers encode well enough to show on the tiny suite's handful of test
#: items (onsets for beats, spectra for instrument tags): the probe's test metric and the constant
#: predictor's score recorded in task.json under that name. The small suite's figures are in the README.
HANDCRAFTED_BEATS_CHANCE = {"synth-beat": ("beat_f", "f_measure"), "synth-tagging": ("aucroc", "roc_auc")}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    out = tmp_path_factory.mktemp("demo")
    assert main(["demo", "--scale", "tiny", "--out", str(out), "--no-progress", "--max-epochs", "15"]) == 0
    yield out
    shutil.rmtree(out, ignore_errors=True)  # a few hundred MB of audio, models and stores


def test_leaderboard_has_every_task_for_both_backbones(demo: Path) -> None:
    table = (demo / "report" / "table.md").read_text()
    header, _, *rows = table.strip().splitlines()
    assert all(task in header for task in TASKS)
    backbones = [row.split("|")[1].strip() for row in rows]
    assert backbones == ["handcrafted", "mert-v0-2l (random init)", *(f"{name} (pretrained)" for name in PRETRAINED)]
    assert (demo / "report" / "layers.png").stat().st_size > 10_000
    weights = {"handcrafted": "none", "mert-v0-2l": "random-init", "musicnn-mtt": "checkpoint"}
    for backbone in ("handcrafted", "mert-v0-2l", *PRETRAINED):
        for task in TASKS:
            results = json.loads((demo / "probes" / backbone / task / "results.json").read_text())
            assert results["store_metadata"]["random_init"] is (backbone == "mert-v0-2l")
            assert results["store_metadata"]["weights"] == weights[backbone]


@pytest.mark.parametrize("task", HANDCRAFTED_BEATS_CHANCE)
def test_handcrafted_beats_chance(demo: Path, task: str) -> None:
    metric, chance_key = HANDCRAFTED_BEATS_CHANCE[task]
    results = json.loads((demo / "probes" / "handcrafted" / task / "results.json").read_text())
    chance = json.loads((demo / "suite" / task / "task.json").read_text())["chance"][chance_key]
    assert results["winner"]["test"][metric] > chance + 0.1, (results["winner"], chance)
