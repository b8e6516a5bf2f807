"""NSynth pitch (128 MIDI pitches) and instrument family (11), on the official splits.

Layout under ``--data``: ``nsynth-data/nsynth-{train,valid,test}/{examples.json, audio/<note>.wav}``.
Pitch classes are the MIDI pitch itself (the reference's pitch - 1 is the same up to relabelling).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from marblekit.core.task_format import SPLITS
from marblekit.probes.tasks.base import Dataset, FeatureNeeds, Item, Task, require_file
from marblekit.probes.types import Schedule

FAMILIES = ("bass", "brass", "flute", "guitar", "keyboard", "mallet", "organ", "reed", "string", "synth_lead",
            "vocal")


@dataclass(frozen=True)
class NSynth(Task):
    target: str = "pitch"

    def load(self, root: Path) -> Dataset:
        items = []
        for split in SPLITS:
            folder = f"nsynth-data/nsynth-{split}"
            notes = json.loads(require_file(root / folder / "examples.json", f"NSynth {split} examples.json").read_text())
            for note, meta in sorted(notes.items()):
                label = int(meta["pitch"]) if self.target == "pitch" else FAMILIES.index(meta["instrument_family_str"])
                items.append(Item(f"{folder}/audio/{note}.wav", split, label))
        outputs = tuple(f"midi {p}" for p in range(128)) if self.target == "pitch" else FAMILIES
        return Dataset(items, outputs)


_SCHEDULE = Schedule("ce", 50, 3, 10)
_HELP = "NSynth folder with nsynth-data/nsynth-{train,valid,test}/"
PITCH = NSynth("nsynth-pitch", "multiclass", _SCHEDULE, FeatureNeeds(), "acc", _HELP, "pitch")
INSTRUMENT = NSynth("nsynth-instrument", "multiclass", _SCHEDULE, FeatureNeeds(), "acc", _HELP, "instrument")
