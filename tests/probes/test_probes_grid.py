"""The grid trainer, in every mode, against a plain per-configuration PyTorch loop (marblekit.app.bench.reference_probe:
nn.Linear layers, torch.optim.Adam, torch's ReduceLROnPlateau, early stopping and a best-state copy) with the
same seeds, the same data order and the same dropout masks; for layers of one width and of several."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from scipy import stats

from marblekit.app.bench.reference_probe import ReferenceProbe, fit
from marblekit.core.layers import LayerColumns
from marblekit.probes import scheduling, selection, stacked, training, types
from marblekit.probes.evaluators import MulticlassEvaluator
from marblekit.probes.matrix import LayerMatrix
from marblekit.probes.slabs import Slabs

SEED = 1234
SCHEDULE = types.Schedule(loss="ce", max_epochs=10, plateau_patience=1, stop_patience=3)
LRS = (1e-4, 1e-3, 1e-2)


def synthetic_task(widths: tuple[int, ...] = (16, 16, 16, 16), mixed: tuple[int, ...] = (1, 2, 3)) -> types.ProbeData:
    """150 items of 1-3 windows, hidden states of the given widths; the class shows in layers 1-2."""
    rng = np.random.default_rng(0)
    n_items, n_classes = 150, 3
    labels = rng.integers(0, n_classes, n_items)
    windows = rng.integers(1, 4, n_items)
    row_item = np.repeat(np.arange(n_items), windows)
    layers = []
    for layer, width in enumerate(widths):
        values = rng.normal(size=(len(row_item), width))
        values += {1: 0.8, 2: 0.4}.get(layer, 0.0) * rng.normal(size=(n_classes, width))[labels[row_item]]
        layers.append(values.astype(np.float16))
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
    every = LayerColumns(tuple(range(len(widths))), widths)
    columns = every.select([k for group in every.width_groups() for k in group])  # as load_rows lays them out
    buffer = np.concatenate([layers[k].ravel() for k in columns.layers])
    return types.ProbeData(
        features=LayerMatrix(buffer, len(row_item), columns),
        train=types.TrainSet(train_rows, offsets, labels[row_item[train_rows]]),
        valid=sets["valid"][0], test=sets["test"][0], n_outputs=n_classes, schedule=SCHEDULE,
        evaluator=MulticlassEvaluator({"valid": sets["valid"][1], "test": sets["test"][1]}), mixed_layers=mixed)


def reference_run(data: types.ProbeData, config: types.ProbeConfig, probe_id: int) -> tuple[list[float], float]:
    """One configuration the standard way, on its own layer (or the weighted sum's layers after a dummy layer 0,
    as the reference probe mixes 1..L); returns the validation curve and test accuracy at the best state."""
    layers = (config.layer,) if config.layer is not None else data.mixed_layers
    slab = torch.from_numpy(data.features.slab(layers)).float().transpose(0, 1)  # [rows, layers, D]
    features = slab if config.layer is not None else torch.cat([torch.zeros_like(slab[:, :1]), slab], dim=1)
    model = ReferenceProbe(slab.shape[2], features.shape[1], data.n_outputs, 0 if config.layer is not None else None,
                           SEED)
    masks = stacked.SeededDropout(SEED)
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
    configs = types.probe_grid(task.features.layers, LRS)
    return configs, [reference_run(task, c, i) for i, c in enumerate(configs)]


@pytest.mark.parametrize("mode", scheduling.MODES)
def test_layers_of_different_widths_train_as_on_their_own(mode):
    """Widths 16, 8, 16, 8 with the weighted sum over the two 8-wide layers (not side by side): every probe as
    the plain loop trains it on its own layer(s), and no layer is padded."""
    task = synthetic_task((16, 8, 16, 8), mixed=(1, 3))
    configs = types.probe_grid(task.features.layers, (1e-3,))
    results = scheduling.run_grid(task, configs, SEED, mode, workers=2, device="cpu", progress=False)
    for index, (config, result) in enumerate(zip(configs, results)):
        curve, test_acc = reference_run(task, config, index)
        np.testing.assert_allclose(result.valid_curve, curve, atol=1e-9, err_msg=config.name)
        assert result.test["acc"] == pytest.approx(test_acc), config.name


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
    configs = types.probe_grid(range(3), (1e-3, 1e-4))
    assert [c.name for c in configs] == ["layer 0, lr 0.0001", "layer 0, lr 0.001", "layer 1, lr 0.0001",
                                         "layer 1, lr 0.001", "layer 2, lr 0.0001", "layer 2, lr 0.001",
                                         "all, lr 0.0001", "all, lr 0.001"]
    assert [c.layer for c in types.probe_grid((4, 2), (1e-3,), weighted=False)] == [2, 4]


@pytest.mark.parametrize("mode", scheduling.MODES)
@pytest.mark.parametrize("layers_in_budget", [0, 1])
@pytest.mark.parametrize("matrix", ["mapped", "in RAM"])
def test_grid_over_memory_budget_gives_the_same_results(task, reference, mode, layers_in_budget, matrix, tmp_path):
    """Features memory-mapped from a file or in RAM, with room for no more layers (every batch read from the
    matrix) or for one (single-layer probes copy their slab, weighted-sum probes read the matrix): the same
    curves as without a budget."""
    np.save(tmp_path / "features.npy", task.features.buffer)
    mapped = task if matrix == "in RAM" else dataclasses.replace(
        task, features=dataclasses.replace(task.features, buffer=np.load(tmp_path / "features.npy", mmap_mode="r")))
    in_ram = task.features.nbytes if matrix == "in RAM" and mode == "vectorised" else 0
    one_layer = task.features.layer(0).nbytes
    budget = max(1, in_ram + layers_in_budget * one_layer * (1 if mode == "vectorised" else 2))
    configs, expected = reference
    results = scheduling.run_grid(mapped, configs, SEED, mode, workers=2, device="cpu", progress=False,
                            memory_bytes=budget)
    for result, (curve, test_acc) in zip(results, expected):
        np.testing.assert_allclose(result.valid_curve, curve, atol=1e-9, err_msg=result.config.name)
        assert result.test["acc"] == pytest.approx(test_acc), result.config.name


def test_slabs_copy_what_fits_and_map_the_rest(task):
    one_layer = task.features.layer(0).nbytes
    configs = types.probe_grid(task.features.layers, LRS)
    single, mixed = [configs[3]], [configs[-1]]
    slabs = Slabs(task.features, task.mixed_layers, budget=one_layer)
    every = np.arange(len(task.features.layers))
    np.testing.assert_array_equal(slabs.layers_for(single), [1])
    np.testing.assert_array_equal(slabs.layers_for(mixed), every, "the weighted sum's three do not fit: all, mapped")
    assert slabs.get(np.array([1])).shape == (1, *task.features.layer(1).shape)
    assert slabs.get(np.array([1])) is slabs.get(np.array([1])), "a worker's next probe on the layer reuses it"
    assert np.shares_memory(slabs.get(every).numpy(), task.features.buffer), "mapped, not copied"
    np.testing.assert_array_equal(Slabs(task.features, task.mixed_layers).layers_for(mixed), [1, 2, 3])
    tight = Slabs(task.features, task.mixed_layers, budget=one_layer - 1)
    np.testing.assert_array_equal(tight.layers_for(single), every)


def test_per_layer_jobs_stack_learning_rates_only_where_it_pays():
    configs = types.probe_grid(range(13))  # 14 layer choices x 6 learning rates
    pooled = scheduling._worker_groups(configs, "per-layer", workers=2, batch_rows=64)
    assert len(pooled) == 14 and all(len(job) == 6 for job in pooled)
    assert all(configs[i].layer is None for i in pooled[0]), "the weighted-sum job goes first"
    assert {configs[i].layer for job in pooled for i in job if job is not pooled[0]} == set(range(13))
    frames = scheduling._worker_groups(configs, "per-layer", workers=2, batch_rows=20_000)
    assert all(len(job) == 1 for job in frames), "thousands of frames per batch: one probe per job"
    few_layers = scheduling._worker_groups(types.probe_grid(range(2)), "per-layer", workers=2, batch_rows=64)
    assert len(few_layers) >= 2 * scheduling.JOBS_PER_WORKER and all(len(job) <= 6 for job in few_layers)
    assert sorted(i for job in few_layers for i in job) == list(range(18))
    assert scheduling._worker_groups(configs, "per-probe", workers=2, batch_rows=64)[0] == [78]


def test_training_crops_follow_the_reference_draw():
    """With ``crop_rows`` every item longer than the crop trains on one run of ``crop_rows`` consecutive rows per
    epoch, its start uniform on [0, length - crop) as the reference's ``np.random.randint`` draws it; items no
    longer than the crop train whole."""
    lengths = np.array([5, 20, 30, 10])
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    train = types.TrainSet(np.arange(offsets[-1]), offsets, np.zeros(offsets[-1], np.int64), crop_rows=10)
    shuffle = np.random.default_rng(0)
    starts = {1: [], 2: []}
    for _ in range(600):
        (positions,) = list(training.epoch_batches(train, shuffle))
        owner = np.searchsorted(offsets, positions, side="right") - 1
        assert np.bincount(owner, minlength=4).tolist() == [5, 10, 10, 10]
        for item in (1, 2):
            mine = positions[owner == item]
            assert (np.diff(mine) == 1).all()
            starts[item].append(mine[0] - offsets[item])
        assert (positions[owner == 0] == np.arange(5)).all() and (positions[owner == 3] == np.arange(55, 65)).all()
    for item, high in ((1, 10), (2, 20)):
        counts = np.bincount(starts[item], minlength=high + 1)
        assert counts[high] == 0 and (counts[:high] > 0).all(), (item, counts)
        assert stats.chisquare(counts[:high]).pvalue > 1e-3
