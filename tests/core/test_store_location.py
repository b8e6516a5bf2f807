"""Stores on object storage: a store written to ``s3://`` on a local S3 server reads back exactly as the same
store on disk does, through the core reader and the probes' reader alike."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_store_layout import ATTRS, small_store

from marblekit.core.store_layout import StoreReader, open_pooled
from marblekit.core.store_location import is_url, store_location
from marblekit.probes.features import read_store


def test_command_line_locations_keep_urls_whole() -> None:
    assert store_location("s3://bucket/catalog.zarr/") == "s3://bucket/catalog.zarr"
    assert store_location("runs/a.zarr") == Path("runs/a.zarr")
    assert is_url("gs://b/x") and not is_url(Path("s3:/folded"))


def test_a_store_on_s3_reads_as_the_same_store_on_disk(s3_bucket: str, tmp_path: Path) -> None:
    url = f"{s3_bucket}/runs/small.zarr"
    small_store(tmp_path / "small.zarr")
    small_store(url)
    local, remote = open_pooled(tmp_path / "small.zarr"), open_pooled(url)
    assert remote.attrs == local.attrs == ATTRS
    for name in ("pooled", "window_track", "window_start", "window_length", "track_id", "track_status",
                 "track_error", "track_pooled", "frame_offsets"):
        np.testing.assert_array_equal(getattr(remote, name), getattr(local, name), err_msg=name)
    np.testing.assert_array_equal(remote.frames[...], local.frames[...])
    for level in ("pooled", "frames"):
        on_disk, on_s3 = read_store(tmp_path / "small.zarr", level), read_store(url, level)
        assert on_s3.track_ids == on_disk.track_ids and on_s3.source == url
        np.testing.assert_array_equal(on_s3.array[...], on_disk.array[...])


def test_a_missing_store_on_s3_is_named(s3_bucket: str) -> None:
    with pytest.raises(FileNotFoundError, match=f"store {s3_bucket}/nowhere.zarr not found"):
        StoreReader(f"{s3_bucket}/nowhere.zarr")
