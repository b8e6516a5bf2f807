"""``synth-tagging``: which of ten instruments play (MagnaTagATune-like multi-label). Each tag is present with
probability 0.35 (at least one per clip) and plays its usual role: chords, bass line, pad, melody or drums."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from marblekit.synth import arrangement
from marblekit.synth.arrangement import Song
from marblekit.synth.midi import Part
from marblekit.synth.plan import MIX, ItemSpec, Size, TaskPlan, item_rng, split_sequence, task_rng

SIZES = {"tiny": Size(32, 5.0), "small": Size(160, 6.0), "full": Size(2000, 10.0)}
_Role = Callable[[np.random.Generator, Song, int], Part]


def _melody(low: int) -> _Role:
    return lambda rng, song, program: arrangement.melody_part(rng, song, program, low, low + 22)


#: tag -> (programs it is played by, role)
TAGS: dict[str, tuple[tuple[int, ...], _Role]] = {
    "piano": ((0, 1, 2), arrangement.chord_part),
    "organ": ((16, 17, 19), lambda rng, song, program: arrangement.chord_part(rng, song, program, 60)),
    "guitar": ((24, 25, 27), lambda rng, song, program: arrangement.chord_part(rng, song, program, 45)),
    "bass": ((32, 33, 34), arrangement.bass_part),
    "strings": ((48, 49), lambda rng, song, program: arrangement.pad_part(song, program)),
    "brass": ((56, 57, 61), _melody(55)),
    "saxophone": ((64, 65, 66), _melody(58)),
    "flute": ((72, 73, 74), _melody(67)),
    "voice": ((52, 53), _melody(60)),
    "drums": ((0,), lambda rng, song, program: arrangement.drum_part(rng, song)),
}
_PRESENT = 0.35


def tagging_task(seed: int, scale: str) -> TaskPlan:
    """Songs labelled with the sorted list of instrument tags that play in them."""
    name, size = "synth-tagging", SIZES[scale]
    splits = split_sequence(task_rng(seed, name), size.items)
    tags = list(TAGS)
    items = []
    for index, split in enumerate(splits):
        item = item_rng(seed, name, index)
        present = [tag for tag in tags if item.random() < _PRESENT] or [tags[int(item.integers(len(tags)))]]
        beats = arrangement.beat_grid(item, size.seconds, float(item.uniform(70, 160)), drift=0.02)
        song = arrangement.make_song(item, int(item.integers(12)), bool(item.random() < 0.5), beats)
        parts, programs = [], {}
        for tag in present:
            pool, role = TAGS[tag]
            programs[tag] = int(item.choice(pool))
            parts.append(role(item, song, programs[tag]))
        items.append(ItemSpec(f"tagging-{index:05d}", split, f"song-{index:05d}", sorted(present), size.seconds,
                              {MIX: parts}, {"programs": programs}))
    return TaskPlan(name, "multilabel", "roc_auc,average_precision", items, classes=tags)
