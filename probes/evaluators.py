"""Per-task scoring of every probe's outputs at once (see ``types.Evaluator``). Each evaluator holds the
labels of the validation and test splits and returns metric -> [P], including ``score`` (the task score
on a 0-1 scale, or dB for separation) and the metric named by ``monitor``."""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np

from marblekit.probes import metrics
from marblekit.probes.parallel import fork_context


@dataclass
class MulticlassEvaluator:
    """Accuracy of the argmax of item-averaged logits."""

    labels: dict[str, np.ndarray]
    monitor: str = "acc"

    def __call__(self, outputs: np.ndarray, split: str, valid: dict | None = None) -> dict[str, np.ndarray]:
        acc = metrics.accuracy(outputs, self.labels[split])
        return {"acc": acc, "score": acc}


@dataclass
class MultilabelEvaluator:
    """Macro ROC-AUC and AP of item-averaged logits; the task score is their mean."""

    targets: dict[str, np.ndarray]
    monitor: str = "aucroc"

    def __call__(self, outputs: np.ndarray, split: str, valid: dict | None = None) -> dict[str, np.ndarray]:
        roc = metrics.roc_auc_macro(outputs, self.targets[split])
        ap = metrics.average_precision_macro(outputs, self.targets[split])
        return {"aucroc": roc, "ap": ap, "score": (roc + ap) / 2}


@dataclass
class RegressionEvaluator:
    """R² per output (named) and their uniform average, which is both monitor and score."""

    targets: dict[str, np.ndarray]
    names: tuple[str, ...]
    monitor: str = "r2"

    def __call__(self, outputs: np.ndarray, split: str, valid: dict | None = None) -> dict[str, np.ndarray]:
        r2 = metrics.r2_per_output(outputs, self.targets[split])
        out = {f"r2_{name}": r2[:, i] for i, name in enumerate(self.names)}
        out["r2"] = r2.mean(-1)
        out["score"] = out["r2"]
        return out


@dataclass
class KeyEvaluator:
    """GiantSteps: clip logits ensembled per song four ways and scored with the mir_eval weighted score.
    The monitor is the best ensemble on validation; the test score uses each probe's validation-selected
    ensemble (the reference's ``test_ensemble_score_val-select``)."""

    clip_song: dict[str, np.ndarray]
    song_key: dict[str, np.ndarray]
    monitor: str = "best_ensemble_score"

    def __call__(self, outputs: np.ndarray, split: str, valid: dict | None = None) -> dict[str, np.ndarray]:
        scores = metrics.key_ensemble_scores(outputs, self.clip_song[split], self.song_key[split])
        stacked = np.stack([scores[name] for name in metrics.KEY_ENSEMBLES], axis=1)
        out = {f"ensemble_{name}": scores[name] for name in metrics.KEY_ENSEMBLES}
        out["best_ensemble_score"] = stacked.max(1)
        if valid is None:
            out["score"] = out["best_ensemble_score"]
        else:
            chosen = np.stack([valid[f"ensemble_{name}"] for name in metrics.KEY_ENSEMBLES], axis=1).argmax(1)
            out["ensemble_score_val_select"] = stacked[np.arange(len(chosen)), chosen]
            out["score"] = out["ensemble_score_val_select"]
        return out


@dataclass
class BeatEvaluator:
    """Frame-wise beat head: softmax beat probability per frame, madmom's DBN beat tracker at the frame
    rate with default arguments, then the micro F-measure at 70 ms over the split. Probes are decoded in
    parallel processes when there are several (vectorised mode) and this process may have children."""

    row_item: dict[str, np.ndarray]
    beats: dict[str, list[np.ndarray]]
    fps: float
    monitor: str = "beat_f"

    def __call__(self, outputs: np.ndarray, split: str, valid: dict | None = None) -> dict[str, np.ndarray]:
        beat_prob = metrics.softmax(outputs)[..., 1].astype(np.float32)
        bounds = np.searchsorted(self.row_item[split], np.arange(1, len(self.beats[split])))  # rows are by item
        jobs = [(np.split(probe, bounds), self.beats[split], self.fps) for probe in beat_prob]
        workers = min(len(jobs), os.cpu_count() or 1)
        if workers < 2 or multiprocessing.current_process().daemon:
            f = np.array([_decoded_beat_f(job) for job in jobs])
        else:
            with ProcessPoolExecutor(workers, mp_context=fork_context()) as pool:
                f = np.array(list(pool.map(_decoded_beat_f, jobs)))
        return {"beat_f": f, "score": f}


def _decoded_beat_f(job: tuple[list[np.ndarray], list[np.ndarray], float]) -> float:
    """One probe: DBN-decode each track's beat probabilities and score them against the references."""
    from madmom.features.beats import DBNBeatTrackingProcessor

    tracks, references, fps = job
    tracker = DBNBeatTrackingProcessor(fps=fps)
    return metrics.beat_f_measure(references, [tracker(track) for track in tracks])