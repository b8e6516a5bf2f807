"""Clear errors: a missing FluidSynth or soundfont names the Debian package; bad manifests name the file and line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from marblekit.app.cli import main
from marblekit.core.task_format import load_task
from marblekit.synth.fluid import Renderer, SynthToolMissing
from marblekit.synth.midi import Note, Part, midi_bytes


def test_missing_soundfont_names_the_debian_package(tmp_path: Path) -> None:
    with pytest.raises(SynthToolMissing, match="fluid-soundfont-gm") as err:
        Renderer.locate(tmp_path / "absent.sf2")
    assert "absent.sf2" in str(err.value)


def test_no_installed_soundfont_names_the_debian_package(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("marblekit.synth.fluid.SOUNDFONTS", ((tmp_path / "FluidR3_GM.sf2", "fluid-soundfont-gm"),))
    with pytest.raises(SynthToolMissing, match="apt-get install fluid-soundfont-gm"):
        Renderer.locate()


def test_missing_fluidsynth_names_the_debian_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(SynthToolMissing, match="apt-get install fluidsynth"):
        Renderer.locate()


def test_cli_reports_a_missing_soundfont(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["synth", str(tmp_path / "out"), "--scale", "tiny", "--soundfont", str(tmp_path / "x.sf2")]) == 2
    assert "fluid-soundfont-gm" in capsys.readouterr().err


def test_cli_refuses_a_folder_that_is_not_a_task(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "synth-beat").mkdir()
    (tmp_path / "synth-beat" / "precious.txt").write_text("keep me")
    assert main(["synth", str(tmp_path), "--tasks", "synth-beat", "--scale", "tiny"]) == 2
    assert "not a synthetic task folder" in capsys.readouterr().err
    assert (tmp_path / "synth-beat" / "precious.txt").is_file()


def test_bad_label_names_manifest_line(tmp_path: Path) -> None:
    header = {"name": "synth-x", "kind": "multiclass", "metric": "accuracy", "classes": ["a", "b"], "chance": {},
              "seed": 0, "scale": "tiny", "generator_version": 1, "sample_rate": 44100, "clip_seconds": 4.0}
    (tmp_path / "task.json").write_text(json.dumps(header))
    good = {"id": "x-0", "path": "audio/x-0.wav", "split": "train", "piece": "p0", "label": 1}
    (tmp_path / "manifest.jsonl").write_text(json.dumps(good) + "\n" + json.dumps(good | {"label": 2}) + "\n")
    with pytest.raises(ValueError, match=r"manifest.jsonl:2: label 2 does not fit a multiclass task"):
        load_task(tmp_path)
    with pytest.raises(FileNotFoundError, match="task.json"):
        load_task(tmp_path / "nowhere")


def test_midi_writer_rejects_out_of_range_notes() -> None:
    with pytest.raises(ValueError, match="pitch 128"):
        midi_bytes([Part(0, [Note(0.0, 1.0, 128)])])
    with pytest.raises(ValueError, match="program 130"):
        midi_bytes([Part(130, [Note(0.0, 1.0, 60)])])
