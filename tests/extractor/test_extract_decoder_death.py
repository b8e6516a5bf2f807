"""A decoder process killed by SIGKILL (as the OOM killer does on a huge file) costs one track, never the job:
the pool restarts, the tracks it held are decoded again one by one, and a file that kills every decoder that
opens it fails alone with the signal."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from extract_helpers import HANDCRAFTED, extract_args, write_tone

from marblekit.core.store_layout import DONE, FAILED, open_pooled


def descendants(root: int) -> set[int]:
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = set(), {root}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def holding(pid: int, path: Path) -> bool:
    try:
        return any(os.readlink(fd) == str(path) for fd in Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return False


@pytest.mark.parametrize("kills", [1, None], ids=["killed-once", "kills-every-decoder"])
def test_a_killed_decoder_costs_at_most_its_own_track(tmp_path: Path, model_repo: Path, kills: int | None) -> None:
    catalog = tmp_path / "cat"
    for index in range(4):
        write_tone(catalog / f"small{index}.wav", 3.0, seed=index)
    big = catalog / "big.flac"
    rate = 44100
    with sf.SoundFile(big, "w", rate, 2, format="FLAC") as out:  # 10 minutes: decoding takes a while
        rng = np.random.default_rng(0)
        for _ in range(60):
            out.write((0.1 * rng.standard_normal((10 * rate, 2))).astype(np.float32))
    store = tmp_path / "s.zarr"
    args = extract_args(catalog, store, model_repo, HANDCRAFTED, "--workers", "2")
    process = subprocess.Popen([sys.executable, "-m", "marblekit.app.cli", *args], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    killed = []

    def kill_decoders_of_big() -> None:
        deadline = time.monotonic() + 240
        while process.poll() is None and time.monotonic() < deadline and (kills is None or len(killed) < kills):
            for pid in descendants(process.pid):
                if holding(pid, big):
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
            time.sleep(0.01)

    killer = threading.Thread(target=kill_decoders_of_big, daemon=True)
    killer.start()
    out, err = process.communicate(timeout=300)
    killer.join()
    assert killed, "the test never caught a decoder with the big file open"
    view = open_pooled(store)
    ids = view.track_id.tolist()
    assert ids == ["big.flac", "small0.wav", "small1.wav", "small2.wav", "small3.wav"]
    assert (view.track_status[1:] == DONE).all(), view.track_error
    if kills == 1:  # decoded again alone, and this time left alone
        assert process.returncode == 0, err
        assert view.track_status[0] == DONE
    else:
        assert process.returncode == 1, err
        assert view.track_status[0] == FAILED
        assert view.track_error[0] == "decoder process died (signal 9: SIGKILL)"
        assert "failed big.flac: decoder process died (signal 9: SIGKILL)" in out
