"""Emomusic (static arousal / valence of 45 s clips).

Layout under ``--data``: ``songs_info.csv``, ``static_annotations.csv`` and ``clips_45seconds/<id>.mp3``.
The MediaEval-2013 'evaluation' set is the test set; the rest splits 8:2 by sha1 of the cleaned artist name.
Targets [arousal, valence] are z-scored with the development (train + valid) mean and population std.
Features: the first 30 s in 5 s windows (the MERT configurations), window outputs averaged per clip.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from marblekit.probes.tasks.base import (Dataset, FeatureNeeds, Item, Task, hash_slot, require_file,
                                         zscore_on_development)
from marblekit.probes.types import Schedule

SLOTS = ("train",) * 8 + ("valid",) * 2
OUTPUTS = ("arousal", "valence")


def artist_split(artist: str) -> str:
    """Lower-case, keep ASCII letters and spaces, collapse whitespace, sha1 mod 10 into 8 train / 2 valid."""
    cleaned = " ".join("".join(c for c in artist.lower() if ord(c) < 128 and (c.isalpha() or c.isspace())).split())
    return hash_slot(cleaned, SLOTS)


def _rows(path: Path, what: str) -> dict[int, dict[str, str]]:
    with require_file(path, what).open(newline="") as handle:
        return {int(row["song_id"]): {k.strip(): v.strip() for k, v in row.items()} for row in csv.DictReader(handle)}


@dataclass(frozen=True)
class Emomusic(Task):
    def load(self, root: Path) -> Dataset:
        info = _rows(root / "songs_info.csv", "Emomusic songs_info.csv")
        static = _rows(root / "static_annotations.csv", "Emomusic static_annotations.csv")
        songs = sorted(set(info) & set(static))
        splits = {s: "test" if info[s]["Mediaeval 2013 set"] == "evaluation" else artist_split(info[s]["Artist"])
                  for s in songs}
        raw = np.array([[float(static[s]["mean_arousal"]), float(static[s]["mean_valence"])] for s in songs])
        targets = zscore_on_development(raw, [splits[s] for s in songs])
        items = [Item(f"clips_45seconds/{s}.mp3", splits[s], targets[i])
                 for i, s in enumerate(songs)]
        return Dataset(items, OUTPUTS)


EMO = Emomusic("emomusic", "regression", Schedule("mse", 100, 5, 20),
               FeatureNeeds(window_s=5.0, hop_s=5.0, crop_s=30.0), "r2",
               "Emomusic folder with songs_info.csv, static_annotations.csv and clips_45seconds/")
