"""Separation probing: the global SDR against an independent computation, the STFT alignment, and a tiny
synthetic separation set (low sine "bass" and high-band noise "other") where the trained mask heads beat the
mixture-as-estimate baseline, through the Python API and `marblekit probe`."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
import soxr

from marblekit.app.cli import main
from marblekit.core.store_layout import StoreAttrs, write_store
from marblekit.probes import separation, wiener
from marblekit.probes.features import read_store
from marblekit.probes.metrics import global_sdr
from marblekit.probes.run import ProbeRequest, run_probe
from marblekit.probes.separation import SeparationSettings
from marblekit.probes.separation_data import Spectrogram
from marblekit.probes.types import ProbeConfig

AUDIO_RATE, STORE_RATE, FPS = 16000, 8000, 50.0
LAYERS, DIM, SECONDS = 3, 8, 3.0
STEMS = ("bass", "other")
QUICK = SeparationSettings(hidden=32, chunk_s=1.0, samples_per_track=16, batch_size=16)


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

    attrs = StoreAttrs(model="mert", sample_rate=24000, frame_rate=75.0, window_s=30.0, hop_s=30.0, layers=(0,),
                       layer_dims=(1,), random_init=True, precision="fp32")
    spec = Spectrogram.for_store(attrs, "mert")
    assert (spec.n_fft, spec.hop) == (2048, 320)
    wave = np.random.default_rng(1).normal(size=(2, 24000))  # stereo [channels, samples]
    padded = torch.from_numpy(spec.pad(wave))[None]
    whole = spec.complex(padded)
    assert whole.shape[:3] == (spec.n_frames(wave.shape[1]), 1, 2)
    reference = torch.stft(torch.from_numpy(wave), 2048, 320, window=torch.hann_window(2048, dtype=torch.float64),
                           center=True, return_complex=True).permute(2, 0, 1)[:, None]
    torch.testing.assert_close(whole, reference)
    torch.testing.assert_close(spec.magnitude(padded), reference.abs().mean(dim=2))
    start, frames = 7, 20
    chunk = padded[..., start * 320:start * 320 + (frames - 1) * 320 + 2048]
    torch.testing.assert_close(spec.complex(chunk), whole[start:start + frames])
    back = spec.inverse(whole, wave.shape[1])[0].numpy()
    np.testing.assert_allclose(back, wave, atol=1e-9)
    with pytest.raises(ValueError, match="whole number of samples"):
        Spectrogram.for_store(dataclasses.replace(attrs, frame_rate=7.0), "odd")


def open_unmix_filtering():
    """open-unmix's filtering module (what the reference's decoder calls), loaded from its file: the package's
    own __init__ imports torchaudio, which has no build for this torch."""
    import importlib.util

    spec = importlib.util.find_spec("openunmix")
    if spec is None or spec.submodule_search_locations is None:
        pytest.skip("openunmix is not installed (scripts/install.sh installs it without its dependencies)")
    path = Path(spec.submodule_search_locations[0]) / "filtering.py"
    module_spec = importlib.util.spec_from_file_location("openunmix_filtering", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def test_wiener_decoding_equals_open_unmix():
    """700 frames: two of the reference's 600-frame windows, each filtered on its own."""
    import torch

    filtering = open_unmix_filtering()
    rng = np.random.default_rng(0)
    mixture = (20 * (rng.normal(size=(700, 1025, 2)) + 1j * rng.normal(size=(700, 1025, 2)))).astype(np.complex64)
    mixture[:, 600:] *= 1e-3
    magnitude = (20 * np.abs(rng.normal(size=(700, 1025)))).astype(np.float32)
    expected = []
    for first in (0, 600):
        window = mixture[first:first + 600]
        out = filtering.wiener(torch.from_numpy(magnitude[first:first + 600, :, None, None]),
                               torch.from_numpy(np.stack([window.real, window.imag], -1)), 1, softmask=False,
                               residual=True).numpy()
        expected.append(out[..., 0, 0] + 1j * out[..., 1, 0])
    got = wiener.separate(magnitude, mixture)
    np.testing.assert_allclose(got, np.concatenate(expected), atol=2e-6 * np.abs(mixture).max())


