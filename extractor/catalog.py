"""Catalogs: which audio files to extract, under which stable ids.

A catalog is either a directory tree or a manifest (``.csv`` with a header, or ``.jsonl``) with the fields
``id``, ``path`` and optional ``start`` / ``end`` in seconds.

* A directory is walked recursively, following symbolic links as ``find -L`` does (a folder of links into
  a shared library is a common dataset layout), in sorted order, each folder's files before its
  subfolders; every file with an audio extension is a track whose id is its path relative to the folder.
  A link that loops back to a folder above it, or that points nowhere, fails alone with its reason. With
  ``follow_symlinks=False`` (``--no-follow-symlinks``) links are neither followed nor listed.
* Manifest paths are relative to ``root`` (default: the manifest's folder) and must stay inside it
  lexically: ``..`` that climbs out or an absolute path elsewhere fails that row; links inside the root may
  point anywhere.

Ids are text: bytes of a file name that are not UTF-8 are written ``%XX`` (``storable_text``), the file is
still read by its real name. Problems with one row (a duplicate id, a path escaping the root, a bad number)
do not stop the job: the entry carries an ``error`` and is recorded as a failed track. Rows are numbered by
their line in the manifest; a duplicate id gets a ``#row<N>`` suffix so that ``track_id`` stays unique.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from marblekit.core.store_layout import storable_text

AUDIO_EXTENSIONS = frozenset({".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".aif",
                              ".aiff", ".webm", ".mp4", ".wma"})
MANIFEST_SUFFIXES = (".csv", ".jsonl")


@dataclass(frozen=True)
class Entry:
    """One catalog row: a track to extract, or the reason it cannot be. ``row``: its manifest line (0 for a
    directory catalog)."""

    id: str
    path: Path
    start: float = 0.0
    end: float | None = None
    error: str = ""
    row: int = 0


def load_catalog(catalog: Path, root: Path | None = None, follow_symlinks: bool = True) -> list[Entry]:
    """Entries in a deterministic order (the walk's order for a directory, row order for a manifest)."""
    catalog = Path(catalog)
    if catalog.is_dir():
        return _dedupe(list(_scan_directory(catalog, follow_symlinks)))
    if not catalog.is_file():
        raise FileNotFoundError(f"catalog {catalog} does not exist")
    if catalog.suffix.lower() not in MANIFEST_SUFFIXES:
        raise ValueError(f"catalog {catalog}: expected a directory or a manifest ending in "
                         f"{' / '.join(MANIFEST_SUFFIXES)}")
    rows = _read_csv(catalog) if catalog.suffix.lower() == ".csv" else _read_jsonl(catalog)
    base = Path(root) if root is not None else catalog.parent
    return _dedupe([_entry(row, number, base) for number, row in rows])


def _scan_directory(top: Path, follow_symlinks: bool) -> Iterator[Entry]:
    """Depth first: a folder's audio files (sorted), then its subfolders; ``ancestors`` holds the (device,
    inode) of the folders on the way down, so a link back to one of them is a loop."""
    stack: list[tuple[Path, frozenset[tuple[int, int]]]] = [(top, frozenset({_identity(top)}))]
    while stack:
        folder, ancestors = stack.pop()
        files, folders = [], []
        for item in sorted(os.scandir(folder), key=lambda item: item.name):
            if item.is_symlink() and not follow_symlinks:
                continue
            path = Path(item.path)
            try:
                is_dir = item.is_dir()
                is_file = not is_dir and item.is_file()
            except OSError as err:  # a link that loops onto itself
                yield _failed(top, path, f"unreadable symbolic link ({err.strerror})")
                continue
            if is_dir:
                identity = _identity(path)
                if identity in ancestors:
                    yield _failed(top, path, f"symbolic link loop: {path} leads back to a folder above it "
                                             f"({os.path.realpath(path)})")
                else:
                    folders.append((path, ancestors | {identity}))
            elif path.suffix.lower() in AUDIO_EXTENSIONS:
                files.append(path if is_file else _failed(top, path, _dangling(path)))
        for path in files:
            yield path if isinstance(path, Entry) else Entry(storable_text(path.relative_to(top).as_posix()), path)
        stack.extend(reversed(folders))


def _identity(folder: Path) -> tuple[int, int]:
    status = os.stat(folder)
    return status.st_dev, status.st_ino


def _dangling(path: Path) -> str:
    if path.is_symlink():
        return f"broken symbolic link: {path} points to {os.readlink(path)}, which does not exist"
    return f"not a regular file: {path}"


def _failed(top: Path, path: Path, reason: str) -> Entry:
    return Entry(storable_text(path.relative_to(top).as_posix()), path, error=storable_text(reason))


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


def _entry(row: dict[str, object], number: int, root: Path) -> Entry:
    track_id = storable_text(str(row.get("id") or "").strip())
    raw_path = str(row.get("path") or "").strip()
    label = track_id or f"row{number}"
    if not track_id or not raw_path:
        return Entry(label, Path(raw_path or "."), error=f"manifest row {number}: id and path are both required",
                     row=number)
    path = Path(raw_path) if Path(raw_path).is_absolute() else root / raw_path
    try:
        start, end = _seconds(row, "start") or 0.0, _seconds(row, "end")
    except ValueError as err:
        return Entry(track_id, path, error=f"manifest row {number}: {err}", row=number)
    if end is not None and end <= start:
        return Entry(track_id, path, error=f"manifest row {number}: end={end} must be after start={start}",
                     row=number)
    return Entry(track_id, path, start, end, _escape_error(path, root, number), number)


def _escape_error(path: Path, root: Path, number: int) -> str:
    """Why ``path`` is not inside ``root`` by its spelling (``..`` resolved lexically, links not followed)."""
    inside = os.path.normpath(os.path.abspath(path))
    top = os.path.normpath(os.path.abspath(root))
    if os.path.commonpath([inside, top]) == top:
        return ""
    return storable_text(f"manifest row {number}: path {path} is outside the catalog root {top} "
                         f"(manifest paths must stay inside --root, default the manifest's folder)")


def _dedupe(entries: list[Entry]) -> list[Entry]:
    first: dict[str, Entry] = {}
    result = []
    for entry in entries:
        if entry.id in first:
            where = f"manifest row {entry.row}" if entry.row else entry.path
            earlier = f"manifest row {first[entry.id].row}" if entry.row else first[entry.id].path
            entry = Entry(f"{entry.id}#row{entry.row}" if entry.row else f"{entry.id}#{len(result)}", entry.path,
                          entry.start, entry.end, f"{where}: duplicate id {entry.id!r}, already used by {earlier}",
                          entry.row)
        else:
            first[entry.id] = entry
        result.append(entry)
    return result
