"""Auto-tagging: MagnaTagATune top-50 and the four MTG-Jamendo split-0 tasks.

MTT under ``--data``: ``annotations_final.csv`` (tab-separated: clip_id, 188 tag columns, mp3_path) and
``mp3/<hex>/<name>.mp3``. The top 50 tags by count; split by the folder's hex digit: 0-b train, c valid,
d-f test; three corrupt mp3s are left out (the reference's fixed list). Clips without a top-50 tag stay.

MTG-Jamendo under ``--data``: the user's clone ``mtg-jamendo-dataset/`` (split files are read from
``data/splits/split-0``, never shipped) and ``audio-low/NN/<id>.low.mp3``. Tags are indexed in order of
first appearance over train, validation, then test, as the reference does.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from marblekit.probes.tasks.base import Dataset, FeatureNeeds, Item, Task, require_file
from marblekit.probes.types import Schedule

MTT_CORRUPT = {
    "6/norine_braun-now_and_zen-08-gently-117-146.mp3",
    "8/jacob_heringman-josquin_des_prez_lute_settings-19-gintzler__pater_noster-204-233.mp3",
    "9/american_baroque-dances_and_suites_of_rameau_and_couperin-25-le_petit_rien_xiveme_ordre_couperin-88-117.mp3",
}
MTT_TOP = 50
MTG_SPLIT_FILES = {"train": "train", "valid": "validation", "test": "test"}


def mtt_split(mp3_path: str) -> str:
    digit = int(mp3_path.split("/")[0], 16)
    return "train" if digit <= 0xB else "valid" if digit == 0xC else "test"


@dataclass(frozen=True)
class MagnaTagATune(Task):
    def load(self, root: Path) -> Dataset:
        path = require_file(root / "annotations_final.csv", "MagnaTagATune's tab-separated annotations_final.csv")
        with path.open(newline="") as handle:
            rows = list(csv.reader(handle, delimiter="\t"))
        header, body = rows[0], [r for r in rows[1:] if r]
        tags = header[1:-1]
        labels = np.array([[int(v) for v in r[1:-1]] for r in body])
        counts = labels.sum(0)
        top = np.argsort(-counts, kind="stable")[:MTT_TOP]
        items = [Item(f"mp3/{r[-1]}", mtt_split(r[-1]), labels[i, top].astype(np.float32))
                 for i, r in enumerate(body) if r[-1] not in MTT_CORRUPT]
        return Dataset(items, tuple(tags[t] for t in top))


@dataclass(frozen=True)
class MTGJamendo(Task):
    subset: str = "top50tags"

    def load(self, root: Path) -> Dataset:
        folder = root / "mtg-jamendo-dataset" / "data" / "splits" / "split-0"
        rows: dict[str, list[tuple[str, list[str]]]] = {}
        for split, suffix in MTG_SPLIT_FILES.items():
            path = require_file(folder / f"autotagging_{self.subset}-{suffix}.tsv",
                                "a split-0 file of your mtg-jamendo-dataset clone")
            with path.open(newline="") as handle:
                reader = csv.reader(handle, delimiter="\t")
                next(reader)
                rows[split] = [(r[3], [t.strip() for t in r[5:] if t.strip()]) for r in reader if r]
        vocabulary: dict[str, int] = {}
        for split in MTG_SPLIT_FILES:
            for _, tags in rows[split]:
                for tag in tags:
                    vocabulary.setdefault(tag, len(vocabulary))
        items = []
        for split, entries in rows.items():
            for path, tags in entries:
                label = np.zeros(len(vocabulary), np.float32)
                label[[vocabulary[t] for t in tags]] = 1
                items.append(Item(f"audio-low/{path.removesuffix('.mp3')}.low.mp3", split, label))
        return Dataset(items, tuple(vocabulary))


_TAGGING = Schedule("bce", 100, 3, 10)
MTT = MagnaTagATune("mtt", "multilabel", _TAGGING, FeatureNeeds(), "aucroc",
                    "MagnaTagATune folder with annotations_final.csv and mp3/")
_MTG_WINDOWS = FeatureNeeds(window_s=30.0, hop_s=30.0)
_MTG_HELP = "folder holding your mtg-jamendo-dataset clone and audio-low/"
MTG = {name: MTGJamendo(f"mtg-{name}", "multilabel", _TAGGING, _MTG_WINDOWS, "aucroc", _MTG_HELP, subset)
       for name, subset in (("top50", "top50tags"), ("genre", "genre"), ("instrument", "instrument"),
                            ("moodtheme", "moodtheme"))}
