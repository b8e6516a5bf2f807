"""VocalSet 1.1 technique (10) and singer (20), on the 3 s chunks of the reference's preprocessing.

Layout under ``--data`` (the reference's ``data/VocalSet``): ``audio/<technique>/<name>_<NN>.wav`` (17 technique
folders of 3 s chunks), and, as that preprocessing writes them, its split lists ``{train,valid,test}_{t,s}.txt``.

Where the lists are there they are the splits. Otherwise the reference's draw is replayed exactly: it seeds
numpy's global generator with ``SEED`` once, then draws three ``GroupShuffleSplit`` permutations from that one
stream (technique train/valid 40 %, singer test 20 %, singer valid 40 % of the rest). A chunk's group is the index
of its recording in the sorted listing of its technique folder *before* chunking, which counts recordings too short
to give a chunk (3 s or less after trimming the silence). The chunks do not show those, so the listing comes from
VocalSet's own ``FULL/<singer>/<context>/<technique>/`` tree under ``--data`` when present (with the reference's
renames and deletions); without it, from the chunks, which is exact only if every recording gave a chunk (a
warning says so).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from marblekit.core.task_format import SPLITS
from marblekit.probes.tasks.base import Dataset, FeatureNeeds, Item, Task, require_dir, require_file
from marblekit.probes.types import Schedule

log = logging.getLogger(__name__)

SEED = 42617
TECHNIQUES = ("belt", "breathy", "inhaled", "lip_trill", "spoken", "straight", "trill", "trillo", "vibrato",
              "vocal_fry")
SINGERS = tuple(f"f{i}" for i in range(1, 10)) + tuple(f"m{i}" for i in range(1, 12))
TEST_SINGERS = ("f2", "f8", "m3", "m5", "m10")
CHUNK = re.compile(r"^(?P<source>.+)_\d\d+\.wav$")
LIST_SUFFIX = {"technique": "t", "singer": "s"}

#: the reference's fixes to VocalSet 1.1 file names (missing singer prefixes), by technique folder
RENAMES = {
    "lip_trill": {"lip_trill_arps.wav": "f2_lip_trill_arps.wav", "scales_lip_trill.wav": "m3_scales_lip_trill.wav"},
    "straight": {**{f"{kind}_straight_{v}.wav": f"f4_{kind}_straight_{v}.wav"
                    for kind in ("arpeggios", "scales") for v in "aeiou"},
                 "row_straight.wav": "m8_row_straight.wav"},
    "vocal_fry": {"scales_vocal_fry.wav": "f2_scales_vocal_fry.wav"},
    "fast_forte": {"arps_fast_piano_c.wav": "f9_arps_fast_piano_c.wav"},
    "fast_piano": {"fast_piano_arps_f.wav": "f2_fast_piano_arps_f.wav",
                   "arps_c_fast_piano.wav": "m3_arps_c_fast_piano.wav",
                   "scales_fast_piano_f.wav": "f3_scales_fast_piano_f.wav",
                   **{f"scales_{key}_fast_piano_{v}.wav": f"m10_scales_{key}_fast_piano_{v}.wav"
                      for key in "cf" for v in "aeiou"}},
}
#: duplicates and files the paper's table does not list, which the reference deletes
DELETED = {"vibrato": {"f2_scales_vibrato_a(1).wav", "caro_vibrato.wav", "dona_vibrato.wav", "row_vibrato.wav",
                       "slow_vibrato_arps.wav"}}
#: names the reference skips when it unzips
SKIPPED = {"", ".DS_Store"}


@dataclass(frozen=True)
class Chunk:
    id: str
    technique: str
    singer: str
    group: int


def originals_from_full(full: Path, folders: list[str]) -> dict[str, list[str]]:
    """Each technique folder's recordings as the reference lists them before chunking: the files of
    ``FULL/*/*/<technique>/``, renamed and pruned as the reference does, sorted by name."""
    listing = {}
    for folder in folders:
        names = {p.name for p in full.glob(f"*/*/{folder}/*") if p.is_file() and p.name not in SKIPPED}
        names = {RENAMES.get(folder, {}).get(n, n) for n in names} - DELETED.get(folder, set())
        listing[folder] = sorted(names)
    return listing


def originals_from_chunks(audio: Path, folders: list[str]) -> dict[str, list[str]]:
    """Each folder's recordings as far as its chunks show them (recordings that gave no chunk are missing)."""
    return {folder: sorted({f"{m['source']}.wav" for f in (audio / folder).glob("*.wav")
                            if (m := CHUNK.match(f.name))}) for folder in folders}


