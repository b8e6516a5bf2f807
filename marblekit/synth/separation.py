"""``synth-separation``: four stems rendered one by one (drums, bass, other = chords and pads, vocals = a
voice-like melody on choir / voice / synth-voice programs) and their mix, the exact sum of the stems
(MUSDB-like). The label maps each stem to its WAV file."""

from __future__ import annotations

from marblekit.synth import arrangement, theory
from marblekit.synth.plan import ItemSpec, Size, TaskPlan, item_rng, split_sequence, task_rng

SIZES = {"tiny": Size(8, 6.0), "small": Size(24, 8.0), "full": Size(500, 30.0)}
STEMS = ["drums", "bass", "other", "vocals"]


def stem_path(item_id: str, stem: str) -> str:
    """Where a stem's WAV lives, relative to the task folder."""
    return f"stems/{item_id}/{stem}.wav"


def separation_task(seed: int, scale: str) -> TaskPlan:
    """Songs with their four stems."""
    name, size = "synth-separation", SIZES[scale]
    splits = split_sequence(task_rng(seed, name), size.items)
    items = []
    for index, split in enumerate(splits):
        item = item_rng(seed, name, index)
        beats = arrangement.beat_grid(item, size.seconds, float(item.uniform(70, 150)), drift=0.02)
        song = arrangement.make_song(item, int(item.integers(12)), bool(item.random() < 0.5), beats)
        other = [arrangement.chord_part(item, song, int(item.choice(theory.CHORD_PROGRAMS)))]
        if item.random() < 0.5:
            other.append(arrangement.pad_part(song, int(item.choice(theory.PAD_PROGRAMS))))
        stems = {"drums": [arrangement.drum_part(item, song)],
                 "bass": [arrangement.bass_part(item, song, int(item.choice(theory.BASS_PROGRAMS)))],
                 "other": other,
                 "vocals": [arrangement.melody_part(item, song, int(item.choice(theory.VOICE_PROGRAMS)), 57, 79)]}
        item_id = f"separation-{index:05d}"
        items.append(ItemSpec(item_id, split, f"song-{index:05d}", {s: stem_path(item_id, s) for s in STEMS},
                              size.seconds, stems))
    return TaskPlan(name, "separation", "sdr", items, stems=list(STEMS))
