"""Catalogs: which audio files to extract, under which stable ids.

A catalog is either a directory tree (every file with an audio extension, recursively; the id is the path
relative to the directory) or a manifest (``.csv`` with a header, or ``.jsonl``) with the fields ``id``,
``path`` and optional ``start`` / ``end`` in seconds. Manifest paths are relative to ``root`` (default: the
manifest's directory). When a root is in force, every path must resolve inside it.

Problems with one row (a duplicate id, a path escaping the root, a bad number) do not stop the job: the
entry carries an ``error`` and is recorded as a failed track. Ids of duplicate rows get a ``#row<N>``
suffix so that ``track_id`` stays unique.
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

AUDIO_EXTENSIONS = frozenset({".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".aif",
                              ".aiff", ".webm", ".mp4", ".wma"})
MANIFEST_SUFFIXES = (".csv", ".jsonl")


@dataclass(frozen=True)
class Entry:
    """One catalog row: a track to extract, or the reason it cannot be."""

    id: str
    path: Path
    start: float = 0.0
    end: float | None = None
    error: str = ""


def load_catalog(catalog: Path, root: Path | None = None) -> list[Entry]:
    """Entries in a deterministic order (sorted paths for a directory, row order for a manifest)."""
    catalog = Path(catalog)
    if catalog.is_dir():
        return _scan_directory(catalog)
    if not catalog.is_file():
        raise FileNotFoundError(f"catalog {catalog} does not exist")
    if catalog.suffix.lower() not in MANIFEST_SUFFIXES:
        raise ValueError(f"catalog {catalog}: expected a directory or a manifest ending in "
                         f"{' / '.join(MANIFEST_SUFFIXES)}")
    rows = _read_csv(catalog) if catalog.suffix.lower() == ".csv" else _read_jsonl(catalog)
    base = Path(root) if root is not None else catalog.parent
    return _dedupe([_entry(row, number, base, root is not None) for number, row in rows])


def _scan_directory(directory: Path) -> list[Entry]:
    root = directory.resolve()
    entries = []
    for dirpath, dirnames, filenames in os.walk(directory, followlinks=False):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if path.suffix.lower() not in AUDIO_EXTENSIONS:
                continue
            track_id = path.relative_to(directory).as_posix()
            entries.append(Entry(track_id, path, error=_escape_error(path, root)))
    return entries


def _escape_error(path: Path, root: Path) -> str:
    resolved = path.resolve()
    if resolved.is_relative_to(root):
        return ""
    return f"path {path} resolves to {resolved}, outside the catalog root {root}"


def _read_csv(path: Path) -> list[tuple[int, dict[str, object]]]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = {"id", "path"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"manifest {path}: header must name the columns id and path "
                             f"(missing {', '.join(sorted(missing))}); found {reader.fieldnames}")
        return [(number, dict(row)) for number, row in enumerate(reader, start=2)]


def _read_jsonl(path: Path) -> list[tuple[int, dict[str, object]]]:
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"manifest {path} line {number}: not JSON ({err})") from err
        if not isinstance(row, dict):
            raise ValueError(f"manifest {path} line {number}: expected an object with id and path")
        rows.append((number, row))
    return rows


def _seconds(row: dict[str, object], key: str) -> float | None:
    value = row.get(key)
    if value is None or value == "":
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"{key}={value!r} must be a finite number of seconds >= 0")
    return number


def _entry(row: dict[str, object], number: int, base: Path, inside_root: bool) -> Entry:
    track_id = str(row.get("id") or "").strip()
    raw_path = str(row.get("path") or "").strip()
    label = track_id or f"row{number}"
    if not track_id or not raw_path:
        return Entry(label, Path(raw_path or "."), error=f"manifest row {number}: id and path are both required")
    path = Path(raw_path) if Path(raw_path).is_absolute() else base / raw_path
    try:
        start, end = _seconds(row, "start") or 0.0, _seconds(row, "end")
    except ValueError as err:
        return Entry(track_id, path, error=f"manifest row {number}: {err}")
    if end is not None and end <= start:
        return Entry(track_id, path, error=f"manifest row {number}: end={end} must be after start={start}")
    error = _escape_error(path, base.resolve()) if inside_root else ""
    return Entry(track_id, path, start, end, error)


def _dedupe(entries: list[Entry]) -> list[Entry]:
    first_row: dict[str, int] = {}
    result = []
    for row, entry in enumerate(entries):
        if entry.id in first_row:
            entry = Entry(f"{entry.id}#row{row}", entry.path, entry.start, entry.end,
                          f"duplicate id {entry.id!r}: already used by catalog entry {first_row[entry.id]}")
        else:
            first_row[entry.id] = row
        result.append(entry)
    return result
