"""Extraction into a store on object storage (a local S3 server, moto, on loopback): the same store as on disk,
array by array, whether one process writes it or two ``--shard`` processes do and a run without ``--shard``
completes it."""

from __future__ import annotations

from pathlib import Path

import pytest
from extract_helpers import HANDCRAFTED, assert_same_frames, assert_same_store, local_request, tones_and_a_broken_file

from marblekit.core.store_layout import open_pooled
from marblekit.extractor.api import extract

TRACKS = 7


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tones_and_a_broken_file(tmp_path_factory.mktemp("s3-catalog"), TRACKS, 0.6)


def request(catalog: Path, store, repo: Path, **options):
    return local_request(catalog, store, repo, HANDCRAFTED, window_s=2.0, frames=True, block_tracks=3, **options)


@pytest.fixture(scope="module")
def on_disk(catalog: Path, model_repo: Path, tmp_path_factory: pytest.TempPathFactory):
    store = tmp_path_factory.mktemp("s3-reference") / "store.zarr"
    extract(request(catalog, store, model_repo))
    return open_pooled(store)


def test_one_process_writes_the_same_store_to_s3(catalog: Path, model_repo: Path, on_disk, s3_bucket: str) -> None:
    import s3fs

    url = f"{s3_bucket}/one.zarr"
    summary = extract(request(catalog, url, model_repo))
    assert summary.finalized and summary.done == TRACKS and summary.failed == 1
    remote = open_pooled(url)
    assert_same_store(remote, on_disk)
    assert_same_frames(remote, on_disk)
    left = s3fs.S3FileSystem().ls(url.removeprefix("s3://"))
    assert not any(key.endswith(("/blocks", "/.marblekit-locks")) for key in left), left


def test_two_shards_then_a_resume_complete_the_store_on_s3(catalog: Path, model_repo: Path, on_disk,
                                                           s3_bucket: str) -> None:
    url = f"{s3_bucket}/sharded.zarr"
    first = extract(request(catalog, url, model_repo, shard=(0, 2)))
    assert not first.finalized and first.done + first.failed == 5  # blocks 0 and 2: catalog rows 0-2 and 6-7
    second = extract(request(catalog, url, model_repo, shard=(1, 2)))
    assert not second.finalized and second.done + second.failed == 3  # on S3 shards never finalise
    again = extract(request(catalog, url, model_repo))
    assert again.finalized and again.skipped == TRACKS + 1 and again.done == 0
    assert_same_store(open_pooled(url), on_disk)
    assert_same_frames(open_pooled(url), on_disk)
