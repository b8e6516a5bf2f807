"""GiantSteps key: train/valid from GiantSteps-MTG-key (artist-hash split), test on GiantSteps-key.

Layout under ``--data`` (the two annotation repositories with their audio downloaded into them):
``giantsteps-mtg-key-dataset/{annotations/annotations.txt, annotations/beatport_metadata.txt, md5/<id>.LOFI.md5,
audio/<id>.LOFI.mp3}`` and ``giantsteps-key-dataset/{annotations/key/<id>.LOFI.key, md5/<id>.LOFI.md5,
audio/<id>.LOFI.mp3}``. Songs are cut into 30 s clips as the reference's preprocessing (from jukemir) cuts them:
one at every 30 s offset below the duration the container declares (ffprobe's), a clip shorter than 30 s by that
duration dropped, each clip normalised alone (extract with ``--normalize-windows``). Each clip is an item whose
group is its song, and clip outputs are ensembled per song at evaluation.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from marblekit.core.audio_input import container_duration
from marblekit.core.keys import KEY_NAMES, parse_key
from marblekit.probes.tasks.base import Dataset, FeatureNeeds, Item, Task, hash_slot, require_dir, require_file
from marblekit.probes.types import Schedule

TRAIN_REPO = "giantsteps-mtg-key-dataset"
TEST_REPO = "giantsteps-key-dataset"
#: hash slots: 100 train then 16 valid (an 80/20 target by song count)
SLOTS = ("train",) * 100 + ("valid",) * 16
CLIP_S = 30.0


def clip_count(duration: float) -> int:
    """Clips at offsets 0, 30, 60, ... below ``duration`` that are a whole 30 s by it (a song whose container
    says 120.003 s has 4, even where its decoded audio is a few ms shorter than 120 s)."""
    return int(sum(duration - offset >= CLIP_S for offset in np.arange(0, duration, CLIP_S)))


def _artists(row: dict[str, str]) -> list[str]:
    return [a.strip() for a in row["ARTIST"].strip().split(",")]


def artist_splits(metadata: dict[int, dict[str, str]]) -> dict[str, str]:
    """Each artist's split: sha1(lower-cased name) mod 116 into ``SLOTS``, then every collaborator of a
    valid artist moves to valid (twice, so two hops), as the reference's preprocessing does."""
    split = {}
    for row in metadata.values():
        for artist in _artists(row):
            split[artist] = hash_slot(artist.lower(), SLOTS)
    for _ in range(2):
        for row in metadata.values():
            artists = _artists(row)
            if any(split[a] == "valid" for a in artists):
                for artist in artists:
                    split[artist] = "valid"
    return split


def _ids(repo: Path) -> list[int]:
    md5 = require_dir(repo / "md5", "the md5/<id>.LOFI.md5 listing of the repository")
    return sorted(int(p.name.split(".")[0]) for p in md5.glob("*.md5"))


def _read_tsv(path: Path, what: str) -> dict[int, dict[str, str]]:
    with require_file(path, what).open(newline="") as handle:
        return {int(row["ID"]): row for row in csv.DictReader(handle, delimiter="\t")}


@dataclass(frozen=True)
class GiantStepsKey(Task):
    def load(self, root: Path) -> Dataset:
        train_repo, test_repo = root / TRAIN_REPO, root / TEST_REPO
        metadata = _read_tsv(train_repo / "annotations" / "beatport_metadata.txt", "GiantSteps-MTG beatport metadata")
        annotations = _read_tsv(train_repo / "annotations" / "annotations.txt", "GiantSteps-MTG key annotations")
        splits = artist_splits(metadata)
        items = []
        for song in _ids(train_repo):
            row = annotations[song]
            if int(row["C"]) != 2 or "/" in row["MANUAL KEY"]:
                continue  # low confidence or several keys
            split = splits[_artists(metadata[song])[0]]
            items.append(_song(root, TRAIN_REPO, song, split, parse_key(row["MANUAL KEY"])))
        for song in _ids(test_repo):
            key = require_file(test_repo / "annotations" / "key" / f"{song}.LOFI.key", "a GiantSteps key file")
            items.append(_song(root, TEST_REPO, song, "test", parse_key(key.read_text())))
        return Dataset(items, KEY_NAMES)


def _song(root: Path, repo: str, song: int, split: str, key: int) -> Item:
    audio = f"{repo}/audio/{song}.LOFI.mp3"
    clips = clip_count(container_duration(require_file(root / audio, "the song's audio (GiantSteps LOFI mp3)")))
    return Item(audio, split, key, str(song), clips=clips)


KEY = GiantStepsKey("giantsteps-key", "key", Schedule("ce", 100, 5, 20),
                    FeatureNeeds(window_s=CLIP_S, hop_s=CLIP_S, normalize_windows=True), "best_ensemble_score",
                    "folder holding giantsteps-mtg-key-dataset/ and giantsteps-key-dataset/ with audio/",
                    finds_lr=True)
