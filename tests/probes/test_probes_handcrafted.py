"""The grid on real `handcrafted` backbone features of synthesised audio clearly beats chance on pitch and key
(the audio is made here: harmonic tones and I-IV-V-I triad progressions, 16 kHz)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from marblekit.app.cli import main
from marblekit.core.backbones import get_backbone
from marblekit.core.keys import KEY_NAMES
from marblekit.core.store_layout import StoreAttrs, write_store
from marblekit.export.handcrafted import HandcraftedFeatures

RATE = 16000
ATTRS = StoreAttrs(model="handcrafted", sample_rate=RATE, frame_rate=50.0, window_s=30.0, hop_s=30.0,
                   layers=(0, 1, 2, 3), layer_dims=(128,) * 4,
                   weighted_layers=(1, 2, 3), random_init=False, precision="fp16")
QUICK = ["--mode", "vectorised", "--max-epochs", "20", "--learning-rates", "1e-3", "5e-3"]


def tone(midi: float, seconds: float, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    f0 = 440.0 * 2 ** ((midi - 69) / 12)
    harmonics = rng.uniform(0.2, 1.0, 6) / np.arange(1, 7)
    wave = sum(a * np.sin(2 * np.pi * f0 * (h + 1) * t + rng.uniform(0, 6.3)) for h, a in enumerate(harmonics)
               if f0 * (h + 1) < RATE / 2)
    return wave * np.minimum(1, np.linspace(0, 20, len(t))) + 0.01 * rng.normal(size=len(t))


def progression(key: int, rng: np.random.Generator) -> np.ndarray:
    """I-IV-V-I (major) or i-iv-v-i (minor) triads, a quarter second each, in a random octave."""
    tonic, minor = 48 + key % 12 + 12 * rng.integers(0, 2), key >= 12
    third = 3 if minor else 4
    chords = [[r, r + third, r + 7] for r in (tonic, tonic + 5, tonic + 7, tonic)]
    return np.concatenate([sum(tone(n, 0.25, rng) for n in chord) for chord in chords])


def pooled(waves: list[np.ndarray]) -> np.ndarray:
    model = HandcraftedFeatures(get_backbone("handcrafted"))
    with torch.no_grad():
        return np.stack([model(torch.tensor(w, dtype=torch.float32)[None])[0].mean(1).numpy() for w in waves])


def make(root: Path, name: str, kind: str, labels: list, features: np.ndarray, classes: list | None) -> Path:
    folder = root / name
    folder.mkdir()
    (folder / "task.json").write_text(json.dumps({"kind": kind, **({"classes": classes} if classes else {})}))
    n = len(labels)
    splits = ["train", "train", "train", "valid", "test"] * (n // 5 + 1)
    (folder / "manifest.jsonl").write_text("\n".join(
        json.dumps({"id": f"{i}.wav", "path": f"{i}.wav", "split": s, "label": y})
        for i, (s, y) in enumerate(zip(splits, labels))))
    write_store(root / f"{name}.zarr", ATTRS, [f"{i}.wav" for i in range(n)], pooled=features,
                window_track=np.arange(n))
    return folder


def test_handcrafted_pitch_and_key_beat_chance(tmp_path):
    rng = np.random.default_rng(5)
    pitches = np.tile(np.arange(12), 15)
    features = pooled([tone(60 + p, 0.5, rng) for p in pitches])
    folder = make(tmp_path, "synth-pitch", "multiclass", pitches.tolist(), features, [str(p) for p in range(12)])
    assert main(["probe", str(tmp_path / "synth-pitch.zarr"), "--task", "synth-pitch", "--data", str(folder),
                 "--out", str(tmp_path / "pitch"), *QUICK]) == 0
    result = json.loads((tmp_path / "pitch" / "results.json").read_text())["winner"]
    assert result["test"]["acc"] >= 0.6  # chance 1/12

    keys = np.tile(np.arange(24), 6)
    rng.shuffle(keys)
    features = pooled([progression(int(k), rng) for k in keys])
    folder = make(tmp_path, "synth-key", "key", [KEY_NAMES[k] for k in keys], features, None)
    assert main(["probe", str(tmp_path / "synth-key.zarr"), "--task", "synth-key", "--data", str(folder),
                 "--out", str(tmp_path / "key"), *QUICK]) == 0
    result = json.loads((tmp_path / "key" / "results.json").read_text())["winner"]
    assert result["test"]["score"] >= 0.5  # weighted score of a uniform guess is about 0.09