def chunks(root: Path) -> list[Chunk]:
    """Every chunk with its technique, singer and group (its recording's index in the folder's listing)."""
    audio = require_dir(root / "audio", "VocalSet's audio/<technique>/ folders of 3 s chunks")
    folders = sorted(p.name for p in audio.iterdir() if p.is_dir())
    full = root / "FULL"
    if full.is_dir():
        listing = originals_from_full(full, folders)
    else:
        listing = originals_from_chunks(audio, folders)
        log.warning("%s has no VocalSet FULL/ tree: recordings are numbered from the chunks, which equals the "
                    "reference's split only if every recording gave a chunk", root)
    out = []
    for folder in folders:
        by_source: dict[str, list[str]] = {}
        for f in sorted((audio / folder).glob("*.wav")):
            match = CHUNK.match(f.name)
            if match is None:
                raise ValueError(f"{f}: expected a chunk named <recording>_<NN>.wav")
            by_source.setdefault(match["source"], []).append(f.name)
        for index, name in enumerate(listing[folder]):
            for chunk in by_source.pop(name.split(".")[0], []):
                out.append(Chunk(f"audio/{folder}/{chunk}", folder, name.split("_")[0], index))
        if by_source:
            raise ValueError(f"{audio / folder}: chunks of recordings that {full} does not list: "
                             f"{', '.join(sorted(by_source)[:5])}")
    return out


def group_holdout(groups: np.ndarray, fraction: float, rng: np.random.RandomState) -> np.ndarray:
    """Boolean mask of the rows scikit-learn's GroupShuffleSplit holds out, drawing from ``rng``."""
    from sklearn.model_selection import GroupShuffleSplit

    _, held_out = next(GroupShuffleSplit(n_splits=1, test_size=fraction, random_state=rng)
                       .split(groups, groups=groups))
    mask = np.zeros(len(groups), bool)
    mask[held_out] = True
    return mask


def reference_splits(rows: list[Chunk]) -> dict[str, dict[str, str]]:
    """Both tasks' splits, {task: {chunk id: split}}, drawn in the reference's order from one seeded stream."""
    rng = np.random.RandomState(SEED)
    technique = [r for r in rows if r.technique in TECHNIQUES]
    development = [r for r in technique if r.singer not in TEST_SINGERS and r.singer in SINGERS]
    valid = group_holdout(np.array([r.group for r in development]), 0.4, rng)
    technique_split = {r.id: "test" for r in technique if r.singer in TEST_SINGERS}
    technique_split.update({r.id: "valid" if v else "train" for r, v in zip(development, valid)})
    groups = np.array([r.group for r in rows])
    test = group_holdout(groups, 0.2, rng)
    rest = np.flatnonzero(~test)
    valid = group_holdout(groups[rest], 0.4, rng)
    singer_split = {r.id: "test" for r, t in zip(rows, test) if t}
    singer_split.update({rows[i].id: "valid" if v else "train" for i, v in zip(rest, valid)})
    return {"technique": technique_split, "singer": singer_split}


def listed_splits(root: Path, suffix: str) -> dict[str, str] | None:
    """{chunk id: split} from the reference's lists ``{split}_{suffix}.txt``, or None when they are not there."""
    paths = {split: root / f"{split}_{suffix}.txt" for split in SPLITS}
    if not any(p.exists() for p in paths.values()):
        return None
    out = {}
    for split, path in paths.items():
        listed = require_file(path, f"the reference's {split} list next to the other split lists").read_text()
        for line in listed.split():
            require_file(root / "audio" / line, f"the chunk {line} that {path.name} lists")
            out[f"audio/{line}"] = split
    return out


def _technique_and_singer(chunk_id: str) -> tuple[str, str]:
    _, technique, name = chunk_id.split("/")
    return technique, name.split("_")[0]


@dataclass(frozen=True)
class VocalSet(Task):
    target: str = "technique"

    def load(self, root: Path) -> Dataset:
        splits = listed_splits(root, LIST_SUFFIX[self.target])
        if splits is None:
            splits = reference_splits(chunks(root))[self.target]
        outputs = TECHNIQUES if self.target == "technique" else SINGERS
        items = []
        for chunk_id, split in sorted(splits.items()):
            technique, singer = _technique_and_singer(chunk_id)
            label = technique if self.target == "technique" else singer
            if label not in outputs:
                raise ValueError(f"{root / chunk_id}: {self.target} {label!r} is not one of {', '.join(outputs)}")
            items.append(Item(chunk_id, split, outputs.index(label)))
        return Dataset(items, outputs)


_HELP = "VocalSet folder with audio/<technique>/*_NN.wav 3 s chunks (and the reference's split lists, or FULL/)"
TECHNIQUE = VocalSet("vocalset-technique", "multiclass", Schedule("ce", 100, 5, 10), FeatureNeeds(), "acc", _HELP)
SINGER = VocalSet("vocalset-singer", "multiclass", Schedule("ce", 100, 5, 20), FeatureNeeds(), "acc", _HELP, "singer")
