"""The task format: the kinds of task and the splits every task uses, and the on-disk format of a
synthetic task folder with its one writer (``marblekit synth``) and its one reader (the probes, the demo,
the tests).

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
    key           int, index into ``classes`` (MARBLE's key names, ``"Db major"``; a key name is read too)
    multilabel    list of tag names, a subset of ``classes``
    regression    list of floats, one per ``targets`` entry
    beat          list of beat times in seconds, ascending
    separation    object: stem name -> WAV path relative to the task folder
    ============  ==============================================================

Audio is 16-bit PCM mono WAV at 44.1 kHz, peak-normalised to -1 dBFS (a separation item's stems share the
gain of their mixture, so the stems still sum to the mixture)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

from marblekit.core.keys import KEY_NAMES, parse_key

#: the kinds of task, each with its label type, loss and metric
KINDS = ("multiclass", "multilabel", "regression", "key", "beat", "separation")
SPLITS = ("train", "valid", "test")
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
    """A rendered synthetic task read back from its folder. The generation facts (chance levels, seed, scale,
    generator version, rates) are informational; a hand-made folder may leave them out."""

    folder: Path
    name: str
    kind: str
    metric: str
    classes: list[str]
    targets: list[str]
    stems: list[str]
    items: list[SynthItem]
    chance: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    scale: str | None = None
    generator_version: int | None = None
    sample_rate: int | None = None
    clip_seconds: float | None = None

    def split(self, name: str) -> list[SynthItem]:
        """The items of one split, in manifest order."""
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}: expected one of {SPLITS}")
        return [item for item in self.items if item.split == name]

    @property
    def output_names(self) -> list[str]:
        """What a probe predicts: classes (tags for multilabel), regression targets or stems."""
        return {"regression": self.targets, "separation": self.stems}.get(self.kind) or self.classes


def write_task(folder: Path, header: dict[str, Any], records: list[dict[str, Any]]) -> None:
    """Write ``task.json`` and ``manifest.jsonl`` byte-reproducibly (sorted keys, items sorted by id)."""
    (folder / TASK_FILE).write_text(json.dumps(header, indent=1, sort_keys=True) + "\n")
    lines = [json.dumps(record, sort_keys=True) for record in sorted(records, key=lambda r: r["id"])]
    (folder / MANIFEST_FILE).write_text("".join(line + "\n" for line in lines))


def _label(kind: str, raw: Any, header: dict[str, Any], folder: Path, where: str) -> Label:
    """Check a raw label against the task kind and make stem paths absolute."""
    classes = header.get("classes", [])
    if kind == "key" and isinstance(raw, str):
        return parse_key(raw)
    limit = len(KEY_NAMES) if kind == "key" else len(classes) or None  # unnamed classes: any index
    if kind in ("multiclass", "key") and isinstance(raw, int) and 0 <= raw < (limit or raw + 1):
        return raw
    if kind == "multilabel" and isinstance(raw, list) and all(tag in classes for tag in raw):
        return list(raw)
    targets = header.get("targets") or None  # unnamed targets: any length
    if kind == "regression" and isinstance(raw, list) and len(raw) == (len(targets) if targets else len(raw)) \
            and all(isinstance(v, (int, float)) for v in raw):
        return [float(v) for v in raw]
    if kind == "beat" and isinstance(raw, list) and all(isinstance(v, (int, float)) for v in raw) \
            and raw == sorted(raw):
        return [float(v) for v in raw]
    if kind == "separation" and isinstance(raw, dict) and sorted(raw) == sorted(header.get("stems", [])):
        return {stem: folder / path for stem, path in raw.items()}
    raise ValueError(f"{where}: label {raw!r} does not fit a {kind} task (see marblekit.core.task_format)")


def read_header(folder: str | Path) -> dict[str, Any]:
    """``task.json`` of a task folder (its manifest must be there too)."""
    folder = Path(folder)
    task_file, manifest_file = folder / TASK_FILE, folder / MANIFEST_FILE
    for path in (task_file, manifest_file):
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: expected a task folder written by `marblekit synth`")
    try:
        header = json.loads(task_file.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{task_file}: not JSON ({err})") from err
    if not isinstance(header, dict) or header.get("kind") not in KINDS:
        raise ValueError(f"{task_file}: 'kind' must be one of {KINDS}, got "
                         f"{header.get('kind') if isinstance(header, dict) else header!r}")
    return header


def load_task(folder: str | Path) -> SynthTask:
    """Read a task folder written by ``marblekit synth``; raises ValueError naming the file and line on
    malformed content."""
    folder = Path(folder)
    header = read_header(folder)
    kind = header["kind"]
    manifest_file = folder / MANIFEST_FILE
    items = []
    for number, line in enumerate(manifest_file.read_text().splitlines(), 1):
        if not line.strip():
            continue
        where = f"{manifest_file}:{number}"
        try:
            record = json.loads(line)
            item_id, path, split = record["id"], record["path"], record["split"]
            label = record["label"]
        except (KeyError, TypeError, json.JSONDecodeError) as err:
            raise ValueError(f"{where}: expected an object with id, path, split and label "
                             f"({type(err).__name__}: {err})") from err
        if split not in SPLITS:
            raise ValueError(f"{where}: split {split!r} is not one of {SPLITS}")
        items.append(SynthItem(item_id, folder / path, split, record.get("piece", item_id),
                               _label(kind, label, header, folder, where), record.get("meta", {})))
    optional = ("chance", "seed", "scale", "generator_version", "sample_rate", "clip_seconds")
    return SynthTask(folder, header.get("name", folder.name), kind, header.get("metric", ""),
                     header.get("classes", []), header.get("targets", []), header.get("stems", []), items,
                     **{key: header[key] for key in optional if key in header})
