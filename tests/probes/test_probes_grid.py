"""The grid trainer, in every mode, against a plain per-configuration PyTorch loop (marblekit.app.bench.reference_probe:
nn.Linear layers, torch.optim.Adam, torch's ReduceLROnPlateau, early stopping and a best-state copy) with the
same seeds, the same data order and the same dropout masks."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from marblekit.app.bench.reference_probe import ReferenceProbe, fit
from marblekit.probes import scheduling, selection, stacked, types
from marblekit.probes.evaluators import MulticlassEvaluator
from marblekit.probes.slabs import Slabs

SEED = 1234
SCHEDULE = types.Schedule(loss="ce", max_epochs=10, plateau_patience=1, stop_patience=3)
LRS = (1e-4, 1e-3, 1e-2)


def synthetic_task() -> types.ProbeData:
    """150 items of 1-3 windows, 4 hidden states of 16 dims; the class shows in layers 1-2."""
    rng = np.random.default_rng(0)
    n_items, n_layers, dim, n_classes = 150, 4, 16, 3
    labels = rng.integers(0, n_classes, n_items)
    windows = rng.integers(1, 4, n_items)
    row_item = np.repeat(np.arange(n_items), windows)
    centres = rng.normal(size=(n_classes, dim))
    features = rng.normal(size=(len(row_item), n_layers, dim))
    features[:, 1] += 0.8 * centres[labels[row_item]]
    features[:, 2] += 0.4 * centres[labels[row_item]]
    features = features.astype(np.float16)
    split = rng.permutation(np.repeat(np.array(["train", "valid", "test"]), [90, 30, 30]))

    def rows_of(name):
        items = np.flatnonzero(split == name)
        rows = np.flatnonzero(np.isin(row_item, items))
        return items, rows, np.searchsorted(items, row_item[rows])

    train_items, train_rows, train_local = rows_of("train")
    offsets = np.concatenate([[0], np.cumsum(np.bincount(train_local, minlength=len(train_items)))])
    sets = {}
    for name in ("valid", "test"):
        items, rows, local = rows_of(name)
        sets[name] = (types.EvalSet(rows, local, len(items)), labels[items])
    return types.ProbeData(
        features=np.ascontiguousarray(features.transpose(1, 0, 2)),
        train=types.TrainSet(train_rows, offsets, labels[row_item[train_rows]]),
        valid=sets["valid"][0], test=sets["test"][0], n_outputs=n_classes, schedule=SCHEDULE,
        evaluator=MulticlassEvaluator({"valid": sets["valid"][1], "test": sets["test"][1]}))


def reference_run(data: types.ProbeData, config: types.ProbeConfig, probe_id: int) -> tuple[list[float], float]:
    """One configuration the standard way; returns the validation curve and test accuracy at the best state."""
    model = ReferenceProbe(data.features.shape[2], data.n_hidden_states, data.n_outputs, config.layer, SEED)
    masks = stacked.SeededDropout(SEED)
    features = torch.from_numpy(data.features).float().transpose(0, 1)  # [rows, L+1, D], as the reference reads
    rng = np.random.default_rng(SEED)
    train = data.train
    step = 0

    def batches():
        nonlocal step
        order = rng.permutation(train.n_items)
        for start in range(0, train.n_items, 64):
            positions = np.concatenate([np.arange(train.offsets[i], train.offsets[i + 1]) for i in order[start:start + 64]])
            keep = masks(np.array([probe_id]), step, len(positions))[0]
            step += 1
            yield features[train.rows[positions]], torch.from_numpy(train.targets[positions]), keep

    def evaluate(probe: ReferenceProbe, split: types.EvalSet, labels: np.ndarray) -> float:
        out = probe(features[split.rows]).detach().numpy()
        sums = np.zeros((split.n_items, out.shape[1]))
        np.add.at(sums, split.row_item, out)
        return float((sums.argmax(1) == labels).mean())

    curve, model = fit(model, config, SCHEDULE, batches,
                       lambda probe: evaluate(probe, data.valid, data.evaluator.labels["valid"]))
    return curve, evaluate(model, data.test, data.evaluator.labels["test"])


@pytest.fixture(scope="module")
def task() -> types.ProbeData:
    return synthetic_task()


@pytest.fixture(scope="module")
def reference(task):
    configs = types.probe_grid(task.n_hidden_states, LRS)
    return configs, [reference_run(task, c, i) for i, c in enumerate(configs)]


@pytest.mark.parametrize("mode", scheduling.MODES)
def test_grid_matches_plain_loop(task, reference, mode):
    configs, expected = reference
    results = scheduling.run_grid(task, configs, SEED, mode, workers=2, device="cpu", progress=False)
    assert [r.config for r in results] == configs
    stopped_early = 0
    for result, (curve, test_acc) in zip(results, expected):
        np.testing.assert_allclose(result.valid_curve, curve, atol=1e-9, err_msg=result.config.name)
        assert result.test["acc"] == pytest.approx(test_acc), result.config.name
        stopped_early += len(curve) < SCHEDULE.max_epochs
    assert stopped_early > 0, "the synthetic task should exercise early stopping"
    want = max(range(len(expected)), key=lambda i: (max(expected[i][0]), -i))
    assert selection.select_winner(results, "acc") == want
    assert results[want].config.layer in (1, 2, None)


def test_probe_grid_order():
    configs = types.probe_grid(3, (1e-3, 1e-4))
    assert [c.name for c in configs] == ["layer 0, lr 0.0001", "layer 0, lr 0.001", "layer 1, lr 0.0001",
                                         "layer 1, lr 0.001", "layer 2, lr 0.0001", "layer 2, lr 0.001",
                                         "all, lr 0.0001", "all, lr 0.001"]


@pytest.mark.parametrize("mode", scheduling.MODES)
@pytest.mark.parametrize("layers_in_budget", [0, 1])
@pytest.mark.parametrize("matrix", ["mapped", "in RAM"])
def test_grid_over_memory_budget_gives_the_same_results(task, reference, mode, layers_in_budget, matrix, tmp_path):
    """Features memory-mapped from a file or in RAM, with room for no more layers (every batch read from the
    matrix) or for one (single-layer probes copy their slab, weighted-sum probes read the matrix): the same
    curves as without a budget."""
    np.save(tmp_path / "features.npy", task.features)
    mapped = task if matrix == "in RAM" else dataclasses.replace(
        task, features=np.load(tmp_path / "features.npy", mmap_mode="r"))
    in_ram = task.features.nbytes if matrix == "in RAM" and mode == "vectorised" else 0
    budget = max(1, in_ram + layers_in_budget * task.features[0].nbytes * (1 if mode == "vectorised" else 2))
    configs, expected = reference
    results = scheduling.run_grid(mapped, configs, SEED, mode, workers=2, device="cpu", progress=False,
                            memory_bytes=budget)
    for result, (curve, test_acc) in zip(results, expected):
        np.testing.assert_allclose(result.valid_curve, curve, atol=1e-9, err_msg=result.config.name)
        assert result.test["acc"] == pytest.approx(test_acc), result.config.name


def test_slabs_copy_what_fits_and_map_the_rest(task):
    one_layer = task.features[0].nbytes
    configs = types.probe_grid(task.n_hidden_states, LRS)
    single, mixed = [configs[3]], [configs[-1]]
    slabs = Slabs(task.features, budget=one_layer)
    np.testing.assert_array_equal(slabs.layers_for(single), [1])
    np.testing.assert_array_equal(slabs.layers_for(mixed), np.arange(task.n_hidden_states))
    assert slabs.get(np.array([1])).shape == (1, *task.features.shape[1:])
    assert slabs.get(np.array([1])) is slabs.get(np.array([1])), "a worker's next probe on the layer reuses it"
    assert np.shares_memory(slabs.get(np.arange(task.n_hidden_states)).numpy(), task.features), "mapped, not copied"
    tight = Slabs(task.features, budget=one_layer - 1)
    np.testing.assert_array_equal(tight.layers_for(single), np.arange(task.n_hidden_states))


def test_per_layer_jobs_stack_learning_rates_only_where_it_pays():
    configs = types.probe_grid(13)  # 14 layer choices x 6 learning rates
    pooled = scheduling._worker_groups(configs, "per-layer", workers=2, batch_rows=64)
    assert len(pooled) == 14 and all(len(job) == 6 for job in pooled)
    assert all(configs[i].layer is None for i in pooled[0]), "the weighted-sum job goes first"
    assert {configs[i].layer for job in pooled for i in job if job is not pooled[0]} == set(range(13))
    frames = scheduling._worker_groups(configs, "per-layer", workers=2, batch_rows=20_000)
    assert all(len(job) == 1 for job in frames), "thousands of frames per batch: one probe per job"
    few_layers = scheduling._worker_groups(types.probe_grid(2), "per-layer", workers=2, batch_rows=64)
    assert len(few_layers) >= 2 * scheduling.JOBS_PER_WORKER and all(len(job) <= 6 for job in few_layers)
    assert sorted(i for job in few_layers for i in job) == list(range(18))
    assert scheduling._worker_groups(configs, "per-probe", workers=2, batch_rows=64)[0] == [78]
