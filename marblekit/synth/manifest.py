"""The on-disk format of a synthetic task, its writer and its reader.

A task folder ``OUT/<task>/`` holds:

``task.json``
    ``name`` (e.g. ``synth-key``), ``kind`` (``multiclass`` | ``multilabel`` | ``regression`` | ``beat`` |
    ``separation`` | ``key``), ``metric``, ``classes`` (class names, index = class id; tag names for
    multilabel), ``targets`` (regression target names), ``stems`` (separation stem names), ``chance`` (what a
    constant predictor scores on the test split, see :mod:`marblekit.synth.chance`), ``counts`` (items per
    split), ``seed``, ``scale``, ``generator_version``, ``sample_rate`` (44100), ``channels`` (1),
    ``clip_seconds``, ``soundfont`` (file name) and ``notes``.
``manifest.jsonl``
    One JSON object per line and item, sorted by id: ``id``; ``path`` (the clip's WAV, relative to the task
    folder: ``audio/<id>.wav``, for separation the mixture); ``split`` (``train`` | ``valid`` | ``test``);
    ``piece`` (the source material: no piece appears in two splits); ``meta`` (generation facts such as
    programs and tempo, for analysis only) and ``label``, whose type follows the kind:

    ============  ==============================================================
    multiclass    int, index into ``classes``
    key           int, index into ``classes`` (mir_eval key names, ``"C major"``)
    multilabel    list of tag names, a subset of ``classes``
    regression    list of floats, one per ``targets`` entry
    beat          list of beat times in seconds, ascending
    separation    object: stem name -> WAV path relative to the task folder
    ============  ==============================================================

Audio is 16-bit PCM mono WAV at 44.1 kHz, peak-normalised to -1 dBFS (a separation item's stems share the
gain of their mixture, so the stems still sum to the mixture)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from marblekit.synth.plan import SPLITS

KINDS = ("multiclass", "multilabel", "regression", "beat", "separation", "key")
TASK_FILE = "task.json"
MANIFEST_FILE = "manifest.jsonl"
Label = Union[int, list[str], list[float], dict[str, Path]]


@dataclass(frozen=True)
class SynthItem:
    """One clip: its absolute WAV path, split, source piece and label (stem paths made absolute)."""

    id: str
    path: Path
    split: str
    piece: str
    label: Label
    meta: dict[str, Any]


@dataclass(frozen=True)
class SynthTask:
    """A rendered synthetic task read back from its folder."""

    folder: Path
    name: str
    kind: str
    metric: str
    classes: list[str]
    targets: list[str]
    stems: list[str]
    chance: dict[str, Any]
    seed: int
    scale: str
    generator_version: int
    sample_rate: int
    clip_seconds: float
    items: list[SynthItem]

    def split(self, name: str) -> list[SynthItem]:
        """The items of one split, in manifest order."""
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}: expected one of {SPLITS}")
        return [item for item in self.items if item.split == name]


def write_task(folder: Path, header: dict[str, Any], records: list[dict[str, Any]]) -> None:
    """Write ``task.json`` and ``manifest.jsonl`` byte-reproducibly (sorted keys, items sorted by id)."""
    (folder / TASK_FILE).write_text(json.dumps(header, indent=1, sort_keys=True) + "\n")
    lines = [json.dumps(record, sort_keys=True) for record in sorted(records, key=lambda r: r["id"])]
    (folder / MANIFEST_FILE).write_text("".join(line + "\n" for line in lines))


def _label(kind: str, raw: Any, header: dict[str, Any], folder: Path, where: str) -> Label:
    """Check a raw label against the task kind and make stem paths absolute."""
    classes = header.get("classes", [])
    if kind in ("multiclass", "key") and isinstance(raw, int) and 0 <= raw < len(classes):
        return raw
    if kind == "multilabel" and isinstance(raw, list) and all(tag in classes for tag in raw):
        return list(raw)
    if kind == "regression" and isinstance(raw, list) and len(raw) == len(header.get("targets", [])) \
            and all(isinstance(v, (int, float)) for v in raw):
        return [float(v) for v in raw]
    if kind == "beat" and isinstance(raw, list) and all(isinstance(v, (int, float)) for v in raw) \
            and raw == sorted(raw):
        return [float(v) for v in raw]
    if kind == "separation" and isinstance(raw, dict) and sorted(raw) == sorted(header.get("stems", [])):
        return {stem: folder / path for stem, path in raw.items()}
    raise ValueError(f"{where}: label {raw!r} does not fit a {kind} task (see marblekit.synth.manifest)")


def load_task(folder: str | Path) -> SynthTask:
    """Read a task folder written by ``marblekit synth``; raises ValueError naming the file on malformed content."""
    folder = Path(folder)
    task_file, manifest_file = folder / TASK_FILE, folder / MANIFEST_FILE
    for path in (task_file, manifest_file):
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: expected a task folder written by `marblekit synth`")
    try:
        header = json.loads(task_file.read_text())
        kind = header["kind"]
        if kind not in KINDS:
            raise ValueError(f"kind {kind!r} is not one of {KINDS}")
        items = []
        for number, line in enumerate(manifest_file.read_text().splitlines(), 1):
            where = f"{manifest_file}:{number}"
            record = json.loads(line)
            if record["split"] not in SPLITS:
                raise ValueError(f"{where}: split {record['split']!r} is not one of {SPLITS}")
            items.append(SynthItem(record["id"], folder / record["path"], record["split"], record["piece"],
                                   _label(kind, record["label"], header, folder, where), record.get("meta", {})))
        return SynthTask(folder, header["name"], kind, header["metric"], header.get("classes", []),
                         header.get("targets", []), header.get("stems", []), header["chance"], header["seed"],
                         header["scale"], header["generator_version"], header["sample_rate"],
                         header["clip_seconds"], items)
    except (KeyError, json.JSONDecodeError) as err:
        raise ValueError(f"{folder}: malformed synthetic task ({type(err).__name__}: {err})") from err
