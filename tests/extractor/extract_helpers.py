"""Helpers of the extractor tests: the tiny models' names, synthetic audio, MARBLE's windows, running the CLI
(the fixtures are in conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from marblekit.extractor.api import ExtractRequest

#: The tiny models every extractor test uses: the weight-free DSP graph, and a 2-layer random MERT shape
#: (normalize_input=True, so z-normalisation is exercised).
HANDCRAFTED = "handcrafted"
MERT = "mert-v1-95m-2l"


def marble_windows(num_samples: int, rate: int, window_s: float) -> list[tuple[int, int]]:
    """MARBLE v1's loop: non-overlapping windows from 0, a last shorter one kept only if >= 1 s."""
    window = int(round(window_s * rate))
    result = []
    for start in range(0, num_samples, window):
        stop = min(start + window, num_samples)
        if stop - start >= rate:
            result.append((start, stop))
    return result


def write_tone(path: Path, seconds: float, rate: int = 16000, channels: int = 1, seed: int = 0,
               subtype: str | None = None) -> np.ndarray:
    """Noise plus a few tones (distinct per seed), written with soundfile; returns the [frames, channels] data."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * rate))) / rate
    tones = sum(np.sin(2 * np.pi * f * t) for f in rng.uniform(100, 2000, 3))
    data = 0.2 * tones[:, None] / 3 + 0.05 * rng.standard_normal((t.size, channels))
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(os.fsencode(path), data.astype(np.float32), rate, subtype=subtype)  # any file name
    return data.astype(np.float32)


def tones_and_a_broken_file(root: Path, tracks: int, step_s: float) -> Path:
    """``tracks`` tone files of growing length (2.5 s, then ``step_s`` longer each) and one file that is not audio."""
    for index in range(tracks):
        write_tone(root / f"t{index:02d}.wav", 2.5 + step_s * index, seed=index)
    (root / "broken.wav").write_text("not audio")
    return root


def local_request(catalog: Path, store: Path, repo: Path, model: str = HANDCRAFTED, **options) -> ExtractRequest:
    """The typed request of a local (in-process onnxruntime) extraction, quiet."""
    return ExtractRequest(catalog, model, store, repo=repo, progress=False, **options)


def extract_args(catalog: Path, store: Path, repo: Path, model: str = HANDCRAFTED, *extra: str) -> list[str]:
    return ["extract", str(catalog), "--model", model, "--store", str(store), "--engine", "local",
            "--repo", str(repo), "--no-progress", *extra]


def run_cli(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    """``python -m marblekit.app.cli ARGS`` in a fresh process (as a user runs it)."""
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run([sys.executable, "-m", "marblekit.app.cli", *args], capture_output=True, text=True,
                          env=env, **kwargs)


def assert_same_store(a, b) -> None:
    """Two StoreViews hold exactly the same data (bitwise, NaNs included)."""
    for name in ("pooled", "window_track", "window_start", "window_length", "track_id", "track_status",
                 "track_error", "track_pooled"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a.attrs == b.attrs


def assert_same_frames(a, b) -> None:
    """Two StoreViews hold the same frames and offsets."""
    np.testing.assert_array_equal(a.frame_offsets, b.frame_offsets)
    np.testing.assert_array_equal(a.frames[...], b.frames[...])
