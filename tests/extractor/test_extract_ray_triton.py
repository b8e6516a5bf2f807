"""Ray workers against several Triton servers: ``--server A,B`` spreads the workers over both (each server
answers requests), and the store equals the ``--engine local`` one up to float16 rounding of server batching."""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path

import numpy as np
import pytest
from extract_helpers import HANDCRAFTED, local_request, tones_and_a_broken_file

from marblekit.core.store_layout import open_pooled
from marblekit.extractor.api import extract
from marblekit.serving.client import ModelClient
from marblekit.serving.embedded import EmbeddedTriton
from marblekit.serving.environment import environment_problem

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'marblekit[ray]')")

from marblekit.extractor.ray_runner import RaySettings, extract_on_ray  # noqa: E402

MISSING = environment_problem()
pytestmark = [pytest.mark.triton, pytest.mark.skipif(MISSING is not None, reason=f"no serving environment: {MISSING}")]


def test_workers_spread_over_two_servers(model_repo: Path, tmp_path: Path) -> None:
    catalog = tones_and_a_broken_file(tmp_path / "audio", 8, 0.5)
    options = dict(window_s=2.0, block_tracks=2, workers=1)
    extract(local_request(catalog, tmp_path / "local.zarr", model_repo, HANDCRAFTED, **options))
    with contextlib.ExitStack() as stack:
        servers = [stack.enter_context(EmbeddedTriton(model_repo, [HANDCRAFTED], grpc_port=0, http_port=0,
                                                      metrics_port=0, log_path=tmp_path / f"triton{k}.log"))
                   for k in range(2)]
        urls = ",".join(server.grpc_url for server in servers)
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            request = dataclasses.replace(local_request(catalog, tmp_path / "ray.zarr", model_repo, HANDCRAFTED,
                                                        **options), server=urls)
            summary = extract_on_ray(request, RaySettings(workers=2))
        finally:
            ray.shutdown()
        served = []
        for server in servers:
            with ModelClient(server.grpc_url, HANDCRAFTED) as client:
                served.append(client.statistics().requests)
    assert summary.finalized and (summary.done, summary.failed) == (8, 1)
    assert all(requests > 0 for requests in served), f"requests per server: {served}"
    local, remote = open_pooled(tmp_path / "local.zarr"), open_pooled(tmp_path / "ray.zarr")
    np.testing.assert_array_equal(local.window_track, remote.window_track)
    x, y = local.pooled.astype(np.float32), remote.pooled.astype(np.float32)
    np.testing.assert_allclose(x, y, rtol=2e-3, atol=2e-3 * np.abs(x).max())
