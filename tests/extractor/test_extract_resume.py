"""Crash safety and concurrency: kill -9 at random moments then resume, and processes sharing one store."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import zarr
from extract_helpers import HANDCRAFTED, assert_same_store, extract_args, write_tone

from marblekit.core.store_layout import open_pooled

TRACKS = 48


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("resume-catalog")
    for index in range(TRACKS):
        write_tone(root / f"d{index % 4}" / f"t{index:03d}.wav", 4.0 + (index % 5) * 0.7, seed=index)
    (root / "d0" / "broken.wav").write_text("not audio")
    return root


def done_blocks(store: Path) -> int:
    try:
        return int(zarr.open_array(store / "done", mode="r")[:].sum())
    except FileNotFoundError:  # not created yet
        return 0


def command(catalog: Path, store: Path, repo: Path, *extra: str) -> list[str]:
    args = extract_args(catalog, store, repo, HANDCRAFTED, "--window", "2", "--block-tracks", "3", "--batch", "4",
                        "--workers", "2", "--allow-failures", *extra)
    return [sys.executable, "-m", "marblekit.app.cli", *args]


def start(args: list[str]) -> subprocess.Popen:
    """Its own process group, so that kill -9 takes the decoding workers down with it, like a crash."""
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, env=dict(os.environ, PYTHONWARNINGS="ignore"))


def finish(process: subprocess.Popen) -> str:
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    return out


@pytest.fixture(scope="module")
def reference(catalog: Path, model_repo: Path, tmp_path_factory: pytest.TempPathFactory):
    store = tmp_path_factory.mktemp("reference") / "store.zarr"
    started = time.perf_counter()
    finish(start(command(catalog, store, model_repo)))
    return open_pooled(store), time.perf_counter() - started


def kill_when(process: subprocess.Popen, store: Path, blocks: int, rng: random.Random) -> bool:
    """kill -9 the process group a random few ms after ``blocks`` blocks are marked done; False if it ended first."""
    while process.poll() is None and done_blocks(store) < blocks:
        time.sleep(0.005)
    time.sleep(rng.uniform(0.0, 0.03))
    if process.poll() is not None:
        return False
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate()
    return True


def test_kill_9_at_random_moments_then_resume_equals_one_run(catalog: Path, model_repo: Path, reference,
                                                             tmp_path: Path) -> None:
    expected, _ = reference
    store = tmp_path / "store.zarr"
    total = -(-(TRACKS + 1) // 3)
    rng = random.Random(1234)
    landed = []  # blocks done when each kill landed
    # during start-up, after a few more blocks (twice), and once all are done (in or after finalising)
    scratch = ("--scratch", str(tmp_path / "scratch"))
    for more in (0, rng.randint(1, 4), rng.randint(2, 5), total):
        target = min(done_blocks(store) + more, total)
        if kill_when(start(command(catalog, store, model_repo, *scratch)), store, target, rng):
            landed.append(done_blocks(store))
    print("blocks done at each kill:", landed, "of", total)
    assert sum(0 < blocks < total for blocks in landed) >= 2, f"too few kills landed mid-run: {landed}"
    out = finish(start(command(catalog, store, model_repo, *scratch)))
    assert f": complete, {TRACKS} tracks done and 1 failed in all" in out
    assert_same_store(open_pooled(store), expected)
    assert not any((tmp_path / "scratch").iterdir()), "decoded tracks of killed runs were left on the scratch disk"


def test_a_finished_store_is_skipped_and_other_settings_are_refused(catalog: Path, model_repo: Path, reference,
                                                                    tmp_path: Path) -> None:
    store = tmp_path / "store.zarr"
    finish(start(command(catalog, store, model_repo)))
    out = finish(start(command(catalog, store, model_repo)))
    assert f"0 done, 0 failed, {TRACKS + 1} skipped" in out
    other = start(command(catalog, store, model_repo, "--hop", "1"))
    _, err = other.communicate(timeout=120)
    assert other.returncode == 2 and "hop_s: store has 2.0, this run 1.0" in err


@pytest.mark.parametrize("shards", [("0/2", "1/2"), ("0/1", "0/1")], ids=["two-shards", "same-work-twice"])
def test_processes_sharing_one_store(catalog: Path, model_repo: Path, reference, tmp_path: Path,
                                     shards: tuple[str, str]) -> None:
    expected, _ = reference
    store = tmp_path / "store.zarr"
    processes = [start(command(catalog, store, model_repo, "--shard", shard)) for shard in shards]
    outputs = [finish(process) for process in processes]
    assert any(": complete," in out for out in outputs)
    assert_same_store(open_pooled(store), expected)
    done = sum(int(out.split(" done,")[0].split()[-1]) for out in outputs)
    assert done == TRACKS  # every track extracted exactly once across the processes
