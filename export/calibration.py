"""The calibration set of a static INT8 export: model-rate windows of a synthetic suite's train clips.

Static quantisation fixes every activation's 8-bit range ahead of time from what the graph sees on these
windows. They come from the train splits only, so the export gate's test scores are not measured on audio the
ranges were fitted to; they are prepared as the extractor prepares a track (mono, resampled, z-normalised when
the backbone wants it), and drawn round-robin over the suite's tasks so every kind of music is in the set.
A few more windows are held out of the fit: the parity check of a static export runs on them, since ranges
fitted to music clip what music does not reach (seeded noise, the other precisions' parity input, has far more
high-frequency energy: handcrafted's MFCC layer scored a cosine of 0.987 on noise).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from marblekit.core.audio_input import Preparation, prepare
from marblekit.core.backbones import BackboneSpec
from marblekit.core.task_format import TASK_FILE, load_task


def suite_tasks(suite: Path) -> list[Path]:
    """The task folders of a rendered suite (``marblekit synth OUT``), in name order."""
    folders = sorted(path.parent for path in Path(suite).glob(f"*/{TASK_FILE}"))
    if not folders:
        raise FileNotFoundError(f"{suite}: no task folders (*/{TASK_FILE}); expected a suite written by "
                                f"`marblekit synth {suite}`")
    return folders


#: windows the activation ranges are fitted on, and windows held out of the fit for the parity check
FIT_WINDOWS = 16
HELD_OUT = 3


@dataclass(frozen=True)
class Calibration:
    fit: list[np.ndarray]  # the windows the activation ranges come from
    held_out: list[np.ndarray]  # HELD_OUT more, for the parity check

    def parity_inputs(self, unit: int) -> list[np.ndarray]:
        """The parity check's two batches, ``[1, 1.5 unit]`` and ``[3, 2.25 unit]`` samples (shorter when the
        held-out windows are), cut from the held-out windows."""
        length = min([int(2.25 * unit)] + [window.shape[1] for window in self.held_out])
        return [self.held_out[0][:, :min(int(1.5 * unit), length)],
                np.concatenate([window[:, :length] for window in self.held_out])]


def calibration_set(suite: Path, spec: BackboneSpec, count: int = FIT_WINDOWS, seconds: float = 5.0,
                    seed: int = 0) -> Calibration:
    """``count`` fit windows and ``HELD_OUT`` parity windows of the suite's train clips."""
    windows = calibration_windows(suite, spec, count + HELD_OUT, seconds, seed)
    if len(windows) <= HELD_OUT:
        raise ValueError(f"{suite}: only {len(windows)} train clips to calibrate {spec.name} on; need more than "
                         f"{HELD_OUT}")
    return Calibration(windows[:-HELD_OUT], windows[-HELD_OUT:])


def calibration_windows(suite: Path, spec: BackboneSpec, count: int = 16, seconds: float = 5.0,
                        seed: int = 0) -> list[np.ndarray]:
    """``count`` windows ``[1, samples]`` float32 of ``seconds`` (whole clips when shorter, never shorter than
    the receptive field), each from a different train clip where the suite has enough."""
    if count < 1:
        raise ValueError(f"calibration window count must be at least 1, got {count}")
    rng = np.random.default_rng(seed)
    how = Preparation(spec.sample_rate, spec.normalize_input)
    pools = [list(rng.permutation([item.path for item in load_task(folder).split("train")]))
             for folder in suite_tasks(suite)]
    length = max(int(round(seconds * spec.sample_rate)), spec.receptive_field)
    windows = []
    while len(windows) < count and any(pools):
        for pool in (pool for pool in pools if pool):
            if len(windows) == count:
                break
            samples = prepare(Path(pool.pop()), 0.0, None, how)
            if len(samples) < spec.receptive_field:
                continue
            start = int(rng.integers(0, len(samples) - length + 1)) if len(samples) > length else 0
            windows.append(samples[None, start:start + length].astype(np.float32))
    if not windows:
        raise ValueError(f"{suite}: no train clip is as long as {spec.name}'s receptive field "
                         f"({spec.receptive_field} samples at {spec.sample_rate} Hz)")
    return windows
