"""GTZAN genre and GTZAN-Rhythm beat tracking on the fail-filtered split.

Layout under ``--data``: ``genres/<genre>/<genre>.000NN.wav`` and, for beats,
``GTZAN-Rhythm_v2_ismir2015_lbd/<genre>.000NN.wav.jams``. The split lists ship with marblekit
(splits/gtzan, see its README for the source); ``jazz.00054`` is dropped from train as MARBLE does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from marblekit.core.task_format import SPLITS
from marblekit.probes.tasks.base import Dataset, FeatureNeeds, Item, Task, require_dir, require_file
from marblekit.probes.types import Schedule

GENRES = ("blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock")
DROPPED = {"jazz/jazz.00054.wav"}
AUDIO_DIR = "genres"
BEATS_DIR = "GTZAN-Rhythm_v2_ismir2015_lbd"
#: one window longer than every GTZAN clip (30.0 to 30.65 s), so a clip is one forward pass of its whole length,
#: as MARBLE's MERT-v1 configs run it (``sliding_window_size_in_sec: null``); 30 s windows would drop the tail
WHOLE_CLIP_S = 31.0


def split_lists() -> dict[str, list[str]]:
    """The shipped fail-filtered lists (paths like ``blues/blues.00029.wav``), train without jazz.00054."""
    folder = resources.files("marblekit.probes.tasks") / "splits" / "gtzan"
    lists = {}
    for split in SPLITS:
        names = (folder / f"{split}_filtered.txt").read_text().split()
        lists[split] = [n for n in names if n not in DROPPED]
    return lists


def read_beats(path: Path) -> np.ndarray:
    """Beat times (s) of a GTZAN-Rhythm JAMS file: the 'beat' namespace whose sandbox type is 'beat'."""
    document = json.loads(require_file(path, "a GTZAN-Rhythm .jams annotation").read_text())
    for annotation in document.get("annotations", []):
        if annotation.get("namespace") == "beat" and annotation.get("sandbox", {}).get("annotation_type") == "beat":
            return np.array(sorted(float(event["time"]) for event in annotation["data"]))
    raise ValueError(f"{path}: no annotation with namespace 'beat' and sandbox.annotation_type 'beat'")


@dataclass(frozen=True)
class GTZANGenre(Task):
    def load(self, root: Path) -> Dataset:
        require_dir(root / AUDIO_DIR, "the GTZAN genres/<genre>/<genre>.000NN.wav folder")
        items = [Item(f"{AUDIO_DIR}/{name}", split, GENRES.index(name.split("/")[0]))
                 for split, names in split_lists().items() for name in names]
        return Dataset(items, GENRES)


@dataclass(frozen=True)
class GTZANBeat(Task):
    def load(self, root: Path) -> Dataset:
        require_dir(root / BEATS_DIR, "the GTZAN-Rhythm v2 folder of <genre>.000NN.wav.jams files")
        items = [Item(f"{AUDIO_DIR}/{name}", split, read_beats(root / BEATS_DIR / f"{Path(name).name}.jams"))
                 for split, names in split_lists().items() for name in names]
        return Dataset(items, ("no beat", "beat"))


GENRE = GTZANGenre("gtzan-genre", "multiclass", Schedule("ce", 100, 6, 20),
                   FeatureNeeds(window_s=WHOLE_CLIP_S, hop_s=WHOLE_CLIP_S), "acc",
                   "GTZAN folder with genres/<genre>/*.wav")
# The reference trains on a random 10 s crop of each clip per epoch, run through the backbone on the fly;
# marblekit crops the clip's stored frames the same way (their context is the whole clip: see the README).
BEAT = GTZANBeat("gtzan-beat", "beat", Schedule("ce", 100, 6, 20), FeatureNeeds(level="frames"), "beat_f",
                 "GTZAN folder with genres/ and GTZAN-Rhythm_v2_ismir2015_lbd/", train_crop_s=10.0)
