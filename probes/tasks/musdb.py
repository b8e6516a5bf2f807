"""MUSDB18 source separation (vocals, drums, bass, other), one model per stem, global SDR.

Layout under ``--data``: ``{train,valid,test}/<track>/{mixture,vocals,drums,bass,other}.wav`` (musdbconvert
output with the 14 official validation tracks moved from train to valid). The item id is the mixture file;
the label maps each stem to its wav path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from marblekit.core.task_format import SPLITS
from marblekit.probes.tasks.base import Dataset, FeatureNeeds, Item, Task, require_dir, require_file
from marblekit.probes.types import Schedule

STEMS = ("vocals", "drums", "bass", "other")


@dataclass(frozen=True)
class MUSDB18(Task):
    def load(self, root: Path) -> Dataset:
        items = []
        for split in SPLITS:
            for track in sorted(p for p in require_dir(root / split, f"the MUSDB18 {split}/ folder").iterdir()
                                if p.is_dir()):
                require_file(track / "mixture.wav", "the track's mixture.wav")
                stems = {s: str(require_file(track / f"{s}.wav", f"the track's {s}.wav")) for s in STEMS}
                items.append(Item(f"{split}/{track.name}/mixture.wav", split, stems))
        return Dataset(items, STEMS)


SEPARATION = MUSDB18("musdb18", "separation", Schedule("mse", 50, 2, 5), FeatureNeeds(level="frames"), "sdr",
                     "MUSDB18 wav folder with train/, valid/ and test/ track folders")