def test_wiener_decoding_beats_the_mixture_phase_on_a_noisy_estimate():
    """Two stereo stems panned apart, overlapping in frequency; from a noisy estimate of the target's
    channel-mean magnitude (as a probe's is), the Wiener filter, whose target and residual add up to the
    mixture, scores clearly above the mixture's phase on the estimate."""
    import torch

    attrs = StoreAttrs(model="m", sample_rate=24000, frame_rate=75.0, window_s=30.0, hop_s=30.0, layers=(0,),
                       layer_dims=(1,), random_init=True, precision="fp32")
    spec = Spectrogram.for_store(attrs, "m")
    rng = np.random.default_rng(2)
    n = 3 * 24000
    t = np.arange(n) / 24000

    def envelope():
        return np.repeat(rng.random(12) < 0.7, n // 12)

    target = np.outer([0.8, 0.4], (np.sin(2 * np.pi * 440 * t) + 0.5 * np.sin(2 * np.pi * 1320 * t)) * envelope())
    other = np.outer([0.3, 0.9], 0.3 * rng.normal(size=n) * envelope())
    mixture = spec.complex(torch.from_numpy(spec.pad(target + other))[None])[:, 0]
    oracle = spec.magnitude(torch.from_numpy(spec.pad(target))[None])[:, 0]
    estimate = oracle * torch.from_numpy(np.exp(0.5 * rng.normal(size=oracle.shape)))
    scores = {}
    for how in separation.DECODERS:
        waves = spec.inverse(separation.decode(estimate, mixture, how)[:, None], n)[0].numpy()
        scores[how] = global_sdr(target, waves)
    assert scores["wiener"] > scores["mixture-phase"] + 1.5, scores


def test_each_stem_is_selected_on_its_own():
    """The reference runs each target separately: vocals and drums each take their own best grid point, though
    the middle one has the best mean; equal validation SDRs go to the earliest grid point."""
    def result(lr: float, valid: dict[str, float]) -> separation.SeparationResult:
        stems = {s: {"valid_sdr": v, "test_sdr": v - 1.0} for s, v in valid.items()}
        return separation.SeparationResult(config=ProbeConfig(None, lr), epochs=1, best_epoch=1, valid_curve=[],
                                           train_loss=[], final_lr=lr, stems=stems)

    results = [result(1e-4, {"vocals": 5.0, "drums": 1.0, "bass": 2.0}),
               result(1e-3, {"vocals": 4.0, "drums": 4.0, "bass": 2.0}),
               result(1e-2, {"vocals": 0.0, "drums": 6.0, "bass": 1.0})]
    winner = separation.per_stem_winner(results)
    assert winner["per_stem"] == {"vocals": 0, "drums": 2, "bass": 0}
    assert winner["test"] == pytest.approx({"sdr_vocals": 4.0, "sdr_drums": 5.0, "sdr_bass": 1.0, "sdr": 10 / 3,
                                            "score": 10 / 3})
    assert winner["stems"]["drums"]["config"]["lr"] == 1e-2 and winner["valid"]["sdr"] == pytest.approx(13 / 3)


def render_stems(rng: np.random.Generator, stems: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Spectrally distinct stems with random on/off envelopes: "bass" a low sine, "other" 2-3.5 kHz noise,
    any further stem a sine between 400 and 800 Hz."""
    t = np.arange(int(SECONDS * AUDIO_RATE)) / AUDIO_RATE
    envelope = lambda: np.repeat(rng.random(int(SECONDS * 4)) < 0.6, AUDIO_RATE // 4)  # noqa: E731
    waves = {}
    for stem in stems:
        if stem == "other":
            noise = np.fft.rfft(rng.normal(size=len(t)))
            freqs = np.fft.rfftfreq(len(t), 1 / AUDIO_RATE)
            noise[(freqs < 2000) | (freqs > 3500)] = 0
            band = np.fft.irfft(noise, len(t))
            waves[stem] = 0.15 * band / band.std() * envelope()
        else:
            low, high = (60, 150) if stem == "bass" else (400, 800)
            waves[stem] = 0.5 * np.sin(2 * np.pi * rng.uniform(low, high) * t) * envelope()
    return waves


def store_frames(waves: dict[str, np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """[frames, LAYERS, DIM] noise whose layer 1 holds each stem's per-frame energy at the store's rate
    (one frame short of the STFT's count, so the probe pads)."""
    hop = int(STORE_RATE / FPS)
    resampled = [soxr.resample(w, AUDIO_RATE, STORE_RATE) for w in waves.values()]
    frames = len(resampled[0]) // hop
    track = rng.normal(size=(frames, LAYERS, DIM))
    for k, wave in enumerate(resampled):
        track[:, 1, k] = 3 * np.log1p(np.square(wave[:frames * hop].reshape(frames, hop)).mean(1) * 100)
    return track


def write_frame_store(path: Path, track_ids: list[str], frames: list[np.ndarray], seconds: list[float]) -> Path:
    """One window per track, ``seconds`` long (the audio's length: its frames are one short of the grid's)."""
    attrs = StoreAttrs(model="toy", sample_rate=STORE_RATE, frame_rate=FPS, window_s=30.0, hop_s=30.0,
                       layers=tuple(range(LAYERS)), frame_layers=tuple(range(LAYERS)),
                       layer_dims=(DIM,) * LAYERS, weighted_layers=tuple(range(1, LAYERS)), random_init=False,
                       precision="fp16")
    write_store(path, attrs, track_ids, pooled=np.stack([f.mean(0) for f in frames]),
                window_track=np.arange(len(frames)), window_length=seconds, frames=np.concatenate(frames),
                frame_counts=[len(f) for f in frames])
    return path


def write_wav(path: Path, wave: np.ndarray) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, wave.astype(np.float32), AUDIO_RATE, subtype="FLOAT")
    return path.name


def split_of(i: int) -> str:
    return "train" if i < 8 else "valid" if i < 10 else "test"


def make_separation_set(root: Path, n: int = 12) -> tuple[Path, Path]:
    """A synthetic-suite separation folder of ``n`` tracks (8 train, 2 valid, the rest test) and its store."""
    rng = np.random.default_rng(7)
    task = root / "synth-separation"
    task.mkdir(parents=True)
    (task / "task.json").write_text(json.dumps({"kind": "separation", "stems": list(STEMS), "chance": {}}))
    rows, frames, seconds = [], [], []
    for i in range(n):
        waves = render_stems(rng, STEMS)
        paths = {stem: f"audio/{i}-{stem}.wav" for stem in STEMS}
        for stem, wave in waves.items():
            write_wav(task / paths[stem], wave)
        write_wav(task / f"audio/{i}.wav", sum(waves.values()))
        rows.append({"id": f"sep-{i}", "path": f"audio/{i}.wav", "split": split_of(i), "label": paths})
        frames.append(store_frames(waves, rng))
        seconds.append(len(waves[STEMS[0]]) / AUDIO_RATE)
    (task / "manifest.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return task, write_frame_store(root / "sep.zarr", [r["id"] for r in rows], frames, seconds)


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


@pytest.fixture(autouse=True)
def one_thread():
    """The tiny LSTMs run step by step: a second OpenMP thread only adds barrier waits, and on a busy
    2-core machine those waits made these tests over 10x slower (measured)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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
    for stem, index in winner["per_stem"].items():  # each stem's own best model on validation
        runs = [probe["stems"][stem] for probe in report["probes"]]
        assert runs[index]["valid_sdr"] == max(run["valid_sdr"] for run in runs)
        assert winner["test"][f"sdr_{stem}"] == runs[index]["test_sdr"]
    assert report["separation"]["hop"] == STORE_RATE / FPS and report["items"] == {"train": 8, "valid": 2, "test": 2}


def test_cli_writes_results(separation_set, tmp_path):
    task, store = separation_set
    out = tmp_path / "out"
    assert main(["probe", str(store), "--task", "synth-separation", "--data", str(task), "--out", str(out),
                 "--max-epochs", "2", "--learning-rates", "1e-2", "--lstm-hidden", "16", "--chunk-seconds", "0.5",
                 "--samples-per-track", "4", "--separation-batch", "8"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["kind"] == "separation" and results["monitor"] == "sdr" and results["mode"] == "sequential"
    winner = results["winner"]
    assert winner["config"]["name"] == "; ".join(f"{stem}: {results['probes'][i]['config']['name']}"
                                                  for stem, i in winner["per_stem"].items())
    assert all(np.isfinite(p["test"]["sdr"]) for p in results["probes"])
    assert (out / "leaderboard.md").read_text().count("★") == len(set(winner["per_stem"].values()))
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
    assert read_store(store, "frames").track_ids[0] == "sep-0"


def test_musdb_layout_end_to_end(tmp_path):
    """`--task musdb18` on a MUSDB-shaped tree: {split}/<track>/{mixture,vocals,drums,bass,other}.wav."""
    rng = np.random.default_rng(11)
    stems = ("vocals", "drums", "bass", "other")
    ids, frames, seconds = [], [], []
    for i in range(11):
        waves = render_stems(rng, stems)
        folder = tmp_path / "musdb" / split_of(i) / f"Artist - Song {i}"
        for stem, wave in waves.items():
            write_wav(folder / f"{stem}.wav", wave)
        write_wav(folder / "mixture.wav", sum(waves.values()))
        ids.append(f"{split_of(i)}/{folder.name}/mixture.wav")
        frames.append(store_frames(waves, rng))
        seconds.append(len(waves["vocals"]) / AUDIO_RATE)
    store = write_frame_store(tmp_path / "musdb.zarr", ids, frames, seconds)
    out = tmp_path / "out"
    assert main(["probe", str(store), "--task", "musdb18", "--data", str(tmp_path / "musdb"), "--out", str(out),
                 "--max-epochs", "1", "--learning-rates", "1e-2", "--lstm-hidden", "8", "--chunk-seconds", "0.5",
                 "--samples-per-track", "2", "--separation-batch", "8"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["outputs"] == list(stems) and results["items"] == {"train": 8, "valid": 2, "test": 1}
    assert set(results["winner"]["test"]) == {"sdr", "score", *(f"sdr_{s}" for s in stems)}
