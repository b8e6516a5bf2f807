"""``synth-beat``: drums with bass, chords and sometimes a melody at 60-180 BPM, the tempo drifting sinusoidally by
up to 8 %; the label is the list of beat times in seconds (GTZAN-rhythm-like). Clips are 30 s at full scale and
shorter at tiny (10 s) and small (20 s) scale."""

from __future__ import annotations

from marblekit.synth import arrangement, theory
from marblekit.synth.plan import MIX, ItemSpec, Size, TaskPlan, item_rng, split_sequence, task_rng

SIZES = {"tiny": Size(12, 10.0), "small": Size(30, 12.0), "full": Size(500, 30.0)}


def beat_task(seed: int, scale: str) -> TaskPlan:
    """Songs labelled with their beat times."""
    name, size = "synth-beat", SIZES[scale]
    splits = split_sequence(task_rng(seed, name), size.items)
    items = []
    for index, split in enumerate(splits):
        item = item_rng(seed, name, index)
        bpm, drift = float(item.uniform(60, 180)), float(item.uniform(0.0, 0.08))
        beats = arrangement.beat_grid(item, size.seconds, bpm, drift)
        song = arrangement.make_song(item, int(item.integers(12)), bool(item.random() < 0.5), beats)
        parts = [arrangement.drum_part(item, song),
                 arrangement.bass_part(item, song, int(item.choice(theory.BASS_PROGRAMS))),
                 arrangement.chord_part(item, song, int(item.choice(theory.CHORD_PROGRAMS)))]
        if item.random() < 0.5:
            parts.append(arrangement.melody_part(item, song, int(item.choice(theory.MELODY_PROGRAMS))))
        meta = {"bpm": round(bpm, 3), "drift": round(drift, 4)}
        items.append(ItemSpec(f"beat-{index:05d}", split, f"song-{index:05d}", list(beats), size.seconds,
                              {MIX: parts}, meta))
    return TaskPlan(name, "beat", "f_measure", items,
                    notes="beats only (no downbeats); 4/4 throughout; mir_eval.beat.f_measure with a 70 ms window")
