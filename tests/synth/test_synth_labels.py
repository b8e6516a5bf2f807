"""The synthetic suite's labels checked against its rendered audio by independent numpy estimators."""

from __future__ import annotations

from pathlib import Path

import mir_eval
import numpy as np
import pytest
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score
from synth_support import (chroma, f0_yin, key_estimate, midi_of, onset_strength, read, register, render, spectrogram,
                           strength_near, tempo_estimate)

from marblekit.core.task_format import load_task


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return render(tmp_path_factory)


def test_f0_of_rendered_notes_matches_pitch_label(suite: Path) -> None:
    task = load_task(suite / "synth-pitch")
    first_key = 36
    assert task.classes[0] == "C2" and task.classes[-1] == "C7"
    hits = []
    for item in task.items:
        audio, rate = read(item.path)
        estimate = midi_of(f0_yin(audio[int(0.3 * rate):], rate))
        hits.append(abs(estimate - (first_key + item.label)) < 0.5)
    # organ stops with sub-octaves fool YIN now and then; a wrong label would miss nearly always
    assert np.mean(hits) >= 0.9, f"f0 agrees with the pitch label on only {np.mean(hits):.0%} of notes"


def test_chroma_key_estimate_agrees_with_key_label(suite: Path) -> None:
    task = load_task(suite / "synth-key")
    scores = [mir_eval.key.weighted_score(task.classes[item.label], key_estimate(*read(item.path)))
              for item in task.items]
    exact = np.mean(np.array(scores) == 1.0)
    # chance is 1/24 exact and about 0.08 weighted: a plain Krumhansl estimator gets the key right most of the time
    assert exact >= 0.45 and np.mean(scores) >= 0.6, f"key estimate: exact {exact:.0%}, weighted {np.mean(scores):.2f}"


def test_chroma_of_a_major_key_item_peaks_on_scale_tones(suite: Path) -> None:
    task = load_task(suite / "synth-key")
    item = next(item for item in task.items if item.label < 12)
    profile = chroma(*read(item.path))
    scale = {(item.label + step) % 12 for step in (0, 2, 4, 5, 7, 9, 11)}
    in_scale = profile[sorted(scale)].sum() / profile.sum()
    assert in_scale > 0.7, f"{item.id}: only {in_scale:.0%} of the chroma lies in {task.classes[item.label]}"


def test_onsets_peak_on_labelled_beats(suite: Path) -> None:
    task = load_task(suite / "synth-beat")
    for item in task.items:
        audio, rate = read(item.path)
        envelope, frame_rate = onset_strength(audio, rate)
        beats = np.asarray(item.label)
        period = np.median(np.diff(beats))
        on = np.median(strength_near(envelope, frame_rate, beats))
        between = np.median(strength_near(envelope, frame_rate, np.r_[beats + period / 4, beats + 3 * period / 4]))
        assert on > 3 * between, f"{item.id}: onset strength {on:.1f} on beats vs {between:.1f} between them"
        assert beats[-1] < task.clip_seconds and np.all(np.diff(beats) > 60 / 200)


def test_regression_targets_follow_the_audio(suite: Path) -> None:
    task = load_task(suite / "synth-regression")
    assert task.targets == ["tempo_bpm", "mean_pitch"]
    tempo_hits, registers, labels = [], [], []
    for item in task.items:
        audio, rate = read(item.path)
        envelope, frame_rate = onset_strength(audio, rate)
        estimate, bpm = tempo_estimate(envelope, frame_rate, 40, 240), item.label[0]
        tempo_hits.append(min(abs(np.log(estimate / (bpm * factor))) for factor in (0.5, 1, 2)) < 0.04)
        registers.append(register(audio, rate))
        labels.append(item.label[1])
    assert np.mean(tempo_hits) >= 0.75, f"tempo estimate within 4 % (or an octave) on {np.mean(tempo_hits):.0%}"
    correlation = spearmanr(labels, registers).statistic
    assert correlation > 0.4, f"register label vs spectral pitch centroid: Spearman {correlation:.2f}"


def test_drum_and_bass_tags_show_in_the_spectrum(suite: Path) -> None:
    task = load_task(suite / "synth-tagging")
    treble, low = [], []
    for item in task.items:
        audio, rate = read(item.path)
        power = spectrogram(audio, 4096, 2048) ** 2
        freqs = np.fft.rfftfreq(4096, 1 / rate)
        treble.append(power[:, freqs > 6000].sum() / power.sum())
        low.append(power[:, freqs < 110].sum() / power.sum())
    assert roc_auc_score(["drums" in item.label for item in task.items], treble) > 0.9
    assert roc_auc_score(["bass" in item.label for item in task.items], low) > 0.7


def test_stems_sum_to_the_mixture(suite: Path) -> None:
    task = load_task(suite / "synth-separation")
    assert task.stems == ["drums", "bass", "other", "vocals"]
    for item in task.items:
        mixture, rate = read(item.path)
        stems = {name: read(path)[0] for name, path in item.label.items()}
        assert rate == 44100 and all(len(stem) == len(mixture) for stem in stems.values())
        # each of the five 16-bit files is off by less than one quantisation step
        assert np.max(np.abs(mixture - sum(stems.values()))) <= 5 / 32768
        assert all(np.sqrt(np.mean(stem ** 2)) > 1e-3 for stem in stems.values()), f"{item.id}: a silent stem"
