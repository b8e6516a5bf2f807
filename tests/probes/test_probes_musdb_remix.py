"""MUSDB18's remixing augmentation drawn once (marblekit.probes.tasks.musdb_remix): the draws' statistics against
the reference's (open-unmix's random_track_mix, gain and channel-swap augmentations), the written folder against
the source audio, and a probe trained on the remixed folder."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile
from scipy import stats
from test_probes_separation import AUDIO_RATE, render_stems, split_of, store_frames, write_frame_store, write_wav

from marblekit.app.cli import main
from marblekit.extractor.catalog import load_catalog
from marblekit.probes.tasks import get_task
from marblekit.probes.tasks.musdb import STEMS
from marblekit.probes.tasks.musdb_remix import GAIN_RANGE, draw_remixes, write_remixed_folder

CHUNK_S = 1.0


def test_draws_follow_the_reference_distributions():
    durations = [3.0, 4.5, 6.0, 10.0, 2.0]
    per_track = 400
    remixes = draw_remixes(durations, per_track, CHUNK_S, np.random.default_rng(3))
    assert len(remixes) == len(durations) * per_track
    draws = [remix[stem] for remix in remixes for stem in STEMS]
    gains = np.array([d.gain for d in draws])
    assert GAIN_RANGE[0] <= gains.min() and gains.max() < GAIN_RANGE[1]
    assert stats.kstest(gains, stats.uniform(GAIN_RANGE[0], GAIN_RANGE[1] - GAIN_RANGE[0]).cdf).pvalue > 1e-3
    swaps = sum(d.swap for d in draws)
    assert stats.binomtest(swaps, len(draws), 0.5).pvalue > 1e-3
    # random.uniform(0, duration - chunk): the start as a fraction of its range is uniform on [0, 1]
    fractions = np.array([d.start_s / (durations[d.track] - CHUNK_S) for d in draws])
    assert fractions.min() >= 0 and fractions.max() <= 1
    assert stats.kstest(fractions, "uniform").pvalue > 1e-3
    for stem in STEMS:  # every track gives every stem per_track times
        assert np.bincount([r[stem].track for r in remixes]).tolist() == [per_track] * len(durations)
    # the stems of one remix come from independent tracks: two stems share a track with probability 1/5
    same = sum(r["vocals"].track == r["drums"].track for r in remixes)
    assert stats.binomtest(same, len(remixes), 1 / len(durations)).pvalue > 1e-3


def test_draws_refuse_tracks_no_longer_than_the_chunk():
    with pytest.raises(ValueError, match=r"tracks \[1\] are not longer than the 1.0 s chunk"):
        draw_remixes([3.0, 1.0], 2, CHUNK_S, np.random.default_rng(0))


def musdb_tree(root, n_tracks: int = 11, seed: int = 11) -> dict[str, dict[str, np.ndarray]]:
    """A MUSDB-shaped tree of 3 s tracks (8 train, 2 valid, 1 test); returns each track's stems by item id."""
    rng = np.random.default_rng(seed)
    tracks = {}
    for i in range(n_tracks):
        waves = render_stems(rng, STEMS)
        waves = {stem: np.stack([wave, 0.5 * wave[::-1]], axis=1) for stem, wave in waves.items()}  # stereo
        folder = root / split_of(i) / f"Artist - Song {i}"
        for stem, wave in waves.items():
            write_wav(folder / f"{stem}.wav", wave)
        write_wav(folder / "mixture.wav", sum(waves.values()))
        tracks[f"{split_of(i)}/{folder.name}"] = waves
    return tracks


def test_remixed_folder_holds_the_drawn_audio(tmp_path):
    sources = musdb_tree(tmp_path / "musdb")
    out = tmp_path / "remixed"
    assert write_remixed_folder(tmp_path / "musdb", out, per_track=2, chunk_s=CHUNK_S, seed=5, progress=False) == 16
    manifest = json.loads((out / "remix.json").read_text())
    train = sorted(name for name in sources if name.startswith("train/"))
    assert manifest["tracks"] == [name.split("/", 1)[1] for name in train]
    length = int(CHUNK_S * AUDIO_RATE)
    for k, remix in enumerate(manifest["remixes"]):
        folder = out / "train" / f"remix-{k:05d}"
        stems = {}
        for stem, draw in remix.items():
            start = int(draw["start_s"] * AUDIO_RATE)
            expected = sources[train[draw["track"]]][stem][start:start + length] * np.float32(draw["gain"])
            stems[stem], rate = soundfile.read(folder / f"{stem}.wav", dtype="float32")
            assert rate == AUDIO_RATE
            np.testing.assert_allclose(stems[stem], expected[:, ::-1] if draw["swap"] else expected, atol=1e-6)
        mixture, _ = soundfile.read(folder / "mixture.wav", dtype="float32")
        np.testing.assert_allclose(mixture, sum(stems.values()), atol=1e-6)
    assert (out / "valid").resolve() == (tmp_path / "musdb" / "valid").resolve()
    entries = load_catalog(out / "mixtures.csv")
    assert len(entries) == 16 + 3 and not any(e.error for e in entries)
    assert all(e.path.name == "mixture.wav" for e in entries)
    dataset = get_task("musdb18").load(out)
    assert sum(item.split == "train" for item in dataset.items) == 16
    with pytest.raises(FileExistsError, match="is not empty"):
        write_remixed_folder(tmp_path / "musdb", out, per_track=1, chunk_s=CHUNK_S, progress=False)


def test_probe_trains_on_the_remixes(tmp_path, capsys):
    musdb_tree(tmp_path / "musdb")
    out = tmp_path / "remixed"
    assert main(["musdb-remix", str(tmp_path / "musdb"), "--out", str(out), "--per-track", "2",
                 "--chunk-seconds", str(CHUNK_S)]) == 0
    assert "--samples-per-track 1" in capsys.readouterr().out
    rng = np.random.default_rng(2)
    ids, frames, seconds = [], [], []
    for entry in load_catalog(out / "mixtures.csv"):
        folder = entry.path.parent
        waves = {stem: soundfile.read(folder / f"{stem}.wav", dtype="float32")[0].mean(1) for stem in STEMS}
        ids.append(entry.id)
        frames.append(store_frames(waves, rng))
        seconds.append(len(waves["vocals"]) / AUDIO_RATE)
    store = write_frame_store(tmp_path / "remixed.zarr", ids, frames, seconds)
    assert main(["probe", str(store), "--task", "musdb18", "--data", str(out), "--out", str(tmp_path / "probe"),
                 "--max-epochs", "1", "--learning-rates", "1e-2", "--lstm-hidden", "8", "--chunk-seconds",
                 str(CHUNK_S), "--samples-per-track", "1", "--separation-batch", "8"]) == 0
    results = json.loads((tmp_path / "probe" / "results.json").read_text())
    assert results["items"] == {"train": 16, "valid": 2, "test": 1}
    assert all(np.isfinite(results["winner"]["test"][f"sdr_{s}"]) for s in STEMS)
