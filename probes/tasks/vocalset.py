"""VocalSet 1.1 technique (10) and singer (20), on the 3 s chunks of the reference's preprocessing.

Layout under ``--data``: ``audio/<technique>/<singer>_<...>_<NN>.wav`` (17 technique folders of 3 s chunks).
Groups are the index of a chunk's source recording inside its technique folder, as in the reference.
Technique: singers f2, f8, m3, m5, m10 are the test set; the others split by a group shuffle, 40 % valid.
Singer: group shuffle, 20 % test, then 40 % of the rest valid. Both use ``random_state=SEED`` (the
reference seeds numpy's global generator with it instead, so exact membership differs).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from marblekit.probes.tasks.base import Dataset, FeatureNeeds, Item, Task, require_dir
from marblekit.probes.types import Schedule

SEED = 42617
TECHNIQUES = ("belt", "breathy", "inhaled", "lip_trill", "spoken", "straight", "trill", "trillo", "vibrato",
              "vocal_fry")
SINGERS = tuple(f"f{i}" for i in range(1, 10)) + tuple(f"m{i}" for i in range(1, 12))
TEST_SINGERS = {"f2", "f8", "m3", "m5", "m10"}
CHUNK = re.compile(r"^(?P<source>(?P<singer>[fm]\d+)_.+)_\d+\.wav$")


def chunks(root: Path) -> list[tuple[str, str, str, int]]:
    """(id, technique, singer, group) of every chunk; the group numbers source recordings per folder."""
    audio = require_dir(root / "audio", "VocalSet's audio/<technique>/ folders of 3 s chunks")
    out = []
    for folder in sorted(p for p in audio.iterdir() if p.is_dir()):
        files = sorted(folder.glob("*.wav"))
        sources = sorted({m["source"] for f in files if (m := CHUNK.match(f.name))})
        index = {s: i for i, s in enumerate(sources)}
        for f in files:
            match = CHUNK.match(f.name)
            if match is None:
                raise ValueError(f"{f}: expected <singer>_..._<NN>.wav")
            out.append((f"audio/{folder.name}/{f.name}", folder.name, match["singer"], index[match["source"]]))
    return out


def group_split(groups: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of the rows scikit-learn's GroupShuffleSplit puts in its held-out part."""
    from sklearn.model_selection import GroupShuffleSplit

    _, held_out = next(GroupShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
                       .split(groups, groups=groups))
    mask = np.zeros(len(groups), bool)
    mask[held_out] = True
    return mask


@dataclass(frozen=True)
class VocalSet(Task):
    target: str = "technique"

    def load(self, root: Path) -> Dataset:
        rows = chunks(root)
        if self.target == "technique":
            rows = [r for r in rows if r[1] in TECHNIQUES]
            split = np.array(["test" if r[2] in TEST_SINGERS else "train" for r in rows], dtype=object)
            dev = np.flatnonzero(split == "train")
            split[dev[group_split(np.array([r[3] for r in rows])[dev], 0.4, SEED)]] = "valid"
            labels, outputs = [TECHNIQUES.index(r[1]) for r in rows], TECHNIQUES
        else:
            groups = np.array([r[3] for r in rows])
            split = np.where(group_split(groups, 0.2, SEED), "test", "train").astype(object)
            dev = np.flatnonzero(split == "train")
            split[dev[group_split(groups[dev], 0.4, SEED)]] = "valid"
            labels, outputs = [SINGERS.index(r[2]) for r in rows], SINGERS
        return Dataset([Item(r[0], str(s), label) for r, s, label in zip(rows, split, labels)], outputs)


_HELP = "VocalSet folder with audio/<technique>/*_NN.wav 3 s chunks"
TECHNIQUE = VocalSet("vocalset-technique", "multiclass", Schedule("ce", 100, 5, 10), FeatureNeeds(), "acc", _HELP)
SINGER = VocalSet("vocalset-singer", "multiclass", Schedule("ce", 100, 5, 20), FeatureNeeds(), "acc", _HELP, "singer")
