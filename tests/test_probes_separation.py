"""Separation probing: the global SDR against an independent computation, the STFT alignment, and a tiny
synthetic separation set (low sine "bass" and high-band noise "other") where the trained mask heads beat the
mixture-as-estimate baseline, through the Python API and `marblekit probe`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
import soxr

from marblekit.cli import main
from marblekit.probes.features import read_store, write_store
from marblekit.probes.metrics import global_sdr
from marblekit.probes.run import ProbeRequest, run_probe
from marblekit.probes.separation import Settings
from marblekit.probes.separation_data import Spectrogram

AUDIO_RATE, STORE_RATE, FPS = 16000, 8000, 50.0
LAYERS, DIM, SECONDS = 3, 8, 3.0
STEMS = ("bass", "other")
QUICK = Settings(hidden=32, chunk_s=1.0, samples_per_track=16, batch_size=16)


def test_global_sdr_against_numpy():
    rng = np.random.default_rng(0)
    reference = rng.normal(size=5000)
    estimate = reference + 0.3 * rng.normal(size=5000)
    expected = 20 * np.log10(np.linalg.norm(reference) / np.linalg.norm(reference - estimate))
    assert global_sdr(reference, estimate) == pytest.approx(expected, abs=1e-6)
    assert global_sdr(reference, reference) == pytest.approx(10 * np.log10((reference @ reference + 1e-7) / 1e-7))
    assert global_sdr(reference, np.zeros_like(reference)) == pytest.approx(0.0, abs=1e-9)
    assert global_sdr(reference, 0.5 * reference) == pytest.approx(20 * np.log10(2), abs=1e-6)


def test_spectrogram_aligns_chunks_to_the_whole_track():
    """A chunk's uncentred STFT equals the same frames of the track's centred STFT, and the inverse with
    the mixture's own magnitude and phase gives the waveform back."""
    import torch

    spec = Spectrogram.for_store({"sample_rate": 24000, "frame_rate": 75.0}, "mert")
    assert (spec.n_fft, spec.hop) == (2048, 320)
    wave = np.random.default_rng(1).normal(size=24000)
    padded = torch.from_numpy(spec.pad(wave))[None]
    whole = spec.complex(padded)
    assert whole.shape[0] == spec.n_frames(len(wave))
    reference = torch.stft(torch.from_numpy(wave)[None], 2048, 320, window=torch.hann_window(2048, dtype=torch.float64),
                           center=True, return_complex=True).permute(2, 0, 1)
    torch.testing.assert_close(whole, reference)
    start, frames = 7, 20
    chunk = padded[:, start * 320:start * 320 + (frames - 1) * 320 + 2048]
    torch.testing.assert_close(spec.complex(chunk), whole[start:start + frames])
    back = spec.inverse(whole, len(wave))[0].numpy()
    np.testing.assert_allclose(back, wave, atol=1e-9)
    with pytest.raises(ValueError, match="whole number of samples"):
        Spectrogram.for_store({"sample_rate": 24000, "frame_rate": 7.0}, "odd")


def _band_energy(wave: np.ndarray, hop: int) -> np.ndarray:
    """Per-frame log energy of the wave: the information a backbone layer would carry about a stem."""
    frames = len(wave) // hop
    return np.log1p(np.square(wave[:frames * hop].reshape(frames, hop)).mean(1) * 100)


