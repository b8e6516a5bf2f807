"""MULE's SF-NFNet-F0: the published shapes, the front end against librosa as MULE's config runs it, the importer
for the released ``model.keras`` (exact round trip, refusals that name the file), and ONNX Runtime against
PyTorch. The released weights (251 MB, Git LFS) cannot be downloaded here, so the test writes archives as Keras
2.13.1 writes them for this graph: ``config.json`` (a functional model; TensorFlow ops as ``TFOpLambda`` layers
with tensor keyword arguments as ``[name, 0, 0]``) and ``model.weights.h5`` (each layer's variables under its
class name in snake case, counted in the layers' order; Keras 2.13 walks ``_layer_checkpoint_dependencies``,
where every layer with weights appears twice and 2.13 counts both; tf-keras >= 2.15 walks ``layers``).

ONNX tolerance: max |onnxruntime - PyTorch| <= 1e-5 per representation (measured <= 1.2e-6 on these inputs), on
the graph ``marblekit export mule`` writes from such an archive.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from marblekit.core.backbones import get_backbone
from marblekit.core.checksums import sha256_of
from marblekit.export.checkpoint import CheckpointError
from marblekit.export.mule import (ALPHA, MIN_SAMPLES, MULE, NAMES, SLICE_HOP, STATES, LogMel, NFBlock, WSConv2d,
                                   htk_mel_filterbank, load_mule_checkpoint, random_mule, standardised_slices)
from marblekit.export.pipeline import export_model

#: parameters of the network as MULE's Keras code builds it (62M, as its authors note)
PARAMETERS = 62_345_742
#: how each Keras version lays out model.weights.h5: top-level group, counter step of a layer with weights
LAYER_GROUPS = {"keras-2.13": ("_layer_checkpoint_dependencies", 2),
                "keras-2.14": ("_layer_checkpoint_dependencies", 1), "tf-keras-2.15": ("layers", 1)}


@pytest.fixture(scope="module")
def model() -> MULE:
    """A seeded model with every weight moved off its initial value (skip gains start at 0, which would leave
    every residual branch out of the outputs)."""
    model = random_mule(0)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in model.network.parameters():
            parameter.add_(0.1 * torch.randn(parameter.shape, generator=generator))
    return model


def test_the_module_has_mules_published_shapes() -> None:
    network = MULE().network
    state = network.state_dict()
    expected = {"slow_stem.convs.0.weight": (16, 1, 3, 1), "fast_stem.convs.0.weight": (2, 1, 3, 3),
                "slow_stem.convs.3.weight": (128, 64, 3, 3), "fast_stem.convs.3.weight": (16, 8, 3, 3),
                "fusions.0.time.weight": (32, 16, 1, 7), "fusions.3.project.weight": (3072, 192, 1, 1),
                "slow_stages.0.0.convs.0.weight": (128, 256, 1, 1), "slow_stages.3.0.convs.0.weight": (768, 4608, 1, 1),
                "slow_stages.2.1.convs.1.weight": (768, 128, 1, 3), "fast_stages.2.1.convs.2.weight": (96, 16, 3, 1),
                "slow_stages.3.0.shortcut.weight": (1536, 4608, 1, 1),
                "slow_stages.3.2.excite.reduce.weight": (768, 1536),
                "fast_stages.1.1.skip_gain": ()}
    assert {key: tuple(state[key].shape) for key in expected} == expected
    for stages in (network.slow_stages, network.fast_stages):
        assert [len(blocks) for blocks in stages] == [1, 2, 6, 3]
        assert [[block.shortcut is not None for block in blocks] for blocks in stages] == [
            [index == 0 for index in range(count)] for count in (1, 2, 6, 3)]
        assert [[round(1 / block.beta ** 2, 6) for block in blocks] for blocks in stages] == [
            [1.0], [1.04, 1.08], [round(1.04 + 0.04 * k, 6) for k in range(6)], [1.04, 1.08, 1.12]]
    assert sum(parameter.numel() for parameter in network.parameters()) == PARAMETERS
    assert STATES["embedding"] == 1728 and len(NAMES) == 11


def test_every_representation_has_one_frame_per_slice(model: MULE) -> None:
    with torch.no_grad():
        shortest = model(torch.randn(1, MIN_SAMPLES))
        longer = model(torch.randn(1, 3 * SLICE_HOP + 100))
    assert {name: tuple(value.shape) for name, value in shortest.items()} == {n: (1, 1, w) for n, w in STATES.items()}
    assert {name: tuple(value.shape) for name, value in longer.items()} == {n: (1, 3, w) for n, w in STATES.items()}
    with pytest.raises(ValueError, match=f"at least {MIN_SAMPLES} samples"):
        model(torch.randn(1, MIN_SAMPLES - 1))


def test_slices_are_the_slice_extractors() -> None:
    """Centres 200, 400, ... below the frame count, clamped to [150, T - 150]; each slice standardised."""
    for frames in (300, 401, 557, 1001):
        spectrogram = np.random.default_rng(frames).normal(2.0, 3.0, (frames, 96)).astype(np.float32)
        centres = [min(max(centre, 150), frames - 150) for centre in range(0, frames, 200) if centre > 0]
        expected = np.stack([spectrogram[centre - 150:centre + 150].T for centre in centres])
        expected -= expected.mean(axis=(1, 2), keepdims=True)
        expected /= np.maximum(expected.std(axis=(1, 2), keepdims=True), 0.01)
        got = standardised_slices(torch.from_numpy(spectrogram)[None])[0].numpy()
        np.testing.assert_allclose(got, expected, atol=1e-5)


def test_the_front_end_is_librosas_mel_as_mule_configures_it() -> None:
    librosa = pytest.importorskip("librosa")
    reference = librosa.filters.mel(sr=16000, n_fft=2048, n_mels=96, fmin=0.0, fmax=8000.0, htk=True, norm=2.0)
    np.testing.assert_allclose(htk_mel_filterbank(16000, 2048, 96, 8000.0), reference, atol=1e-7)
    t = np.arange(51000) / 16000
    for amplitude in (0.001, 0.5):
        audio = amplitude * (np.sin(2 * np.pi * 440 * t) + 0.3 * np.random.default_rng(0).standard_normal(t.size))
        audio = audio.astype(np.float32)
        mel = librosa.feature.melspectrogram(y=audio, sr=16000, n_fft=2048, hop_length=160, win_length=400,
                                             window="hann", center=True, pad_mode="reflect", power=2.0, n_mels=96,
                                             fmin=0.0, fmax=8000.0, norm=2.0, htk=True, dtype=np.float32)
        with torch.no_grad():
            ours = LogMel()(torch.from_numpy(audio)[None])[0].numpy().T
        np.testing.assert_allclose(ours, np.log10(10000.0 * mel + 1.0), atol=2e-5)


# --- an archive in the released format, written from a torch model --------------------------------------------

def _snake(class_name: str) -> str:
    return {"WeightStandardization": "weight_standardization", "ScalarMultiply": "scalar_multiply",
            "StochDepth": "stoch_depth", "TFOpLambda": "tf_op_lambda", "InputLayer": "input_layer",
            "GlobalAveragePooling2D": "global_average_pooling2d", "AveragePooling2D": "average_pooling2d"}.get(
                class_name, class_name.lower())


class KerasArchive:
    """MULE's functional graph as config.json entries, with each layer's variables in Keras' layout."""

    def __init__(self, activation: str) -> None:
        self.layers: list[dict] = []
        self.variables: dict[str, list[tuple[str, np.ndarray]]] = {}
        self.activation = activation

    def add(self, class_name: str, inputs: list[str], config: dict | None = None,
            variables: tuple = (), node: list | None = None) -> str:
        name = f"{_snake(class_name)}_{len(self.layers)}"
        nodes = [node] if node is not None else ([[[source, 0, 0, {}] for source in inputs]] if inputs else [])
        self.layers.append({"module": None, "class_name": class_name, "name": name, "config": config or {},
                            "inbound_nodes": nodes})
        self.variables[name] = [(path, value.detach().numpy()) for path, value in variables]
        return name

    def conv(self, x: str, module: WSConv2d) -> str:
        inner = {"class_name": "Conv2D", "config": {
            "filters": module.weight.shape[0], "kernel_size": list(module.kernel), "strides": list(module.stride),
            "padding": "same", "groups": module.groups}}
        return self.add("WeightStandardization", [x], {"layer": inner}, (
            ("vars/0", module.weight.permute(2, 3, 1, 0)), ("vars/1", module.gain), ("layer/vars/0", module.bias)))

    def act(self, x: str) -> str:
        return self.add("Activation", [x], {"activation": self.activation})

    def scalar(self, x: str, gain: float = 0.0, learnable: torch.Tensor | None = None) -> str:
        return self.add("ScalarMultiply", [x], {"init_gain": gain, "learnable": learnable is not None},
                        (("vars/0", learnable),) if learnable is not None else ())

    def block(self, x: str, block: NFBlock) -> str:
        if block.shortcut is not None:
            x = self.scalar(self.act(x), block.beta)
            skip = x if block.freq_stride == 1 else self.add("AveragePooling2D", [x], {"pool_size": [2, 1]})
            skip, hidden = self.conv(skip, block.shortcut), x
        else:
            skip, hidden = x, self.scalar(self.act(x), block.beta)
        for index, conv in enumerate(block.convs):
            hidden = self.conv(self.act(hidden) if index else hidden, conv)
        gates = self.add("GlobalAveragePooling2D", [hidden])
        for dense, activation in ((block.excite.reduce, "relu"), (block.excite.expand, "sigmoid")):
            gates = self.add("Dense", [gates], {"units": dense.out_features, "activation": activation},
                             (("vars/0", dense.weight.T), ("vars/1", dense.bias)))
        gates = self.add("TFOpLambda", [], {"function": "math.multiply"}, node=[gates, 0, 0, {"y": 2.0, "name": None}])
        for _ in range(2):
            gates = self.add("TFOpLambda", [], {"function": "expand_dims"}, node=[gates, 0, 0, {"axis": 1}])
        hidden = self.add("TFOpLambda", [], {"function": "math.multiply"},
                          node=[gates, 0, 0, {"y": [hidden, 0, 0], "name": None}])
        hidden = self.scalar(self.scalar(hidden, learnable=block.skip_gain), ALPHA)
        return self.add("StochDepth", [skip, hidden])

    def graph(self, model: MULE) -> dict:
        network = model.network
        image = self.add("InputLayer", [], {"batch_input_shape": [None, 96, 300, 1]})
        slow, fast = image, image
        for index, (slow_conv, fast_conv) in enumerate(zip(network.slow_stem.convs, network.fast_stem.convs)):
            slow = self.conv(self.act(slow) if index else slow, slow_conv)
            fast = self.conv(self.act(fast) if index else fast, fast_conv)
        for fusion, slow_blocks, fast_blocks in zip(network.fusions, network.slow_stages, network.fast_stages):
            slow = self.add("Concatenate", [slow, self.conv(self.conv(fast, fusion.time), fusion.project)])
            for slow_block in slow_blocks:
                slow = self.block(slow, slow_block)
            for fast_block in fast_blocks:
                fast = self.block(fast, fast_block)
        pooled = [self.add("GlobalAveragePooling2D", [path]) for path in (slow, fast)]
        output = self.act(self.add("Concatenate", pooled))
        return {"class_name": "Functional", "config": {"name": "model", "layers": self.layers,
                                                       "input_layers": [[image, 0, 0]],
                                                       "output_layers": [[output, 0, 0]]}}

    def weights_h5(self, group: str, step: int, override: dict[str, np.ndarray]) -> bytes:
        buffer, counters = io.BytesIO(), {}
        with h5py.File(buffer, "w") as h5:
            for entry in self.layers:
                snake = _snake(entry["class_name"])
                index = counters.get(snake, 0)
                counters[snake] = index + (step if self.variables[entry["name"]] else 1)
                layer_path = f"{group}/{snake if index == 0 else f'{snake}_{index}'}"
                h5.create_group(f"{layer_path}/vars")
                for variable, value in self.variables[entry["name"]]:
                    h5[f"{layer_path}/{variable}"] = override.get(f"{entry['name']}/{variable}", value)
        return buffer.getvalue()


