"""Extraction on a local Ray (2 CPUs, started by the test, stopped after): the same store as one process writes,
array by array; a worker killed with kill -9 mid-run is restarted and its block done again, with no track
missing or twice; a driver killed mid-run is started again and does only the blocks not yet done."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import zarr
from extract_helpers import (HANDCRAFTED, assert_same_frames, assert_same_store, extract_args, local_request,
                             tones_and_a_broken_file)

from marblekit.core.store_layout import open_pooled
from marblekit.extractor.api import extract

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'marblekit[ray]')")

from marblekit.extractor.ray_runner import RaySettings, extract_on_ray  # noqa: E402

TRACKS = 12


@pytest.fixture(scope="module")
def local_ray() -> None:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tones_and_a_broken_file(tmp_path_factory.mktemp("ray-catalog"), TRACKS, 0.4)


def request(catalog: Path, store: Path, repo: Path, **options):
    return local_request(catalog, store, repo, HANDCRAFTED, window_s=2.0, frames=True, block_tracks=2, workers=1,
                         **options)


@pytest.fixture(scope="module")
def one_process(catalog: Path, model_repo: Path, tmp_path_factory: pytest.TempPathFactory):
    store = tmp_path_factory.mktemp("ray-reference") / "store.zarr"
    extract(request(catalog, store, model_repo))
    return open_pooled(store)


def worker_pids() -> list[int]:
    """The processes of the live BlockWorker actors (Ray titles them ``ray::BlockWorker...``)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and (proc / "cmdline").read_bytes().startswith(b"ray::BlockWorker"):
                pids.append(int(proc.name))
        except OSError:  # gone meanwhile
            continue
    return sorted(pids)


def blocks_done(store: Path) -> int:
    try:
        return int(zarr.open_array(store / "done", mode="r")[:].sum())
    except FileNotFoundError:  # not created yet
        return 0


def test_ray_writes_the_store_one_process_writes(local_ray, catalog: Path, model_repo: Path, one_process,
                                                 tmp_path: Path) -> None:
    store = tmp_path / "store.zarr"
    summary = extract_on_ray(request(catalog, store, model_repo), RaySettings(workers=2))
    assert summary.finalized and (summary.done, summary.failed) == (TRACKS, 1)
    assert_same_store(open_pooled(store), one_process)
    assert_same_frames(open_pooled(store), one_process)
    again = extract_on_ray(request(catalog, store, model_repo), RaySettings(workers=2))
    assert again.skipped == TRACKS + 1 and again.done == 0 and again.finalized


def test_a_worker_killed_mid_run_is_restarted_and_the_store_is_complete(local_ray, catalog: Path,
                                                                        model_repo: Path, one_process,
                                                                        tmp_path: Path) -> None:
    store = tmp_path / "store.zarr"
    killed: list[int] = []

    def kill_a_worker_once_a_block_is_done() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            workers = worker_pids()
            if workers and blocks_done(store) >= 1:
                os.kill(workers[0], signal.SIGKILL)
                killed.append(workers[0])
            time.sleep(0.01)

    killer = threading.Thread(target=kill_a_worker_once_a_block_is_done, daemon=True)
    killer.start()
    summary = extract_on_ray(request(catalog, store, model_repo), RaySettings(workers=2))
    killer.join()
    assert killed, "no worker was killed: the run ended before one had written a block"
    assert summary.finalized and summary.done + summary.failed == TRACKS + 1  # none missing, none twice
    assert_same_store(open_pooled(store), one_process)
    assert_same_frames(open_pooled(store), one_process)


def test_the_driver_killed_mid_run_resumes_from_the_done_blocks(local_ray, catalog: Path, model_repo: Path,
                                                                 one_process, tmp_path: Path) -> None:
    store = tmp_path / "store.zarr"
    args = extract_args(catalog, store, model_repo, HANDCRAFTED, "--window", "2", "--frames", "--block-tracks", "2",
                        "--workers", "1", "--ray", "--ray-workers", "2", "--allow-failures")
    driver = subprocess.Popen([sys.executable, "-m", "marblekit.app.cli", *args], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while driver.poll() is None and blocks_done(store) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert driver.poll() is None, "the driver ended before it could be killed"
    finally:
        os.killpg(driver.pid, signal.SIGKILL)  # the driver, its local Ray and the workers, as a crash takes them
        driver.wait()
    done_before = blocks_done(store)
    total = -(-(TRACKS + 1) // 2)
    assert 2 <= done_before < total
    summary = extract_on_ray(request(catalog, store, model_repo), RaySettings(workers=2))
    assert summary.skipped >= 2 * done_before - 1 and summary.skipped + summary.done + summary.failed == TRACKS + 1
    assert summary.finalized
    assert_same_store(open_pooled(store), one_process)
    assert_same_frames(open_pooled(store), one_process)


def test_cuda_workers_on_a_cluster_without_gpus_are_refused_before_the_store(local_ray, catalog: Path,
                                                                             model_repo: Path,
                                                                             tmp_path: Path) -> None:
    store = tmp_path / "store.zarr"
    for workers in (None, 2):
        with pytest.raises(ValueError, match="the Ray cluster has no GPU"):
            extract_on_ray(request(catalog, store, model_repo, device="cuda"), RaySettings(workers=workers))
    assert not store.exists()
