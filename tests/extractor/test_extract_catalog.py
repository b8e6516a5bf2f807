"""Directory catalogs follow symbolic links like ``find -L`` and survive loops, dangling links and file names
that are not UTF-8; manifests keep their paths inside the root by spelling."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from marblekit.extractor.catalog import load_catalog

LATIN1 = os.fsdecode(b"caf\xe9.wav")  # a name a Latin-1 system writes: not valid UTF-8


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_a_folder_of_links_into_a_library_is_followed(tmp_path: Path) -> None:
    library = tmp_path / "library"
    for name in ("one.wav", "two.flac", "album/three.mp3"):
        touch(library / name)
    dataset = tmp_path / "dataset"
    dataset.mkdir()
    (dataset / "one.wav").symlink_to(library / "one.wav")
    (dataset / "two.flac").symlink_to(library / "two.flac")
    (dataset / "album").symlink_to(library / "album")  # a linked sub-folder
    entries = load_catalog(dataset)
    assert [(e.id, e.error) for e in entries] == [("one.wav", ""), ("two.flac", ""), ("album/three.mp3", "")]
    assert entries[2].path == dataset / "album" / "three.mp3"


def test_no_follow_symlinks_lists_only_the_real_files(tmp_path: Path) -> None:
    touch(tmp_path / "library" / "linked.wav")
    touch(tmp_path / "cat" / "real.wav")
    (tmp_path / "cat" / "linked.wav").symlink_to(tmp_path / "library" / "linked.wav")
    (tmp_path / "cat" / "sub").symlink_to(tmp_path / "library")
    assert [e.id for e in load_catalog(tmp_path / "cat", follow_symlinks=False)] == ["real.wav"]


def test_loops_and_dangling_links_fail_alone(tmp_path: Path) -> None:
    cat = tmp_path / "cat"
    touch(cat / "a" / "good.wav")
    (cat / "a" / "back").symlink_to(cat)  # a folder loop
    (cat / "self.wav").symlink_to(cat / "self.wav")  # a link to itself
    (cat / "gone.wav").symlink_to(tmp_path / "nowhere.wav")
    errors = {e.id: e.error for e in load_catalog(cat)}
    assert errors["a/good.wav"] == ""
    assert errors["a/back"].startswith("symbolic link loop:")
    assert "unreadable symbolic link (Too many levels of symbolic links)" == errors["self.wav"]
    assert errors["gone.wav"].startswith("broken symbolic link:") and "nowhere.wav" in errors["gone.wav"]
    assert len(errors) == 4


def test_names_that_are_not_utf8_get_percent_encoded_ids(tmp_path: Path) -> None:
    touch(tmp_path / LATIN1)
    [entry] = load_catalog(tmp_path)
    assert entry.id == "caf%E9.wav" and entry.id.encode("utf-8")
    assert entry.path == tmp_path / LATIN1 and entry.path.exists()


@pytest.mark.parametrize("path, inside", [("a.wav", True), ("sub/../a.wav", True), ("../a.wav", False),
                                          ("sub/../../a.wav", False), ("{root}/b.wav", True), ("/etc/x.wav", False)])
def test_manifest_paths_stay_inside_the_root_by_spelling(tmp_path: Path, path: str, inside: bool) -> None:
    root = tmp_path / "root"
    root.mkdir()
    manifest = root / "m.csv"
    manifest.write_text(f"id,path\nt,{path.format(root=root)}\n")
    [entry] = load_catalog(manifest)  # the default root is the manifest's own folder
    assert (entry.error == "") is inside, entry.error
    if not inside:
        assert "outside the catalog root" in entry.error


def test_a_link_inside_the_root_may_point_elsewhere(tmp_path: Path) -> None:
    target = touch(tmp_path / "shared" / "t.wav")
    root = tmp_path / "root"
    root.mkdir()
    (root / "t.wav").symlink_to(target)
    (root / "m.jsonl").write_text('{"id": "t", "path": "t.wav"}\n')
    [entry] = load_catalog(root / "m.jsonl")
    assert entry.error == ""
