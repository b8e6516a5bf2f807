"""Reading a task's rows out of a store into a layer-major matrix, in RAM or memory-mapped, piecewise."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from marblekit.core.store_layout import StoreAttrs, write_store
from marblekit.probes import features as store_features
from marblekit.probes.features import read_store
from marblekit.probes.matrix import MemoryBudget, load_rows

ATTRS = StoreAttrs(model="m", sample_rate=16000, frame_rate=10, window_s=30.0, hop_s=30.0, layers=(0, 1, 2),
                   layer_dims=(8, 8, 8), weighted_layers=(1, 2), random_init=True, precision="fp16")


@pytest.fixture()
def store(tmp_path: Path) -> tuple[Path, np.ndarray]:
    pooled = np.random.default_rng(0).normal(size=(50, 3, 8)).astype(np.float16)
    path = tmp_path / "s.zarr"
    write_store(path, ATTRS, [f"t{i}" for i in range(25)], pooled=pooled, window_track=np.repeat(np.arange(25), 2))
    return path, pooled


@pytest.mark.parametrize("budget_bytes", [None, 10])
def test_rows_read_span_by_span_into_ram_or_a_mapped_file(store, tmp_path, monkeypatch, budget_bytes):
    path, pooled = store
    monkeypatch.setattr(store_features, "READ_SPAN_BYTES", 1)  # one chunk at a time
    features = read_store(path)
    wanted = [np.array([7, 3, 3, 40]), np.array([49, 0])]
    budget = None if budget_bytes is None else MemoryBudget(budget_bytes, tmp_path / "scratch")
    matrix, positions = load_rows(features, wanted, budget)
    assert matrix.slab((0, 1, 2)).shape == (3, 5, 8), "only the union of the wanted rows is kept, layer-major"
    assert np.shares_memory(matrix.slab((0, 1, 2)), matrix.buffer), "layers of one width read as one view"
    assert isinstance(matrix.buffer, np.memmap) == (budget_bytes is not None)
    for rows, where in zip(wanted, positions):
        np.testing.assert_array_equal(matrix.slab((0, 1, 2))[:, where].transpose(1, 0, 2), pooled[rows])


def test_layers_of_different_widths_each_get_their_own_slab(tmp_path):
    """Widths 3, 5, 3: the two 3-wide layers lie side by side (the weighted sum's slab is a view), the 5-wide
    one apart; nothing is padded."""
    attrs = dataclasses.replace(ATTRS, layer_dims=(3, 5, 3), weighted_layers=(0, 2))
    pooled = np.random.default_rng(1).normal(size=(6, 11)).astype(np.float16)
    write_store(tmp_path / "w.zarr", attrs, ["a", "b"], pooled=pooled, window_track=[0, 0, 0, 1, 1, 1])
    matrix, (where,) = load_rows(read_store(tmp_path / "w.zarr"), [np.array([5, 1, 2])], None)
    assert matrix.buffer.size == 3 * 11 and matrix.layers == (0, 2, 1)
    np.testing.assert_array_equal(matrix.layer(1)[where], pooled[[5, 1, 2], 3:8])
    pair = matrix.slab((0, 2))
    assert np.shares_memory(pair, matrix.buffer)
    np.testing.assert_array_equal(pair[:, where], np.stack([pooled[[5, 1, 2], :3], pooled[[5, 1, 2], 8:]]))
    with pytest.raises(ValueError, match="widths \\[3, 5\\]: a probe group needs one width"):
        matrix.slab((0, 1))


def test_frames_of_a_track_come_in_time_order_on_its_frame_grid(tmp_path):
    frames = np.arange(7 * 3 * 2, dtype=np.float16).reshape(7, 3, 2)
    path = tmp_path / "f.zarr"
    # track 0 owns windows 0 and 2, stored out of time order; its first window (0.3 s at 10 fps) gave one frame
    # short, so its last frame covers two grid slots; track 1 owns window 1
    attrs = dataclasses.replace(ATTRS, layer_dims=(2, 2, 2), frame_layers=(0, 1, 2))
    write_store(path, attrs, ["a", "b"], pooled=np.zeros((3, 3, 2)), window_track=[0, 1, 0],
                window_start=[0.3, 0.0, 0.0], window_length=[0.2, 0.3, 0.3], frames=frames, frame_counts=[2, 3, 2])
    features = read_store(path, "frames")
    assert [list(r) for r in features.track_rows] == [[5, 6, 6, 0, 1], [2, 3, 4]]


def test_frame_alignment_stays_within_a_frame_over_ten_minutes():
    """MERT-like: 75 fps, 30 s windows of 2,249 frames (not 2,250), then a 12.3 s tail of 922; concatenated,
    the frames would be 20 frames late by the end."""
    fps, starts = 75.0, np.arange(21) * 30.0
    lengths = np.array([30.0] * 20 + [12.3])
    counts = np.array([2249] * 20 + [922])
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rows = store_features.time_aligned_rows(starts, lengths, first, first + counts, fps)
    assert len(rows) == round(612.3 * fps)
    window = np.searchsorted(first, rows, side="right") - 1
    centre = starts[window] + (rows - first[window] + 0.5) * lengths[window] / counts[window]
    grid = (np.arange(len(rows)) + 0.5) / fps
    assert np.abs(centre - grid).max() * fps < 1.0
    assert np.all(np.diff(rows) >= 0) and set(rows) == set(range(counts.sum()))
    concatenated = (np.arange(counts.sum()) + 0.5) / fps
    stored_centre = np.repeat(starts, counts) + (np.arange(counts.sum()) - np.repeat(first, counts) + 0.5) * np.repeat(
        lengths / counts, counts)
    assert np.abs(stored_centre - concatenated).max() * fps > 19


def test_a_scratch_disk_too_small_is_refused_before_writing(store, tmp_path, monkeypatch):
    path, _ = store
    monkeypatch.setattr("shutil.disk_usage", lambda _: type("Usage", (), {"free": 100})())
    with pytest.raises(OSError, match="need .* GB of scratch space in .* pass --scratch"):
        load_rows(read_store(path), [np.arange(50)], MemoryBudget(10, tmp_path / "scratch"))
