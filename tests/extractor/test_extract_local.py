"""``--engine local`` against a direct onnxruntime computation on independently prepared windows."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import soundfile as sf
import soxr
from extract_helpers import HANDCRAFTED, MERT, extract_args, local_request, marble_windows, write_tone

from marblekit.app.cli import main
from marblekit.core.audio_input import Preparation, prepare_to_file
from marblekit.core.served_model import FRAMES, INPUT, POOLED
from marblekit.core.store_layout import DONE, open_pooled
from marblekit.extractor.api import extract

WINDOW_S = 2.0
RATE = 24000  # MERT v1


def reference(path: Path, start: float, end: float | None, session: ort.InferenceSession) -> list[dict]:
    """MARBLE's recipe written out: read, crop at the file rate, mono, resample, z-normalise, window, run."""
    data, rate = sf.read(path, dtype="float64", always_2d=True)
    data = data[int(round(start * rate)):None if end is None else int(round(end * rate))]
    clip = soxr.resample(data.mean(axis=1), rate, RATE)
    clip = (clip - clip.mean()) / np.sqrt(clip.var() + 1e-7)
    return run_windows([clip[None, first:last].astype(np.float32)
                        for first, last in marble_windows(len(clip), RATE, WINDOW_S)], session)


def run_windows(windows: list[np.ndarray], session: ort.InferenceSession) -> list[dict]:
    """Each [1, samples] window through the model, with its place in the clip (windows follow each other)."""
    results, first = [], 0
    for window in windows:
        last = first + window.shape[1]
        frames, pooled = session.run([FRAMES, POOLED], {INPUT: window})
        results.append({"start": first / RATE, "length": (last - first) / RATE, "pooled": pooled[0],
                        "frames": frames[0]})
        first = last
    return results


