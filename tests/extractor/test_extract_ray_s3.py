"""Ray and object storage together: a local Ray (started after the S3 test server, so that its workers see the
same AWS environment, as a cluster's nodes would) extracts into ``s3://`` the store one process writes on disk."""

from __future__ import annotations

from pathlib import Path

import pytest
from extract_helpers import HANDCRAFTED, assert_same_frames, assert_same_store, local_request, tones_and_a_broken_file

from marblekit.core.store_layout import open_pooled
from marblekit.extractor.api import extract

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'marblekit[ray]')")

from marblekit.extractor.ray_runner import RaySettings, extract_on_ray  # noqa: E402

TRACKS = 6


def test_ray_writes_to_s3_the_store_one_process_writes_on_disk(s3_bucket: str, model_repo: Path,
                                                               tmp_path: Path) -> None:
    catalog = tones_and_a_broken_file(tmp_path / "audio", TRACKS, 0.5)
    options = dict(window_s=2.0, frames=True, block_tracks=2, workers=1)
    extract(local_request(catalog, tmp_path / "store.zarr", model_repo, HANDCRAFTED, **options))
    url = f"{s3_bucket}/ray.zarr"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        summary = extract_on_ray(local_request(catalog, url, model_repo, HANDCRAFTED, **options),
                                 RaySettings(workers=2))
    finally:
        ray.shutdown()
    assert summary.finalized and (summary.done, summary.failed) == (TRACKS, 1)
    assert_same_store(open_pooled(url), open_pooled(tmp_path / "store.zarr"))
    assert_same_frames(open_pooled(url), open_pooled(tmp_path / "store.zarr"))
