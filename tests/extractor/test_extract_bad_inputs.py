"""The bad-input matrix: every broken file gets its own error that says what was wrong; the rest are done."""

from __future__ import annotations

import os
from pathlib import Path

import av
import numpy as np
import soundfile as sf
from extract_helpers import HANDCRAFTED, extract_args, marble_windows, write_tone

from marblekit.app.cli import main
from marblekit.core.store_layout import DONE, FAILED, open_pooled

AS_ROOT = os.geteuid() == 0  # root reads chmod-000 files, so that case can only fail for other users
WINDOW_S = 5.0


def write_m4a(path: Path, seconds: float, rate: int = 44100) -> None:
    """AAC in MP4: a format libsndfile does not read, so it exercises the FFmpeg fallback."""
    data = 0.1 * np.random.default_rng(7).standard_normal((2, int(seconds * rate))).astype(np.float32)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=rate)
        stream.layout = "stereo"
        frame = av.AudioFrame.from_ndarray(data, format="fltp", layout="stereo")
        frame.sample_rate = rate
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)


def build_matrix(root: Path, outside: Path) -> tuple[list[tuple[str, str]], dict[str, str], dict[str, float]]:
    """Manifest rows, the expected error fragment of each bad id, and the audio length of each good id."""
    bad: dict[str, str] = {}
    good: dict[str, float] = {}
    rows: list[tuple[str, str]] = []

    def add(track_id: str, name: str, error: str | None = None, seconds: float | None = None) -> None:
        rows.append((track_id, name))
        if error is not None:
            bad[track_id] = error
        if seconds is not None:
            good[track_id] = seconds

    flac = root / "corrupt.flac"
    write_tone(flac, 4.0, seed=1)
    data = bytearray(flac.read_bytes())
    data[len(data) // 3:len(data) // 3 + 2000] = np.random.default_rng(0).integers(0, 256, 2000, np.uint8).tobytes()
    flac.write_bytes(bytes(data))
    add("corrupt", "corrupt.flac", "corrupt or truncated FLAC audio")
    write_tone(root / "truncated.wav", 4.0, seed=2)
    whole = (root / "truncated.wav").read_bytes()
    (root / "truncated.wav").write_bytes(whole[:len(whole) // 2])
    add("truncated", "truncated.wav", "truncated WAV")
    (root / "empty.wav").write_bytes(b"")
    add("empty-file", "empty.wav", "empty file (0 bytes)")
    sf.write(root / "no-samples.wav", np.zeros((0, 1), np.float32), 16000)
    add("no-samples", "no-samples.wav", "no audio samples")
    sf.write(root / "silent.wav", np.zeros((16000 * 3, 2), np.float32), 16000)
    add("silent", "silent.wav", seconds=3.0)
    nan = write_tone(root / "nan.wav", 3.0, seed=3) * 1
    nan[1000:1010] = np.nan
    sf.write(root / "nan.wav", nan, 16000, subtype="FLOAT")
    add("nan", "nan.wav", "10 of 48000 decoded samples are NaN or infinite")
    for rate in (8000, 11025, 44100, 96000, 192000):
        write_tone(root / f"rate-{rate}.wav", 2.5, rate=rate, seed=rate)
        add(f"rate-{rate}", f"rate-{rate}.wav", seconds=2.5)
    for channels in (1, 2, 6, 8):
        write_tone(root / f"ch-{channels}.flac", 2.0, channels=channels, seed=channels)
        add(f"channels-{channels}", f"ch-{channels}.flac", seconds=2.0)
    write_tone(root / "long.flac", 600.0, rate=8000, seed=4)
    add("long", "long.flac", seconds=600.0)
    write_m4a(root / "aac.m4a", 3.0)
    add("ffmpeg-only", "aac.m4a", seconds=3.0)
    (root / "text.wav").write_text("this is not audio\n" * 20)
    add("non-audio", "text.wav", "not decodable as audio")
    write_tone(root / "short.wav", 0.5, seed=5)
    add("too-short", "short.wav", "0.50 s of audio after cropping; at least 1 s is needed")
    write_tone(root / "locked.wav", 2.0, seed=6)
    (root / "locked.wav").chmod(0)
    if AS_ROOT:
        add("unreadable", "locked.wav", seconds=2.0)
    else:
        add("unreadable", "locked.wav", "permission denied")
    add("missing", "missing.wav", "file not found")
    (root / "folder.wav").mkdir()
    add("directory", "folder.wav", "is a directory")
    add("silent", "silent.wav")
    bad["silent#row" + str(len(rows) + 1)] = "duplicate id 'silent'"  # its manifest line (after the header)
    write_tone(outside, 2.0, seed=8)
    add("escape", f"../{outside.name}", "outside the catalog root")
    return rows, bad, good


def test_every_bad_file_fails_alone_with_its_reason(tmp_path: Path, model_repo: Path) -> None:
    root = tmp_path / "audio"
    root.mkdir()
    rows, bad, good = build_matrix(root, tmp_path / "outside.wav")
    manifest = tmp_path / "catalog.csv"
    manifest.write_text("id,path\n" + "".join(f"{track_id},{path}\n" for track_id, path in rows))
    store = tmp_path / "store.zarr"
    args = extract_args(manifest, store, model_repo, HANDCRAFTED, "--root", str(root), "--window", str(WINDOW_S),
                        "--block-tracks", "5")
    assert main(args) == 1  # failures without --allow-failures
    view = open_pooled(store)
    ids = view.track_id.tolist()
    assert len(ids) == len(rows) and set(ids) == set(good) | set(bad)
    for track_id, fragment in bad.items():
        index = ids.index(track_id)
        assert view.track_status[index] == FAILED, track_id
        assert fragment in view.track_error[index], (track_id, view.track_error[index])
    rate = view.attrs.sample_rate
    for track_id, seconds in good.items():
        index = ids.index(track_id)
        assert view.track_status[index] == DONE and view.track_error[index] == "", (track_id, view.track_error[index])
        rows_of_track = view.window_track == index
        expected = marble_windows(int(round(seconds * rate)), rate, WINDOW_S)
        if track_id != "ffmpeg-only":  # AAC adds encoder priming samples
            assert rows_of_track.sum() == len(expected), track_id
        assert np.isfinite(view.pooled[rows_of_track]).all(), track_id
    assert not (view.window_track[:, None] == [ids.index(t) for t in bad]).any()


def test_allow_failures_sets_the_exit_status(tmp_path: Path, model_repo: Path) -> None:
    write_tone(tmp_path / "cat" / "good.wav", 2.0)
    (tmp_path / "cat" / "bad.wav").write_text("not audio")
    store = tmp_path / "s.zarr"
    assert main(extract_args(tmp_path / "cat", store, model_repo, HANDCRAFTED, "--window", "2",
                             "--allow-failures")) == 0
    assert open_pooled(store).track_status.tolist() == [FAILED, DONE]