def test_local_store_equals_direct_onnxruntime(tmp_path: Path, model_repo: Path) -> None:
    rows = [
        {"id": "stereo-44k", "path": "a.wav"},
        {"id": "cut-16k", "path": "b.flac", "start": 0.5, "end": 3.7},
        {"id": "3ch-24k", "path": "c.wav"},
    ]
    write_tone(tmp_path / "a.wav", 7.3, rate=44100, channels=2, seed=1)
    write_tone(tmp_path / "b.flac", 4.0, rate=16000, channels=1, seed=2)
    write_tone(tmp_path / "c.wav", 2.6, rate=24000, channels=3, seed=3)
    manifest = tmp_path / "catalog.jsonl"
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows))
    store = tmp_path / "store.zarr"
    summary = extract(local_request(manifest, store, model_repo, MERT, window_s=WINDOW_S, batch=3, frames=True,
                                    frame_layers=(0, 2), block_tracks=2))
    assert (summary.done, summary.failed, summary.finalized) == (3, 0, True)

    session = ort.InferenceSession(str(model_repo / MERT / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    view = open_pooled(store)
    assert view.track_id.tolist() == [row["id"] for row in rows]
    assert (view.track_status == DONE).all() and set(view.track_error.tolist()) == {""}
    assert view.attrs.normalize_input is True and view.attrs.random_init is True
    row = 0
    for track, spec in enumerate(rows):
        expected = reference(tmp_path / spec["path"], spec.get("start", 0.0), spec.get("end"), session)
        assert (view.window_track == track).sum() == len(expected)
        for window in expected:
            assert view.window_track[row] == track
            assert view.window_start[row] == window["start"] and view.window_length[row] == window["length"]
            scale = np.abs(window["pooled"]).max()
            np.testing.assert_allclose(view.pooled[row].astype(np.float32), window["pooled"], rtol=2e-3,
                                       atol=2e-3 * scale)
            frames = view.frames[view.frame_offsets[row]:view.frame_offsets[row + 1]]
            dim = window["frames"].shape[1] // 3  # three hidden states of one width side by side; layers 0 and 2
            chosen = np.concatenate([window["frames"][:, :dim], window["frames"][:, 2 * dim:]], axis=1)
            np.testing.assert_allclose(frames.astype(np.float32), chosen, rtol=2e-3,
                                       atol=2e-3 * np.abs(window["frames"]).max())
            row += 1
        track_mean = np.mean([window["pooled"] for window in expected], axis=0)
        np.testing.assert_allclose(view.track_pooled[track].astype(np.float32), track_mean, rtol=2e-3,
                                   atol=2e-3 * np.abs(track_mean).max())
    assert row == len(view.pooled) and view.frame_offsets[-1] == view.frames.shape[0]


def test_each_window_normalised_alone_as_a_feature_extractor_would(tmp_path: Path, model_repo: Path) -> None:
    """--normalize-windows: every window is what Wav2Vec2FeatureExtractor makes of that window cut out alone
    (GiantSteps' reference normalises each 30 s clip file)."""
    from transformers import Wav2Vec2FeatureExtractor

    data = write_tone(tmp_path / "cat" / "a.wav", 7.3, rate=RATE, channels=1, seed=4)[:, 0]
    data = data * np.linspace(0.1, 2.0, len(data))  # loudness that changes window to window
    sf.write(tmp_path / "cat" / "a.wav", data, RATE, subtype="FLOAT")
    store = tmp_path / "store.zarr"
    summary = extract(local_request(tmp_path / "cat", store, model_repo, MERT, window_s=WINDOW_S,
                                    normalize_windows=True))
    assert summary.done == 1
    processor = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=RATE, padding_value=0.0, do_normalize=True)
    windows = [processor(data[first:last].astype(np.float32), sampling_rate=RATE, return_tensors="np").input_values
               for first, last in marble_windows(len(data), RATE, WINDOW_S)]
    session = ort.InferenceSession(str(model_repo / MERT / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    expected = run_windows(windows, session)
    view = open_pooled(store)
    assert view.attrs.normalize_windows is True and len(view.pooled) == len(expected) == 4
    for row, window in enumerate(expected):
        np.testing.assert_allclose(view.pooled[row].astype(np.float32), window["pooled"], rtol=2e-3,
                                   atol=2e-3 * np.abs(window["pooled"]).max())
    # the model is nearly invariant to its input's scale, so check the windows themselves too
    bounds = marble_windows(len(data), RATE, WINDOW_S)
    alone = prepare_to_file(tmp_path / "cat" / "a.wav", 0.0, None, Preparation(RATE, True, None, True), tmp_path)
    whole = prepare_to_file(tmp_path / "cat" / "a.wav", 0.0, None, Preparation(RATE, True), tmp_path)
    for (first, last), window in zip(bounds, windows):
        np.testing.assert_allclose(alone.read(first, last), window[0], atol=1e-5)
    assert np.abs(whole.read(*bounds[0]) - windows[0][0]).max() > 0.5


def test_extraction_never_imports_torch(tmp_path: Path, model_repo: Path) -> None:
    write_tone(tmp_path / "cat" / "x.wav", 3.0)
    args = extract_args(tmp_path / "cat", tmp_path / "s.zarr", model_repo, "handcrafted", "--window", "2")
    code = (f"import sys; from marblekit.app.cli import main; rc = main({args!r}); "
            f"assert 'torch' not in sys.modules, 'torch was imported'; sys.exit(rc)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_settings_the_model_cannot_serve_are_refused(tmp_path: Path, model_repo: Path, capsys) -> None:
    write_tone(tmp_path / "cat" / "x.wav", 3.0)
    for flags, message in ((("--window", "31"), "accepts 24000 to 720000"),
                           (("--batch", "17"), "max_batch_size 16"),
                           (("--frames", "--layers", "0,3"), "hidden states with frames: 0, 1, 2")):
        assert main(extract_args(tmp_path / "cat", tmp_path / "s.zarr", model_repo, MERT, *flags)) == 2
        assert message in capsys.readouterr().err


def test_a_device_this_onnxruntime_lacks_is_refused_before_any_work(tmp_path: Path, model_repo: Path,
                                                                     capsys) -> None:
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA: --device cuda is valid here")
    write_tone(tmp_path / "cat" / "x.wav", 3.0)
    store = tmp_path / "s.zarr"
    for flags, message in ((("--device", "cuda"), "has no CUDAExecutionProvider (it has "),
                           (("--device", "tpu"), "--device must be one of cpu, cuda, got 'tpu'")):
        assert main(extract_args(tmp_path / "cat", store, model_repo, HANDCRAFTED, "--window", "2", *flags)) == 2
        assert message in capsys.readouterr().err
    served = ["extract", str(tmp_path / "cat"), "--model", HANDCRAFTED, "--store", str(store),
              "--server", "127.0.0.1:1", "--device", "cuda"]
    assert main(served) == 2
    assert "--device cuda is for --engine local" in capsys.readouterr().err
    assert not store.exists()
