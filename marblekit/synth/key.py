"""``synth-key``: 24 keys (12 tonics x major/minor); chord progressions with bass, melody, pads and drums drawn at
random, at a random tempo. Scored like GiantSteps with mir_eval's weighted score."""

from __future__ import annotations

from marblekit.core.keys import KEY_NAMES
from marblekit.synth import arrangement, theory
from marblekit.synth.midi import Part
from marblekit.synth.plan import MIX, ItemSpec, Size, TaskPlan, balanced_labels, item_rng, split_sequence, task_rng

SIZES = {"tiny": Size(36, 8.0), "small": Size(120, 8.0), "full": Size(1200, 30.0)}


def key_task(seed: int, scale: str) -> TaskPlan:
    """Songs labelled with their key (class index into ``marblekit.core.keys.KEY_NAMES``)."""
    name, size = "synth-key", SIZES[scale]
    rng = task_rng(seed, name)
    splits = split_sequence(rng, size.items)
    labels = balanced_labels(rng, splits, len(KEY_NAMES))
    items = []
    for index, (split, label) in enumerate(zip(splits, labels)):
        item = item_rng(seed, name, index)
        bpm = float(item.uniform(80, 150))
        beats = arrangement.beat_grid(item, size.seconds, bpm, drift=0.03)
        song = arrangement.make_song(item, label % 12, label >= 12, beats)
        parts = [arrangement.chord_part(item, song, int(item.choice(theory.CHORD_PROGRAMS)))]
        if item.random() < 0.8:
            parts.append(arrangement.bass_part(item, song, int(item.choice(theory.BASS_PROGRAMS))))
        if item.random() < 0.8:
            parts.append(arrangement.melody_part(item, song, int(item.choice(theory.MELODY_PROGRAMS))))
        if item.random() < 0.3:
            parts.append(arrangement.pad_part(song, int(item.choice(theory.PAD_PROGRAMS))))
        if item.random() < 0.5:
            parts.append(arrangement.drum_part(item, song))
        items.append(ItemSpec(f"key-{index:05d}", split, f"song-{index:05d}", label, size.seconds, {MIX: parts},
                              _meta(bpm, parts)))
    return TaskPlan(name, "key", "weighted_score", items, classes=list(KEY_NAMES))


def _meta(bpm: float, parts: list[Part]) -> dict:
    return {"bpm": round(bpm, 3), "programs": [p.program for p in parts if not p.drums],
            "drums": any(p.drums for p in parts)}
