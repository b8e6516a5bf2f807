"""MARBLE's metrics, vectorised over a leading probe axis so that one validation pass scores every probe.

Array shapes: ``P`` probes, ``N`` items, ``C`` classes / tags / outputs. Each function gives the value the
reference computes with torchmetrics, scikit-learn or mir_eval (the tests check that) on numpy arrays.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: song-level ensembles of clip outputs, in the reference's order (also the tie-break order)
KEY_ENSEMBLES = ("vote", "max", "gmean", "mean")


def accuracy(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Micro accuracy per probe: logits [P, N, C], labels [N] -> [P]."""
    return (logits.argmax(-1) == labels[None]).mean(-1)


def _scored_labels(targets: np.ndarray) -> np.ndarray:
    """Tags with both classes present: the only ones a ROC-AUC / AP is defined for (others are skipped)."""
    positives = targets.sum(0)
    keep = (positives > 0) & (positives < targets.shape[0])
    if not keep.any():
        raise ValueError("multilabel metrics need at least one tag with both positive and negative items")
    return keep


def roc_auc_macro(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Macro ROC-AUC per probe from ranks (Mann-Whitney U, ties averaged): scores [P, N, C], targets [N, C].

    Tags without both classes in ``targets`` are left out of the mean (scikit-learn raises on them).
    """
    from scipy.stats import rankdata  # imported here: scipy.stats takes 0.4 s, paid only by tagging tasks

    keep = _scored_labels(targets)
    y = targets[:, keep].astype(bool)
    ranks = rankdata(scores[:, :, keep], axis=1)
    n_pos = y.sum(0)
    n_neg = y.shape[0] - n_pos
    rank_sum = (ranks * y[None]).sum(1)
    auc = (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return auc.mean(-1)


def average_precision_macro(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Macro average precision per probe (scikit-learn's step-wise AP, tied scores form one threshold).

    AP = mean over positives of the precision at the end of the tie group that holds them.
    Tags without both classes are left out, as in ``roc_auc_macro``.
    """
    keep = _scored_labels(targets)
    y = targets[:, keep].astype(np.float64)
    s = scores[:, :, keep]
    order = np.argsort(-s, axis=1, kind="stable")
    s_sorted = np.take_along_axis(s, order, axis=1)
    y_sorted = np.take_along_axis(np.broadcast_to(y[None], s.shape), order, axis=1)
    n = s.shape[1]
    true_pos = np.cumsum(y_sorted, axis=1)
    position = np.arange(n).reshape(1, n, 1)
    is_group_end = np.ones(s.shape, dtype=bool)
    is_group_end[:, :-1] = s_sorted[:, :-1] != s_sorted[:, 1:]
    end_index = np.where(is_group_end, position, n)
    end_index = np.minimum.accumulate(end_index[:, ::-1], axis=1)[:, ::-1]
    precision_at_end = np.take_along_axis(true_pos, end_index, axis=1) / (end_index + 1)
    ap = (precision_at_end * y_sorted).sum(1) / y.sum(0)
    return ap.mean(-1)


def r2_per_output(predictions: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Coefficient of determination per probe and output: predictions [P, N, K], targets [N, K] -> [P, K]."""
    residual = ((predictions - targets[None]) ** 2).sum(1)
    total = ((targets - targets.mean(0)) ** 2).sum(0)
    return 1.0 - residual / total


def key_weight_matrix() -> np.ndarray:
    """[24, 24] weighted score of (reference, estimate) class pairs, mir_eval's rules without descending
    fifths: same key 1, estimate a fifth above in the same mode 0.5, relative major/minor 0.3, parallel 0.2."""
    weights = np.zeros((24, 24))
    for ref in range(24):
        ref_tonic, ref_minor = ref % 12, ref >= 12
        for est in range(24):
            est_tonic, est_minor = est % 12, est >= 12
            step = (est_tonic - ref_tonic) % 12
            if ref == est:
                weights[ref, est] = 1.0
            elif est_minor == ref_minor and step == 7:
                weights[ref, est] = 0.5
            elif est_minor != ref_minor and step == (3 if ref_minor else 9):
                weights[ref, est] = 0.3
            elif est_minor != ref_minor and step == 0:
                weights[ref, est] = 0.2
    return weights


def _group_reduce(values: np.ndarray, groups: np.ndarray, n_groups: int, how: str) -> np.ndarray:
    """Reduce values [P, N, C] over items sharing a group id -> [P, G, C] ('sum' or 'max')."""
    p, _, c = values.shape
    if how == "sum":
        out = np.zeros((p, n_groups, c))
        np.add.at(out, (slice(None), groups), values)
    else:
        out = np.full((p, n_groups, c), -np.inf)
        np.maximum.at(out, (slice(None), groups), values)
    return out


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis, keepdims=True))
    return shifted / shifted.sum(axis, keepdims=True)


def key_song_predictions(clip_logits: np.ndarray, clip_song: np.ndarray, n_songs: int) -> dict[str, np.ndarray]:
    """Song-level key class per probe for each ensemble: clip logits [P, N, 24] -> {name: [P, S]}.

    vote: most frequent clip argmax (lowest class on a tie); max: argmax of the element-wise max of clip
    logits; gmean: argmax of the mean logit; mean: argmax of the mean softmax probability.
    """
    counts = _group_reduce(np.eye(24)[clip_logits.argmax(-1)], clip_song, n_songs, "sum")
    return {
        "vote": counts.argmax(-1),
        "max": _group_reduce(clip_logits, clip_song, n_songs, "max").argmax(-1),
        "gmean": _group_reduce(clip_logits, clip_song, n_songs, "sum").argmax(-1),
        "mean": _group_reduce(softmax(clip_logits), clip_song, n_songs, "sum").argmax(-1),
    }


def key_ensemble_scores(clip_logits: np.ndarray, clip_song: np.ndarray, song_key: np.ndarray) -> dict[str, np.ndarray]:
    """Mean weighted score over songs per probe for each ensemble: {name: [P]}."""
    weights = key_weight_matrix()
    predictions = key_song_predictions(clip_logits, clip_song, len(song_key))
    return {name: weights[song_key[None], est].mean(-1) for name, est in predictions.items()}


def beat_f_measure(reference: Sequence[np.ndarray], estimated: Sequence[np.ndarray], window: float = 0.07) -> float:
    """Micro F-measure of beat times pooled over a split: matches, estimates and references are summed over
    tracks before F is computed once (MARBLE's BeatFMeasure; no 5 s trimming)."""
    import mir_eval

    matched = n_ref = n_est = 0
    for ref, est in zip(reference, estimated, strict=True):
        ref, est = np.asarray(ref, dtype=float), np.asarray(est, dtype=float)
        mir_eval.beat.validate(ref, est)
        matched += len(mir_eval.util.match_events(ref, est, window))
        n_ref += len(ref)
        n_est += len(est)
    if n_ref == 0 or n_est == 0:
        return 0.0
    precision, recall = matched / n_est, matched / n_ref
    return 0.0 if matched == 0 else 2 * precision * recall / (precision + recall)


def global_sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    """MDX-2021 global SDR of one track in dB: 10 log10((sum s^2 + 1e-7) / (sum (s - s_hat)^2 + 1e-7))."""
    signal = np.sum(np.square(reference, dtype=np.float64))
    error = np.sum(np.square(reference - estimate, dtype=np.float64))
    return float(10.0 * np.log10((signal + 1e-7) / (error + 1e-7)))
