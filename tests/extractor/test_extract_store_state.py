"""The exit status tells the truth about the whole store, failed tracks can be retried (a complete store is
reopened for it), a finalisation cut short is finished by the next run, and file names that are not UTF-8 are
embedded under percent-encoded ids."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from extract_helpers import HANDCRAFTED, extract_args, local_request, write_tone

from marblekit.app.cli import main
from marblekit.core.store_layout import DONE, FAILED, open_pooled
from marblekit.extractor import store as store_module
from marblekit.extractor.api import extract

LATIN1 = os.fsdecode(b"caf\xe9.wav")


def catalog_with_a_bad_file(folder: Path) -> Path:
    for index in range(5):
        write_tone(folder / f"t{index}.wav", 2.0, seed=index)
    (folder / "t2.wav").write_text("not audio")
    return folder


def assert_same_arrays(a, b) -> None:
    for name in ("pooled", "window_track", "window_start", "window_length", "track_id", "track_status",
                 "track_error", "track_pooled"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def test_a_rerun_still_reports_the_failures_of_earlier_runs(tmp_path: Path, model_repo: Path, capsys) -> None:
    catalog = catalog_with_a_bad_file(tmp_path / "cat")
    args = extract_args(catalog, tmp_path / "s.zarr", model_repo, HANDCRAFTED, "--window", "1", "--block-tracks", "2")
    assert main(args) == 1
    assert main(args) == 1  # nothing extracted this time, but the store holds a failed track
    out = capsys.readouterr().out
    assert "0 done, 0 failed, 5 skipped" in out and "4 tracks done and 1 failed in all" in out
    assert main([*args, "--allow-failures"]) == 0


def test_retry_failed_reopens_a_complete_store(tmp_path: Path, model_repo: Path) -> None:
    catalog = catalog_with_a_bad_file(tmp_path / "cat")
    request = local_request(catalog, tmp_path / "s.zarr", model_repo, window_s=1.0, block_tracks=2)
    first = extract(request)
    assert (first.failed, first.failed_in_store, first.finalized) == (1, 1, True)
    write_tone(catalog / "t2.wav", 2.0, seed=2)  # the file is mended
    assert extract(request).failed_in_store == 1  # without --retry-failed the failure stays
    again = extract(local_request(catalog, tmp_path / "s.zarr", model_repo, window_s=1.0, block_tracks=2,
                                  retry_failed=True))
    assert (again.retried, again.done, again.skipped, again.failed_in_store, again.finalized) == (1, 2, 3, 0, True)
    fresh = extract(local_request(catalog, tmp_path / "fresh.zarr", model_repo, window_s=1.0, block_tracks=2))
    assert fresh.failed_in_store == 0
    assert_same_arrays(open_pooled(tmp_path / "s.zarr"), open_pooled(tmp_path / "fresh.zarr"))
    assert not (tmp_path / "s.zarr" / store_module.BUCKETS).exists()


def test_a_finalisation_cut_short_is_finished_by_the_next_run(tmp_path: Path, model_repo: Path, monkeypatch) -> None:
    catalog = catalog_with_a_bad_file(tmp_path / "cat")
    request = local_request(catalog, tmp_path / "s.zarr", model_repo, window_s=1.0, block_tracks=2)

    def killed(self) -> None:
        raise SystemExit("killed right after the store was marked finalised")

    with monkeypatch.context() as patch:
        patch.setattr(store_module.Store, "_clean_up", killed)
        with pytest.raises(SystemExit):
            extract(request)
    assert (tmp_path / "s.zarr" / store_module.BUCKETS).is_dir()
    assert "consolidated_metadata" not in json.loads((tmp_path / "s.zarr" / "zarr.json").read_text())
    rerun = extract(request)
    assert rerun.finalized and rerun.skipped == 5 and rerun.failed_in_store == 1
    assert not (tmp_path / "s.zarr" / store_module.BUCKETS).exists()
    assert json.loads((tmp_path / "s.zarr" / "zarr.json").read_text()).get("consolidated_metadata")
    extract(local_request(catalog, tmp_path / "fresh.zarr", model_repo, window_s=1.0, block_tracks=2))
    assert_same_arrays(open_pooled(tmp_path / "s.zarr"), open_pooled(tmp_path / "fresh.zarr"))


def test_names_that_are_not_utf8_are_embedded(tmp_path: Path, model_repo: Path) -> None:
    folder = tmp_path / "cat"
    write_tone(folder / LATIN1, 2.0, seed=1)
    write_tone(folder / "plain.wav", 2.0, seed=2)
    summary = extract(local_request(folder, tmp_path / "dir.zarr", model_repo, window_s=1.0))
    assert summary.failed_in_store == 0
    view = open_pooled(tmp_path / "dir.zarr")
    assert view.track_id.tolist() == ["caf%E9.wav", "plain.wav"] and (view.track_status == DONE).all()
    shutil.copy(folder / "plain.wav", tmp_path / "reference.wav")
    (tmp_path / LATIN1).write_bytes((folder / LATIN1).read_bytes())
    manifest = tmp_path / "m.jsonl"  # JSON spells the byte 0xE9 of a file name as the escape \udce9
    manifest.write_text(json.dumps({"id": "latin", "path": LATIN1}) + "\n"
                        + json.dumps({"id": "missing", "path": os.fsdecode(b"gon\xe9.wav")}) + "\n")
    summary = extract(local_request(manifest, tmp_path / "manifest.zarr", model_repo, window_s=1.0))
    assert summary.done == 1 and summary.failed == 1
    view = open_pooled(tmp_path / "manifest.zarr")
    assert view.track_status.tolist() == [DONE, FAILED]
    assert "gon%E9.wav" in view.track_error[1] and "file not found" in view.track_error[1]
    assert summary.failures == [("missing", view.track_error[1])]
