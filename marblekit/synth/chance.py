"""Chance levels: what a predictor that ignores the audio scores on the test split, computed from the labels
(a constant fitted on train, or the best constant in hindsight where that is the honest ceiling).

- multiclass / key: ``accuracy`` = share of the most frequent test class (no constant does better) and
  ``train_majority_accuracy``; for key also ``weighted_score``, the best constant key's mean mir_eval weighted score.
- multilabel: ``roc_auc`` = 0.5 and ``average_precision`` = mean test prevalence of the tags (the AP of a
  constant score), over tags that occur in the test split.
- regression: ``r2`` = per target, the R² on test of predicting the train mean (about 0, slightly below).
- beat: ``f_measure`` = mean mir_eval F-measure on test of a metronome at the median train tempo from t = 0.
- separation: ``sdr_mixture`` = per stem, the mean test SDR (dB) of taking the mixture as the stem estimate."""

from __future__ import annotations

from collections import Counter
from typing import Any

import mir_eval
import numpy as np

from marblekit.core.task_format import KINDS


def _by_split(records: list[dict[str, Any]], split: str) -> list[Any]:
    return [record["label"] for record in records if record["split"] == split]


def _classes(train: list[int], test: list[int]) -> dict[str, float]:
    counts = Counter(test)
    majority = Counter(train).most_common(1)[0][0]
    return {"accuracy": max(counts.values()) / len(test), "train_majority_accuracy": counts[majority] / len(test)}


def _key(test: list[int], classes: list[str]) -> float:
    return max(float(np.mean([mir_eval.key.weighted_score(classes[label], guess) for label in test]))
               for guess in classes)


def _beat(train: list[list[float]], test: list[list[float]]) -> float:
    period = float(np.median([np.median(np.diff(beats)) for beats in train]))
    scores = []
    for beats in test:
        metronome = np.arange(0.0, beats[-1] + period, period)
        scores.append(mir_eval.beat.f_measure(np.asarray(beats), metronome))
    return float(np.mean(scores))


def _r2(train: list[list[float]], test: list[list[float]]) -> list[float]:
    train_mean, truth = np.mean(train, axis=0), np.asarray(test)
    residual = ((truth - train_mean) ** 2).sum(axis=0)
    total = ((truth - truth.mean(axis=0)) ** 2).sum(axis=0)
    return [float(v) for v in 1.0 - residual / total]


def chance_levels(kind: str, classes: list[str], stems: list[str], records: list[dict[str, Any]]) -> dict[str, Any]:
    """Chance levels of a task from its manifest records (``split``, ``label``, and ``meta`` for separation)."""
    if kind not in KINDS:
        raise ValueError(f"unknown task kind {kind!r}: expected one of {KINDS}")
    train, test = _by_split(records, "train"), _by_split(records, "test")
    if not train or not test:
        raise ValueError(f"chance levels need train and test items, got {len(train)} and {len(test)}")
    if kind == "multiclass":
        return _classes(train, test)
    if kind == "key":
        return _classes(train, test) | {"weighted_score": _key(test, classes)}
    if kind == "multilabel":
        prevalence = [np.mean([tag in labels for labels in test]) for tag in classes]
        return {"roc_auc": 0.5, "average_precision": float(np.mean([p for p in prevalence if p > 0]))}
    if kind == "regression":
        return {"r2": _r2(train, test)}
    if kind == "beat":
        return {"f_measure": _beat(train, test)}
    sdr = [record["meta"]["sdr_mixture"] for record in records if record["split"] == "test"]
    return {"sdr_mixture": {stem: float(np.mean([s[stem] for s in sdr])) for stem in stems}}