def write_model_keras(model: MULE, path: Path, layout: str = "keras-2.13", activation: str = "_scaled_gelu_activation",
                      with_weights: bool = True, override: dict[str, np.ndarray] | None = None) -> KerasArchive:
    """``model`` as a ``model.keras`` archive; ``override`` replaces variables by ``layer/vars/k`` path."""
    archive = KerasArchive(activation)
    config = archive.graph(model)
    if not with_weights:
        archive.variables = {name: [] for name in archive.variables}
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("metadata.json", json.dumps({"keras_version": "2.13.1", "date_saved": "2024-06-06@17:00:00"}))
        zf.writestr("config.json", json.dumps(config))
        zf.writestr("model.weights.h5", archive.weights_h5(*LAYER_GROUPS[layout], override or {}))
    return archive


@pytest.mark.parametrize("layout", sorted(LAYER_GROUPS))
def test_an_archive_in_the_released_format_loads_exactly(model: MULE, tmp_path: Path, layout: str) -> None:
    path = tmp_path / "model.keras"
    write_model_keras(model, path, layout)
    loaded, sha256 = load_mule_checkpoint(path)
    assert sha256 == sha256_of(path)
    source_state, loaded_state = model.network.state_dict(), loaded.network.state_dict()
    assert all(torch.equal(source_state[key], loaded_state[key]) for key in source_state)
    waveform = torch.randn(1, 2 * SLICE_HOP + 20000, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ours, theirs = model(waveform), loaded(waveform)
    assert all(torch.equal(ours[name], theirs[name]) for name in NAMES)
    assert ours["embedding"].std() > 0


def test_what_is_not_mules_model_keras_is_refused_naming_the_file(model: MULE, tmp_path: Path) -> None:
    missing = tmp_path / "absent.keras"
    with pytest.raises(FileNotFoundError, match="absent.keras"):
        load_mule_checkpoint(missing)
    pointer = tmp_path / "pointer.keras"
    pointer.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:1da1\nsize 251054764\n")
    with pytest.raises(CheckpointError, match=r"pointer\.keras: not a zip archive.*git lfs pull"):
        load_mule_checkpoint(pointer)
    no_weights = tmp_path / "no_weights.keras"
    with zipfile.ZipFile(no_weights, "w") as zf:
        zf.writestr("config.json", "{}")
    with pytest.raises(CheckpointError, match=r"no_weights\.keras: the archive lacks model\.weights\.h5"):
        load_mule_checkpoint(no_weights)
    relu = tmp_path / "relu.keras"
    write_model_keras(model, relu, activation="_scaled_relu_activation", with_weights=False)
    with pytest.raises(CheckpointError, match=r"relu\.keras: expected one Activation layer .*the scaled GELU"):
        load_mule_checkpoint(relu)
    empty = tmp_path / "empty.keras"
    write_model_keras(model, empty, with_weights=False)
    with pytest.raises(CheckpointError, match=r"empty\.keras: model\.weights\.h5 lacks "
                                              r"_layer_checkpoint_dependencies/weight_standardization/vars/0"):
        load_mule_checkpoint(empty)


def test_a_variable_of_the_wrong_shape_is_refused_naming_file_and_key(model: MULE, tmp_path: Path) -> None:
    path = tmp_path / "wrong.keras"
    archive = KerasArchive("_scaled_gelu_activation")
    archive.graph(model)
    first_fast_conv = [entry["name"] for entry in archive.layers if entry["class_name"] == "WeightStandardization"][1]
    write_model_keras(model, path, override={f"{first_fast_conv}/layer/vars/0": np.zeros(3, np.float32)})
    with pytest.raises(CheckpointError, match=r"wrong\.keras \(MULE model\.keras\): key 'fast_stem\.convs\.0\.bias' "
                                              r"has shape \(3,\); the model expects \(2,\)"):
        load_mule_checkpoint(path)


def test_the_registered_spec_is_this_module() -> None:
    spec = get_backbone("mule")
    assert dict(zip(spec.layer_names, spec.dims)) == STATES
    assert (spec.hop, spec.receptive_field, spec.frame_states) == (SLICE_HOP, MIN_SAMPLES, tuple(range(11)))
    assert [spec.num_frames(n) for n in (MIN_SAMPLES - 1, MIN_SAMPLES, 2 * SLICE_HOP - 1, 2 * SLICE_HOP)] == [0, 1, 1, 2]


def test_marblekit_export_of_a_released_archive_equals_pytorch(model: MULE, tmp_path: Path) -> None:
    """``marblekit export mule --checkpoint model.keras``: the importer behind the plugin, the parity gate, and
    onnxruntime's ``pooled`` / ``frames`` (every representation side by side) against the PyTorch module."""
    import onnxruntime as ort

    write_model_keras(model, tmp_path / "model.keras")
    report = export_model(get_backbone("mule"), tmp_path / "repo", checkpoint=tmp_path / "model.keras")
    assert report.parity_ok and report.provenance["checkpoint_sha256"] == sha256_of(tmp_path / "model.keras"), \
        report.summary()
    session = ort.InferenceSession(str(report.model_dir / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(3)
    for batch, samples in ((2, MIN_SAMPLES), (1, 3 * SLICE_HOP + 3000)):
        waveform = 0.1 * torch.randn(batch, samples, generator=generator)
        with torch.no_grad():
            expected = model(waveform)
        frames, pooled = session.run(["frames", "pooled"], {"waveform": waveform.numpy()})
        want_frames = torch.cat([expected[name] for name in NAMES], dim=2).numpy()
        assert frames.shape == (batch, samples // SLICE_HOP, sum(STATES.values()))
        assert np.abs(frames - want_frames).max() <= 1e-5
        assert np.abs(pooled - want_frames.mean(axis=1)).max() <= 1e-5
