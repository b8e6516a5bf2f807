"""The synthetic suite as data: manifests that read back typed, piece-disjoint splits, chance levels recomputed
independently, byte-identical renders for a seed, and full-scale counts."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import r2_score
from synth_support import render

from marblekit.core.task_format import MANIFEST_FILE, SPLITS, TASK_FILE, load_task
from marblekit.synth.midi import midi_bytes
from marblekit.synth.registry import TASKS

#: mir_eval's weighted key score, written out from its documentation (fifth above, relative, parallel)
_RELATION_SCORES = {("same", 0): 1.0, ("same", 7): 0.5, ("major->minor", 9): 0.3, ("minor->major", 3): 0.3,
                    ("major->minor", 0): 0.2, ("minor->major", 0): 0.2}


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return render(tmp_path_factory)


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _key_score(reference: int, guess: int) -> float:
    ref_minor, guess_minor = reference >= 12, guess >= 12
    relation = "same" if ref_minor == guess_minor else ("minor->major" if ref_minor else "major->minor")
    return _RELATION_SCORES.get((relation, (guess - reference) % 12), 0.0)


@pytest.mark.parametrize("name", list(TASKS))
def test_manifest_reads_back_with_typed_labels_and_audio(suite: Path, name: str) -> None:
    task = load_task(suite / name)
    assert task.name == name and task.scale == "tiny" and task.seed == 0 and task.sample_rate == 44100
    header = json.loads((suite / name / TASK_FILE).read_text())
    assert header["counts"] == {split: len(task.split(split)) for split in SPLITS}
    assert all(len(task.split(split)) > 0 for split in SPLITS)
    for item in task.items:
        assert item.path.is_file() and item.path.suffix == ".wav"
        if task.kind in ("multiclass", "key"):
            assert isinstance(item.label, int) and 0 <= item.label < len(task.classes)
        elif task.kind == "multilabel":
            assert item.label and set(item.label) <= set(task.classes)
        elif task.kind == "regression":
            assert len(item.label) == len(task.targets)
        elif task.kind == "beat":
            assert len(item.label) >= 8 and item.label == sorted(item.label)
        else:
            assert all(path.is_file() for path in item.label.values())


@pytest.mark.parametrize("name", list(TASKS))
def test_no_piece_or_clip_is_shared_across_splits(suite: Path, name: str) -> None:
    task = load_task(suite / name)
    pieces = {split: {item.piece for item in task.split(split)} for split in SPLITS}
    clips = {split: {hashlib.sha256(item.path.read_bytes()).hexdigest() for item in task.split(split)}
             for split in SPLITS}
    for a, b in (("train", "valid"), ("train", "test"), ("valid", "test")):
        assert not pieces[a] & pieces[b], f"{name}: pieces in both {a} and {b}"
        assert not clips[a] & clips[b], f"{name}: identical audio in both {a} and {b}"


def test_note_tasks_hold_out_whole_instruments(suite: Path) -> None:
    for name in ("synth-pitch", "synth-instrument"):
        task = load_task(suite / name)
        programs = {split: {item.meta["program"] for item in task.split(split)} for split in SPLITS}
        assert not programs["train"] & programs["test"] and not programs["train"] & programs["valid"]


def test_constant_predictors_stay_at_recorded_chance(suite: Path) -> None:
    for name in ("synth-pitch", "synth-instrument", "synth-key"):
        task = load_task(suite / name)
        test = [item.label for item in task.split("test")]
        best_constant = np.bincount(test, minlength=len(task.classes)).max() / len(test)
        assert task.chance["accuracy"] == pytest.approx(best_constant)
        # balanced splits: no constant beats one item per class more than the test size forces
        assert best_constant <= np.ceil(len(test) / len(task.classes)) / len(test)
    key = load_task(suite / "synth-key")
    test = [item.label for item in key.split("test")]
    best = max(np.mean([_key_score(label, guess) for label in test]) for guess in range(24))
    assert key.chance["weighted_score"] == pytest.approx(best)

    tagging = load_task(suite / "synth-tagging")
    prevalence = [np.mean([tag in item.label for item in tagging.split("test")]) for tag in tagging.classes]
    assert tagging.chance["average_precision"] == pytest.approx(np.mean([p for p in prevalence if p > 0]))
    assert tagging.chance["roc_auc"] == 0.5

    regression = load_task(suite / "synth-regression")
    train = np.array([item.label for item in regression.split("train")])
    test = np.array([item.label for item in regression.split("test")])
    expected = [r2_score(test[:, k], np.full(len(test), train[:, k].mean())) for k in range(test.shape[1])]
    assert regression.chance["r2"] == pytest.approx(expected)
    assert max(expected) <= 0.0

    beat = load_task(suite / "synth-beat")
    assert 0.0 <= beat.chance["f_measure"] < 0.5
    separation = load_task(suite / "synth-separation")
    assert set(separation.chance["sdr_mixture"]) == set(separation.stems)


@pytest.mark.parametrize("name", list(TASKS))
def test_full_scale_has_500_items_and_balanced_classes(name: str) -> None:
    plan = TASKS[name](0, "full")
    assert len(plan.items) >= 500
    if plan.kind in ("multiclass", "key"):
        for split in SPLITS:
            counts = Counter(item.label for item in plan.items if item.split == split)
            assert max(counts.values()) - min(counts.values()) <= 1 and len(counts) == len(plan.classes)


def test_plans_are_a_function_of_the_seed() -> None:
    for name, generate in TASKS.items():
        def fingerprint(seed: int) -> list[tuple]:
            return [(item.id, item.split, json.dumps(item.label), item.seconds,
                     tuple(midi_bytes(parts) for parts in item.stems.values())) for item in generate(seed, "tiny").items]
        assert fingerprint(0) == fingerprint(0), name
        assert fingerprint(0) != fingerprint(1), name


def test_same_seed_renders_byte_identical_files(suite: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    name = "synth-separation"  # four renders per item: drums, bass, chords and voice parts
    again, other = render(tmp_path_factory, 0, (name,)), render(tmp_path_factory, 1, (name,))
    assert _digest(again / name) == _digest(suite / name)
    assert (other / name / MANIFEST_FILE).read_bytes() != (suite / name / MANIFEST_FILE).read_bytes()
    assert set(_digest(other / name).values()).isdisjoint(
        digest for path, digest in _digest(suite / name).items() if path.endswith(".wav"))
