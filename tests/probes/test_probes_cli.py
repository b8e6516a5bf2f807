"""`marblekit probe` and `marblekit report` end to end on hand-made synthetic-suite folders and stores:
the probes beat chance clearly, the files are written, and a mismatched store is refused."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from marblekit.app.cli import main
from marblekit.core.keys import KEY_NAMES
from marblekit.core.store_layout import StoreAttrs, write_store
from marblekit.core.store_location import StoreLocation
from marblekit.probes.features import read_store
from marblekit.probes.matrix import load_rows

LAYERS, DIM = 3, 8
ATTRS = StoreAttrs(model="toy", sample_rate=16000, frame_rate=50.0, window_s=30.0, hop_s=30.0,
                   layers=tuple(range(LAYERS)), layer_dims=(DIM,) * LAYERS,
                   weighted_layers=tuple(range(1, LAYERS)), random_init=False, precision="fp16")
QUICK = ["--mode", "vectorised", "--max-epochs", "12", "--learning-rates", "1e-3", "1e-2"]


def make_task(root: Path, name: str, kind: str, labels: list, classes: list | None = None) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    meta = {"kind": kind, "chance": {}}
    if classes is not None:
        meta["classes"] = classes
    (folder / "task.json").write_text(json.dumps(meta))
    n = len(labels)
    splits = ["train"] * (n * 3 // 5) + ["valid"] * (n // 5) + ["test"] * (n - n * 3 // 5 - n // 5)
    rows = [{"id": f"audio/{i}.wav", "path": f"audio/{i}.wav", "split": s, "label": label}
            for i, (s, label) in enumerate(zip(splits, labels))]
    (folder / "manifest.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return folder


def pooled_store(path: StoreLocation, n: int, signal: np.ndarray, windows: int = 2) -> StoreLocation:
    """``windows`` windows per track; layer 1 carries ``signal`` [n, k] (padded to DIM) plus noise."""
    rng = np.random.default_rng(0)
    track = np.repeat(np.arange(n), windows)
    features = rng.normal(size=(len(track), LAYERS, DIM))
    features[:, 1, : signal.shape[1]] += 2.0 * signal[track]
    write_store(path, ATTRS, [f"audio/{i}.wav" for i in range(n)], pooled=features, window_track=track)
    return path


def winner(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())["winner"]


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(3)


def test_multiclass_tagging_regression_key(tmp_path, rng):
    n = 200
    classes = rng.integers(0, 4, n)
    pitch = make_task(tmp_path, "synth-pitch", "multiclass", classes.tolist(), ["a", "b", "c", "d"])
    store = pooled_store(tmp_path / "pitch.zarr", n, np.eye(4)[classes])
    assert main(["probe", str(store), "--task", "synth-pitch", "--data", str(pitch), "--out",
                 str(tmp_path / "out" / "pitch"), *QUICK]) == 0
    best = winner(tmp_path / "out" / "pitch")
    assert best["test"]["acc"] >= 0.6 and best["config"]["layer"] in (1, None)

    tags = rng.random((n, 3)) < 0.4
    names = ["drums", "bass", "piano"]
    tagging = make_task(tmp_path, "synth-tagging", "multilabel", [[t for t, on in zip(names, r) if on] for r in tags],
                        names)
    store = pooled_store(tmp_path / "tags.zarr", n, tags.astype(float))
    assert main(["probe", str(store), "--task", "synth-tagging", "--data", str(tagging), "--out",
                 str(tmp_path / "out" / "tags"), *QUICK]) == 0
    assert winner(tmp_path / "out" / "tags")["test"]["aucroc"] >= 0.8

    targets = rng.normal(size=(n, 2))
    regression = make_task(tmp_path, "synth-regression", "regression", targets.tolist(), ["arousal", "valence"])
    store = pooled_store(tmp_path / "reg.zarr", n, targets)
    assert main(["probe", str(store), "--task", "synth-regression", "--data", str(regression), "--out",
                 str(tmp_path / "out" / "reg"), *QUICK]) == 0
    assert winner(tmp_path / "out" / "reg")["test"]["r2"] >= 0.4

    keys = rng.integers(0, 24, n)
    key = make_task(tmp_path, "synth-key", "key", [KEY_NAMES[k] for k in keys])
    store = tmp_path / "key.zarr"  # one window per song, 24 dims so that every key has its own direction
    features = rng.normal(size=(n, LAYERS, 24))
    features[:, 1] += 3.0 * np.eye(24)[keys]
    write_store(store, dataclasses.replace(ATTRS, layer_dims=(24,) * LAYERS), [f"audio/{i}.wav" for i in range(n)],
                pooled=features, window_track=np.arange(n))
    assert main(["probe", str(store), "--task", "synth-key", "--data", str(key), "--out",
                 str(tmp_path / "out" / "key"), *QUICK]) == 0
    assert winner(tmp_path / "out" / "key")["test"]["score"] >= 0.5

    report = tmp_path / "report"
    assert main(["report", str(tmp_path / "out"), "--out", str(report)]) == 0
    table = (report / "table.md").read_text()
    assert "| toy |" in table and "synth-key" in table
    assert (report / "layers.png").stat().st_size > 1000
    board = (tmp_path / "out" / "pitch" / "leaderboard.md").read_text()
    assert board.count("★") == 1 and len(board.splitlines()) == 6 + 8


def test_lr_find_trains_each_layer_choice_at_its_suggested_rate(tmp_path, rng):
    n = 60
    labels = rng.integers(0, 3, n)
    task = make_task(tmp_path, "synth-pitch", "multiclass", labels.tolist(), ["a", "b", "c"])
    store = pooled_store(tmp_path / "s.zarr", n, np.eye(3)[labels])
    out = tmp_path / "out"
    assert main(["probe", str(store), "--task", "synth-pitch", "--data", str(task), "--out", str(out),
                 "--mode", "vectorised", "--max-epochs", "3", "--lr-find"]) == 0
    report = json.loads((out / "results.json").read_text())
    assert [p["config"]["layer"] for p in report["probes"]] == [0, 1, 2, None]
    tests = report["lr_range_test"]
    for probe in report["probes"]:
        test = tests[probe["config"]["name"]]
        assert probe["config"]["lr"] == test["lr"] == test["suggestion"]
        assert len(test["rates"]) == len(test["losses"]) <= 100 and test["rates"][0] == 1e-8
        assert 1e-8 < test["lr"] < 1.0
    assert report["learning_rates"] == sorted({p["config"]["lr"] for p in report["probes"]})


def test_beat_frames(tmp_path, rng):
    n, fps, frames = 30, 50.0, 300
    beats = [np.arange(rng.uniform(0.1, 0.4), frames / fps, 0.5) for _ in range(n)]
    task = make_task(tmp_path, "synth-beat", "beat", [b.round(3).tolist() for b in beats])
    offsets = np.arange(n + 1) * frames
    features = rng.normal(size=(n * frames, LAYERS, DIM))
    for i, b in enumerate(beats):
        features[i * frames + np.round(b * fps).astype(int), 1, 0] += 4.0
    store = tmp_path / "beat.zarr"
    pooled = features.reshape(n, frames, LAYERS, DIM).mean(axis=1)
    attrs = dataclasses.replace(ATTRS, frame_layers=tuple(range(LAYERS)))
    write_store(store, attrs, [f"audio/{i}.wav" for i in range(n)], pooled=pooled, window_track=np.arange(n),
                window_length=np.full(n, frames / fps), frames=features, frame_counts=np.diff(offsets))
    assert main(["probe", str(store), "--task", "synth-beat", "--data", str(task), "--out", str(tmp_path / "out"),
                 "--mode", "vectorised", "--max-epochs", "6", "--learning-rates", "1e-2"]) == 0
    assert winner(tmp_path / "out")["test"]["beat_f"] >= 0.7


def test_store_mismatch_is_refused(tmp_path, capsys):
    labels = [0, 1] * 10
    task = make_task(tmp_path, "synth-pitch", "multiclass", labels, ["a", "b"])
    store = tmp_path / "s.zarr"
    write_store(store, dataclasses.replace(ATTRS, window_s=5.0, hop_s=5.0), [f"audio/{i}.wav" for i in range(20)],
                pooled=np.zeros((20, LAYERS, DIM)), window_track=np.arange(20))
    assert main(["probe", str(store), "--task", "synth-pitch", "--data", str(task), "--out", str(tmp_path / "o")]) == 2
    assert "window_s is 5.0 but the task needs 30.0" in capsys.readouterr().err
    assert main(["probe", str(store), "--task", "gtzan-genre", "--data", str(tmp_path), "--out", str(tmp_path)]) == 2


def test_read_store_drops_unfinished_tracks(tmp_path):
    store = tmp_path / "s.zarr"
    pooled = np.arange(4 * LAYERS * DIM, dtype=float).reshape(4, LAYERS, DIM)
    write_store(store, ATTRS, ["a", "b", "c"], pooled=pooled, window_track=[0, 1, 1, 2], track_status=[1, 0, 1])
    features = read_store(store)
    assert features.track_ids == ["a", "c"]
    assert [list(r) for r in features.track_rows] == [[0], [3]]
    matrix, (rows,) = load_rows(features, [np.array([3, 0])], None)
    np.testing.assert_array_equal(matrix.slab(tuple(range(LAYERS)))[:, rows].transpose(1, 0, 2),
                                  pooled[[3, 0]].astype(np.float16))


def test_probing_a_store_on_s3_gives_the_local_result(tmp_path, rng, s3_bucket: str):
    n = 120
    classes = rng.integers(0, 4, n)
    pitch = make_task(tmp_path, "synth-pitch", "multiclass", classes.tolist(), ["a", "b", "c", "d"])
    local = pooled_store(tmp_path / "pitch.zarr", n, np.eye(4)[classes])
    remote = pooled_store(f"{s3_bucket}/pitch.zarr", n, np.eye(4)[classes])
    results = {}
    for name, store in (("local", local), ("s3", remote)):
        assert main(["probe", str(store), "--task", "synth-pitch", "--data", str(pitch), "--out",
                     str(tmp_path / name), *QUICK]) == 0
        results[name] = json.loads((tmp_path / name / "results.json").read_text())
    assert results["s3"]["store"] == remote
    assert results["s3"]["winner"] == results["local"]["winner"]
    assert [(probe["config"], probe["valid_curve"], probe["test"]) for probe in results["s3"]["probes"]] == \
        [(probe["config"], probe["valid_curve"], probe["test"]) for probe in results["local"]["probes"]]
