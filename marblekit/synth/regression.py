"""``synth-regression``: two continuous targets per clip (Emomusic-like): the tempo in BPM (60-180, steady) and
the register, the mean MIDI key of all pitched notes (the whole arrangement is transposed by -12..+12 keys)."""

from __future__ import annotations

import numpy as np

from marblekit.synth import arrangement, theory
from marblekit.synth.plan import MIX, ItemSpec, Size, TaskPlan, item_rng, split_sequence, task_rng

SIZES = {"tiny": Size(32, 6.0), "small": Size(120, 6.0), "full": Size(1000, 15.0)}
TARGETS = ["tempo_bpm", "mean_pitch"]


def regression_task(seed: int, scale: str) -> TaskPlan:
    """Songs labelled ``[tempo_bpm, mean_pitch]``."""
    name, size = "synth-regression", SIZES[scale]
    splits = split_sequence(task_rng(seed, name), size.items)
    items = []
    for index, split in enumerate(splits):
        item = item_rng(seed, name, index)
        bpm = float(item.uniform(60, 180))
        beats = arrangement.beat_grid(item, size.seconds, bpm, drift=0.0)
        song = arrangement.make_song(item, int(item.integers(12)), bool(item.random() < 0.5), beats,
                                     transpose=int(item.integers(-12, 13)))
        parts = [arrangement.chord_part(item, song, int(item.choice(theory.CHORD_PROGRAMS))),
                 arrangement.bass_part(item, song, int(item.choice(theory.BASS_PROGRAMS))),
                 arrangement.melody_part(item, song, int(item.choice(theory.MELODY_PROGRAMS)))]
        if item.random() < 0.6:
            parts.append(arrangement.drum_part(item, song))
        pitches = [p for part in parts for p in part.pitches()]
        label = [round(bpm, 3), round(float(np.mean(pitches)), 3)]
        items.append(ItemSpec(f"regression-{index:05d}", split, f"song-{index:05d}", label, size.seconds,
                              {MIX: parts}, {"transpose": song.transpose}))
    return TaskPlan(name, "regression", "r2", items, targets=list(TARGETS))
