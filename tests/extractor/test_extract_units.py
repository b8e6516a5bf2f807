"""Windowing and catalogs against independent references; the progress line."""

from __future__ import annotations

import dataclasses
import json

import pytest
from extract_helpers import marble_windows

from marblekit.core.windows import Windowing
from marblekit.extractor.catalog import load_catalog
from marblekit.extractor.progress import Progress


@pytest.mark.parametrize("seconds", [0.5, 0.999, 1.0, 4.2, 5.0, 5.5, 5.9999, 6.0, 17.3, 30.0, 31.0])
@pytest.mark.parametrize("window_s", [1.0, 5.0, 30.0])
def test_windows_match_marble_loop(seconds: float, window_s: float) -> None:
    rate = 24000
    samples = int(round(seconds * rate))
    assert Windowing(window_s, window_s).bounds(samples, rate) == marble_windows(samples, rate, window_s)


def test_overlapping_windows_cover_the_clip_once_with_one_tail() -> None:
    bounds = Windowing(4.0, 2.0).bounds(11 * 100, 100)
    assert bounds == [(0, 400), (200, 600), (400, 800), (600, 1000), (800, 1100)]


def test_window_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="--window"):
        Windowing(0.5, 0.5)
    with pytest.raises(ValueError, match="--hop"):
        Windowing(5.0, 0.0)


def test_directory_catalog_is_recursive_sorted_and_filtered(tmp_path) -> None:
    for name in ("b/z.flac", "a.wav", "b/a.MP3", "notes.txt", "c/d/e.ogg"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    entries = load_catalog(tmp_path)
    assert [e.id for e in entries] == ["a.wav", "b/a.MP3", "b/z.flac", "c/d/e.ogg"]
    assert all(e.path == tmp_path / e.id and not e.error for e in entries)


def test_csv_and_jsonl_manifests_agree(tmp_path) -> None:
    rows = [{"id": "x", "path": "a.wav", "start": "1.5", "end": "4"}, {"id": "y", "path": "sub/b.wav"}]
    (tmp_path / "m.csv").write_text("id,path,start,end\nx,a.wav,1.5,4\ny,sub/b.wav,,\n")
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    from_csv, from_jsonl = load_catalog(tmp_path / "m.csv"), load_catalog(tmp_path / "m.jsonl")
    assert [e.row for e in from_csv] == [2, 3] and [e.row for e in from_jsonl] == [1, 2]  # file line numbers
    assert [dataclasses.replace(e, row=0) for e in from_csv] == [dataclasses.replace(e, row=0) for e in from_jsonl]
    assert (from_csv[0].start, from_csv[0].end, from_csv[1].end) == (1.5, 4.0, None)
    assert from_csv[1].path == tmp_path / "sub" / "b.wav"


def test_manifest_row_problems_become_entry_errors(tmp_path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    manifest = tmp_path / "m.csv"
    manifest.write_text("id,path,start,end\na,a.wav,,\na,b.wav,,\nb,../secret.wav,,\nc,c.wav,5,2\nd,d.wav,x,\n"
                        ",e.wav,,\n")
    entries = load_catalog(manifest, root=root)
    errors = {e.id: e.error for e in entries}
    assert errors["a"] == ""
    assert errors["a#row3"] == "manifest row 3: duplicate id 'a', already used by manifest row 2"
    assert "manifest row 4: path" in errors["b"] and "outside the catalog root" in errors["b"]
    assert "end=2.0 must be after start=5.0" in errors["c"]
    assert "start='x' must be a finite number of seconds" in errors["d"]
    assert "id and path are both required" in errors["row7"]
    assert len({e.id for e in entries}) == len(entries)


def test_manifest_without_the_columns_is_refused(tmp_path) -> None:
    (tmp_path / "m.csv").write_text("name,file\na,b\n")
    with pytest.raises(ValueError, match="id and path"):
        load_catalog(tmp_path / "m.csv")


def test_progress_shows_tracks_speed_and_failures(capsys) -> None:
    progress = Progress()
    progress.plan(4)
    progress.advance(2, 3600.0, failed=1)
    progress.advance(1, 0.0)
    progress.bar.refresh()
    progress.close()
    line = capsys.readouterr().err.replace("\r", "\n").strip().splitlines()[-1]
    assert "3/4" in line and "audio-h/s, 1 failed" in line, line