def make_separation_set(root: Path, n: int = 12) -> tuple[Path, Path]:
    """``n`` tracks (8 train, 2 valid, the rest test): a low sine "bass" and high-band noise "other", both
    with random on/off envelopes; a store whose layer 1 holds each stem's per-frame energy."""
    rng = np.random.default_rng(7)
    task = root / "synth-separation"
    (task / "audio").mkdir(parents=True)
    (task / "task.json").write_text(json.dumps({"kind": "separation", "stems": list(STEMS), "chance": {}}))
    t = np.arange(int(SECONDS * AUDIO_RATE)) / AUDIO_RATE
    rows, frames, offsets = [], [], [0]
    hop = int(STORE_RATE / FPS)
    for i in range(n):
        split = "train" if i < 8 else "valid" if i < 10 else "test"
        envelope = lambda: np.repeat(rng.random(int(SECONDS * 4)) < 0.6, AUDIO_RATE // 4)  # noqa: E731
        bass = 0.5 * np.sin(2 * np.pi * rng.uniform(60, 150) * t) * envelope()
        noise = np.fft.rfft(rng.normal(size=len(t)))
        freqs = np.fft.rfftfreq(len(t), 1 / AUDIO_RATE)
        noise[(freqs < 2000) | (freqs > 3500)] = 0
        other = 0.5 * np.fft.irfft(noise, len(t)) / np.fft.irfft(noise, len(t)).std() * 0.3 * envelope()
        paths = {}
        for stem, wave in (("bass", bass), ("other", other)):
            paths[stem] = f"audio/{i}-{stem}.wav"
            soundfile.write(task / paths[stem], wave.astype(np.float32), AUDIO_RATE, subtype="FLOAT")
        soundfile.write(task / f"audio/{i}.wav", (bass + other).astype(np.float32), AUDIO_RATE, subtype="FLOAT")
        rows.append({"id": f"sep-{i}", "path": f"audio/{i}.wav", "split": split, "label": paths})
        low = soxr.resample(bass, AUDIO_RATE, STORE_RATE)
        high = soxr.resample(other, AUDIO_RATE, STORE_RATE)
        track = rng.normal(size=(len(low) // hop, LAYERS, DIM))
        track[:, 1, 0] = 3 * _band_energy(low, hop)
        track[:, 1, 1] = 3 * _band_energy(high, hop)
        frames.append(track)
        offsets.append(offsets[-1] + len(track))
    (task / "manifest.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    features = np.concatenate(frames)
    store = root / "sep.zarr"
    attrs = {"model": "toy", "sample_rate": STORE_RATE, "frame_rate": FPS, "window_s": 30.0, "hop_s": 30.0,
             "layers": list(range(LAYERS)), "frame_layers": list(range(LAYERS)), "random_init": False,
             "precision": "fp16"}
    pooled = np.stack([f.mean(0) for f in frames])
    write_store(store, [r["path"] for r in rows], attrs, pooled=pooled, window_track=np.arange(n), frames=features,
                frame_offsets=offsets)
    return task, store


def mixture_baseline(task: Path, split: str) -> dict[str, float]:
    """Mean SDR per stem of taking the mixture as the estimate, at the store's rate (numpy only)."""
    scores: dict[str, list[float]] = {s: [] for s in STEMS}
    for line in (task / "manifest.jsonl").read_text().splitlines():
        row = json.loads(line)
        if row["split"] != split:
            continue
        load = lambda p: soxr.resample(soundfile.read(task / p)[0], AUDIO_RATE, STORE_RATE)  # noqa: E731
        mixture = load(row["path"])
        for stem in STEMS:
            reference = load(row["label"][stem])
            scores[stem].append(10 * np.log10(np.sum(reference ** 2) / np.sum((reference - mixture) ** 2)))
    return {s: float(np.mean(v)) for s, v in scores.items()}


@pytest.fixture(scope="module")
def separation_set(tmp_path_factory) -> tuple[Path, Path]:
    return make_separation_set(tmp_path_factory.mktemp("separation"))


def test_trained_heads_beat_the_mixture(separation_set, tmp_path):
    task, store = separation_set
    request = ProbeRequest(store, "synth-separation", task, tmp_path, max_epochs=8, learning_rates=(1e-2,),
                           separation=QUICK, device="cpu")
    report = run_probe(request, progress=False)
    baseline = mixture_baseline(task, "test")
    winner = report["winner"]
    assert len(report["probes"]) == LAYERS + 1
    for stem in STEMS:
        assert winner["test"][f"sdr_{stem}"] > baseline[stem] + 3.0, (stem, winner["test"], baseline)
        assert set(winner["stems"][stem]) >= {"epochs", "best_epoch", "valid_curve", "valid_sdr", "test_sdr"}
    assert winner["test"]["score"] == pytest.approx(np.mean([winner["test"][f"sdr_{s}"] for s in STEMS]))
    assert report["separation"]["hop"] == STORE_RATE / FPS and report["items"] == {"train": 8, "valid": 2, "test": 2}


def test_cli_writes_results(separation_set, tmp_path):
    task, store = separation_set
    out = tmp_path / "out"
    assert main(["probe", str(store), "--task", "synth-separation", "--data", str(task), "--out", str(out),
                 "--max-epochs", "2", "--learning-rates", "1e-2", "--lstm-hidden", "16", "--chunk-seconds", "0.5",
                 "--samples-per-track", "4", "--separation-batch", "8"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["kind"] == "separation" and results["monitor"] == "sdr" and results["mode"] == "sequential"
    assert results["winner"]["config"]["name"] in {p["config"]["name"] for p in results["probes"]}
    assert all(np.isfinite(p["test"]["sdr"]) for p in results["probes"])
    assert (out / "leaderboard.md").read_text().count("★") == 1
    assert main(["report", str(out), "--out", str(tmp_path / "report")]) == 0


def test_missing_stem_file_is_named(separation_set, tmp_path, capsys):
    task, store = separation_set
    broken = tmp_path / "broken"
    import shutil

    shutil.copytree(task, broken)
    (broken / "audio" / "9-bass.wav").unlink()
    assert main(["probe", str(store), "--task", "synth-separation", "--data", str(broken), "--out",
                 str(tmp_path / "o"), "--max-epochs", "1", "--learning-rates", "1e-2", "--lstm-hidden", "8",
                 "--samples-per-track", "1"]) == 2
    assert "9-bass.wav not found" in capsys.readouterr().err
    assert read_store(store, "frames").track_ids[0] == "audio/0.wav"
