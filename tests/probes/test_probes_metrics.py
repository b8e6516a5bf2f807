"""The vectorised metrics against scikit-learn and mir_eval on fixed random inputs."""

from __future__ import annotations

import mir_eval
import numpy as np
import pytest
from sklearn.metrics import accuracy_score, average_precision_score, r2_score, roc_auc_score

from marblekit.core.keys import KEY_NAMES
from marblekit.probes import metrics


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(7)


def test_accuracy_matches_sklearn(rng):
    logits = rng.normal(size=(3, 50, 5))
    labels = rng.integers(0, 5, 50)
    got = metrics.accuracy(logits, labels)
    want = [accuracy_score(labels, p.argmax(-1)) for p in logits]
    np.testing.assert_allclose(got, want)


@pytest.mark.parametrize("ties", [False, True])
def test_roc_auc_and_ap_match_sklearn(rng, ties):
    targets = (rng.random((60, 7)) < 0.3).astype(int)
    targets[0] = 1
    targets[1] = 0
    scores = rng.normal(size=(4, 60, 7))
    if ties:
        scores = np.round(scores, 1)
    auc = metrics.roc_auc_macro(scores, targets)
    ap = metrics.average_precision_macro(scores, targets)
    np.testing.assert_allclose(auc, [roc_auc_score(targets, s, average="macro") for s in scores])
    np.testing.assert_allclose(ap, [average_precision_score(targets, s, average="macro") for s in scores])


def test_tags_without_both_classes_are_skipped(rng):
    targets = (rng.random((40, 4)) < 0.5).astype(int)
    targets[:, 2] = 0
    scores = rng.normal(size=(2, 40, 4))
    keep = [0, 1, 3]
    np.testing.assert_allclose(metrics.roc_auc_macro(scores, targets),
                               [roc_auc_score(targets[:, keep], s[:, keep]) for s in scores])


def test_r2_matches_sklearn(rng):
    targets = rng.normal(size=(30, 2))
    predictions = targets[None] + rng.normal(scale=0.5, size=(3, 30, 2))
    got = metrics.r2_per_output(predictions, targets)
    want = [r2_score(targets, p, multioutput="raw_values") for p in predictions]
    np.testing.assert_allclose(got, want)


def test_key_weights_match_mir_eval():
    weights = metrics.key_weight_matrix()
    for ref in range(24):
        for est in range(24):
            want = mir_eval.key.weighted_score(KEY_NAMES[ref], KEY_NAMES[est])
            assert weights[ref, est] == want, (KEY_NAMES[ref], KEY_NAMES[est])


def test_key_ensembles_match_a_plain_loop(rng):
    n_songs = 6
    clip_song = np.repeat(np.arange(n_songs), [1, 2, 3, 4, 2, 3])
    song_key = rng.integers(0, 24, n_songs)
    logits = rng.normal(size=(2, len(clip_song), 24))
    got = metrics.key_ensemble_scores(logits, clip_song, song_key)
    for p in range(2):
        for name in metrics.KEY_ENSEMBLES:
            scores = []
            for song in range(n_songs):
                clips = logits[p, clip_song == song]
                if name == "vote":
                    est = np.bincount(clips.argmax(-1), minlength=24).argmax()
                elif name == "max":
                    est = clips.max(0).argmax()
                elif name == "gmean":
                    est = clips.mean(0).argmax()
                else:
                    probs = np.exp(clips) / np.exp(clips).sum(-1, keepdims=True)
                    est = probs.mean(0).argmax()
                scores.append(mir_eval.key.weighted_score(KEY_NAMES[song_key[song]], KEY_NAMES[est]))
            assert got[name][p] == pytest.approx(np.mean(scores)), name


def test_beat_f_measure_is_micro_over_tracks(rng):
    reference = [np.sort(rng.uniform(0, 30, 40)) for _ in range(3)]
    estimated = [np.sort(r[: 20 + 5 * i] + rng.normal(scale=0.05, size=20 + 5 * i)) for i, r in enumerate(reference)]
    matched = sum(len(mir_eval.util.match_events(r, e, 0.07)) for r, e in zip(reference, estimated))
    precision = matched / sum(len(e) for e in estimated)
    recall = matched / sum(len(r) for r in reference)
    assert metrics.beat_f_measure(reference, estimated) == pytest.approx(2 * precision * recall / (precision + recall))
    # a single track: the micro value is mir_eval's untrimmed event F-measure
    one = metrics.beat_f_measure(reference[:1], estimated[:1])
    assert one == pytest.approx(mir_eval.onset.f_measure(reference[0], estimated[0], 0.07)[0])


def test_global_sdr(rng):
    s = rng.normal(size=(2, 1000))
    noise = rng.normal(scale=0.1, size=s.shape)
    want = 10 * np.log10((np.sum(s**2) + 1e-7) / (np.sum(noise**2) + 1e-7))
    assert metrics.global_sdr(s, s + noise) == pytest.approx(want)


def test_beat_evaluator_decodes_every_probe_with_madmom(rng):
    """Three probes' frame logits over two tracks (decoded in parallel processes) against madmom's DBN and
    the micro F-measure run on each probe directly."""
    from madmom.features.beats import DBNBeatTrackingProcessor

    from marblekit.probes.evaluators import BeatEvaluator

    fps, lengths = 50.0, (600, 450)
    references = [np.arange(0.5, n / fps - 0.5, 0.5) for n in lengths]
    row_item = np.repeat(np.arange(2), lengths)
    logits = rng.normal(scale=0.5, size=(3, len(row_item), 2))
    for track, beats in enumerate(references):
        frames = np.flatnonzero(row_item == track)[np.round(beats * fps).astype(int)]
        logits[:, frames, 1] += np.array([4.0, 1.0, 0.0])[:, None]  # probes from sharp to blind
    got = BeatEvaluator({"valid": row_item}, {"valid": references}, fps)(logits, "valid")["beat_f"]
    tracker = DBNBeatTrackingProcessor(fps=fps)
    probability = metrics.softmax(logits)[..., 1].astype(np.float32)
    want = [metrics.beat_f_measure(references, [tracker(probability[p, row_item == t]) for t in range(2)])
            for p in range(3)]
    np.testing.assert_allclose(got, want)
    assert got[0] > 0.9 > got[2]
