"""MULE (McCallum et al., ISMIR 2022, "Supervised and Unsupervised Learning of Audio Representations for Music
Understanding") in PyTorch: the SF-NFNet-F0 network in its published shape, with the front end inside the graph,
and an importer for the released weights (``supporting_data/model/model.keras`` of PandoraMedia's
music-audio-representations repository).

Input: a mono 16 kHz waveform ``[B, N]``, at least ``MIN_SAMPLES`` = 47840 samples (2.99 s). Inside the graph,
as ``mule_embedding_timeline.yml`` configures the original:

* mel spectrogram as librosa computes it there: centred STFT with reflect padding, n_fft 2048, hop 160, a
  400-sample periodic Hann window centred in the 2048-point frame (as a 400-tap DFT convolution: the power
  spectrum does not depend on the window's offset), power 2, 96 HTK mel bands from 0 to 8 kHz, each band scaled
  to unit L2 norm (librosa's numeric ``norm=2.0``), then ``log10(10000 * mel + 1)`` (``log10_nonneg``). The
  window and the filterbank are written out here: ``spectral.py``'s kernels window the whole n_fft and its
  filterbank is Slaney's, and librosa is not a dependency of the torch install;
* slices of 300 frames (look back 150, look forward 150) centred on frames 200, 400, ... below the frame count
  (the ``SliceExtractor`` takes centres ``t > 0`` on the hop-200 grid), a centre too close to the end moved back
  so that its slice ends at the last frame: ``N // 32000`` slices, one per 2 s, slice k centred on sample
  ``32000 * (k + 1)`` (before that end clamp);
* each slice standardised on its own (mean 0, population std floored at 0.01), the extractor's default;
* SF-NFNet-F0 on every slice, in inference mode (stochastic depth adds the residual unscaled).

Output: named representations ``[B, slices, width]`` (``STATES``): the two stems and the output of each of the
four NFNet stages of the slow and the fast path, each averaged over frequency and time of its slice, and the
1728-d MULE embedding (the scaled GELU of both paths' last stage averaged and concatenated, the model's output).

Where the original is ambiguous or odd, this port chooses:

* the whole input is one spectrogram chunk (the original cuts the waveform into chunks of 44100 * 60 * 15
  samples, 41 minutes at 16 kHz, each padded separately) and one embedding chunk (the original's 8000-frame
  chunks skip the slices centred on frames 8000, 16000, ...: a chunking artefact, not reproduced; inputs under
  80 s are unaffected);
* inputs shorter than 300 frames are refused (the original slices garbage there);
* random weights follow the original's initialisers, so the learnable skip gains start at 0 and every residual
  branch is silent in ``random_mule``.

The released ``model.keras`` is a Keras v3 archive (``config.json``, ``model.weights.h5``): ``EmbeddingFeature``
loads it with ``tf.keras.models.load_model`` and setup.py pins tensorflow 2.13.1, whose Keras 2.13 wrote it. Its
weight groups carry no layer names, only the class name in snake case with a counter in the model's layer order
(Keras 2.13 counts each layer with weights twice), so the importer reads the layer order and the graph from
``config.json``, finds each layer by walking the graph from the input along this network's structure (checking
class, filters, kernel, strides, groups, units, activations and constant gains on the way) and reads, per layer:
``WeightStandardization`` ``vars/0`` the kernel, ``vars/1`` the gain, ``layer/vars/0`` the wrapped Conv2D's bias;
``Dense`` ``vars/0`` kernel, ``vars/1`` bias; a learnable ``ScalarMultiply`` ``vars/0``. Only h5py is needed.

Layout: slices are ``[S, 1, freq=96, time=300]``, TensorFlow's NHWC with H = frequency and W = time; TensorFlow
kernels ``[h, w, in / groups, out]`` become torch ``[out, in / groups, h, w]``; 'same' padding is TensorFlow's
(the odd extra row at the end), precomputed for the fixed slice size.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from marblekit.core.checksums import sha256_of

from .architecture import named_state_hooks

if TYPE_CHECKING:
    import h5py

SAMPLE_RATE = 16000
N_FFT, WIN_LENGTH, MEL_HOP, N_MELS, F_MAX = 2048, 400, 160, 96, 8000.0
SLICE_FRAMES, SLICE_HOP_FRAMES = 300, 200  # look_backward + look_forward; the SliceExtractor's hop
FIRST_SLICE_START = SLICE_HOP_FRAMES - SLICE_FRAMES // 2  # the first centre is frame 200
SLICE_HOP = SLICE_HOP_FRAMES * MEL_HOP  # 32000 samples (2 s) per output frame
MIN_SAMPLES = (SLICE_FRAMES - 1) * MEL_HOP  # 47840: 300 frames, the shortest input with one slice
RECEPTIVE_FIELD = (SLICE_FRAMES - 1) * MEL_HOP + WIN_LENGTH  # 48240 samples under one slice's windows
MIN_STD = 0.01

GELU_GAIN = 1.7015043497085571  # keeps a unit-variance input at unit variance (NFNet's scaled activations)
ALPHA = 0.2  # variance added by each residual block
WS_EPSILON = 1e-4
STAGE_BLOCKS = (1, 2, 6, 3)  # NFNet-F0
STAGE_FREQ_STRIDES = (1, 2, 2, 2)
SLOW_WIDTHS, FAST_WIDTHS = (256, 512, 1536, 1536), (32, 64, 192, 192)
SLOW_GROUP_WIDTH, FAST_GROUP_WIDTH = 128, 16
#: fast-to-slow fusion before each stage: (channels of its 1x7 time convolution, channels it adds to the slow path)
FUSIONS = ((32, 128), (32, 256), (64, 512), (192, 3072))
#: the stems: (channels, kernel (freq, time), stride (freq, time)) of each convolution
SLOW_STEM = ((16, (3, 1), (2, 8)), (32, (3, 1), (1, 1)), (64, (3, 1), (1, 1)), (128, (3, 3), (2, 2)))
FAST_STEM = ((2, (3, 3), (2, 2)), (4, (3, 3), (1, 1)), (8, (3, 3), (1, 1)), (16, (3, 3), (2, 2)))

#: the named representations, shallow to deep, and their widths
STATES = {"slow_stem": 128, "fast_stem": 16,
          **{f"{path}_stage{stage + 1}": widths[stage] for stage in range(4)
             for path, widths in (("slow", SLOW_WIDTHS), ("fast", FAST_WIDTHS))},
          "embedding": SLOW_WIDTHS[-1] + FAST_WIDTHS[-1]}
NAMES = tuple(STATES)


def scaled_gelu(x: torch.Tensor) -> torch.Tensor:
    return nn.functional.gelu(x) * GELU_GAIN


def htk_mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, f_max: float) -> np.ndarray:
    """Triangular filters ``[n_mels, n_fft // 2 + 1]`` on the HTK mel scale from 0 Hz to ``f_max``, each scaled
    to unit L2 norm: ``librosa.filters.mel(htk=True, norm=2.0)``, written out so that building the graph needs
    no librosa."""
    bin_hz = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    top = 2595.0 * np.log10(1.0 + f_max / 700.0)
    edges = 700.0 * (10.0 ** (np.linspace(0.0, top, n_mels + 2) / 2595.0) - 1.0)
    widths = np.diff(edges)
    ramps = edges[:, None] - bin_hz[None, :]
    filters = np.maximum(0.0, np.minimum(-ramps[:-2] / widths[:-1, None], ramps[2:] / widths[1:, None]))
    norms = np.sqrt((filters ** 2).sum(axis=1, keepdims=True))
    return filters / np.where(norms > np.finfo(np.float32).tiny, norms, 1.0)


class LogMel(nn.Module):
    """``waveform [B, N]`` -> ``[B, N // 160 + 1, 96]``: MULE's ``log10_nonneg`` mel power."""

    def __init__(self) -> None:
        super().__init__()
        window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(WIN_LENGTH) / WIN_LENGTH)
        phase = 2 * np.pi * np.outer(np.arange(N_FFT // 2 + 1), np.arange(WIN_LENGTH)) / N_FFT
        kernels = np.concatenate([np.cos(phase) * window, -np.sin(phase) * window])[:, None, :]
        self.register_buffer("dft", torch.tensor(kernels, dtype=torch.float32))
        self.register_buffer("mel", torch.tensor(htk_mel_filterbank(SAMPLE_RATE, N_FFT, N_MELS, F_MAX).T,
                                                 dtype=torch.float32))

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        # reflect-padding by n_fft / 2 and keeping the window's 400 taps is reflect-padding by 200
        padded = nn.functional.pad(waveform[:, None, :], (WIN_LENGTH // 2, WIN_LENGTH // 2), mode="reflect")
        real, imag = nn.functional.conv1d(padded, self.dft, stride=MEL_HOP).transpose(1, 2).chunk(2, dim=-1)
        return torch.log10(10000.0 * ((real * real + imag * imag) @ self.mel) + 1.0)


def standardised_slices(spectrogram: torch.Tensor) -> torch.Tensor:
    """``[B, T, 96]`` -> ``[B, (T - 1) // 200, 96, 300]``: the SliceExtractor's slices, each standardised."""
    frames = spectrogram.shape[1]
    count = (frames - 1) // SLICE_HOP_FRAMES
    starts = torch.clamp(torch.arange(count) * SLICE_HOP_FRAMES + FIRST_SLICE_START, max=frames - SLICE_FRAMES)
    slices = spectrogram[:, starts[:, None] + torch.arange(SLICE_FRAMES)].transpose(2, 3)
    centred = slices - slices.mean(dim=(2, 3), keepdim=True)
    std = torch.sqrt((centred * centred).mean(dim=(2, 3), keepdim=True))
    return centred / torch.clamp(std, min=MIN_STD)


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's 'same' padding (before, after) of one axis."""
    total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class WSConv2d(nn.Module):
    """MULE's ``WeightStandardization(Conv2D)``: each output filter standardised over its fan-in (population
    variance, floored), scaled by a learnable gain, with a bias; 'same' padding for an input of ``size``."""

    def __init__(self, in_channels: int, out_channels: int, kernel: tuple[int, int], size: tuple[int, int],
                 stride: tuple[int, int] = (1, 1), groups: int = 1):
        super().__init__()
        self.kernel, self.stride, self.groups = tuple(kernel), tuple(stride), groups
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, *kernel))
        self.gain = nn.Parameter(torch.ones(out_channels))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        nn.init.normal_(self.weight, std=self.weight[0].numel() ** -0.5)  # VarianceScaling(1, fan_in, normal)
        (top, bottom), (left, right) = (_same_padding(n, k, s) for n, k, s in zip(size, kernel, stride))
        self.padding = (left, right, top, bottom)
        self.out_size = tuple(-(-n // s) for n, s in zip(size, stride))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = self.weight.mean(dim=(1, 2, 3), keepdim=True)
        var = self.weight.var(dim=(1, 2, 3), unbiased=False, keepdim=True)
        scale = torch.rsqrt(torch.clamp(var * self.weight[0].numel(), min=WS_EPSILON)) * self.gain[:, None, None, None]
        weight = self.weight * scale - mean * scale
        return nn.functional.conv2d(nn.functional.pad(x, self.padding), weight, self.bias, self.stride,
                                    groups=self.groups)


class SqueezeExcite(nn.Module):
    """Channel gates from the slice's mean: ReLU then sigmoid, times 2 (NFNet's squeeze-excite)."""

    def __init__(self, channels: int):
        super().__init__()
        self.reduce = nn.Linear(channels, channels // 2)
        self.expand = nn.Linear(channels // 2, channels)
        for layer in (self.reduce, self.expand):  # Keras' Dense defaults
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gates = torch.sigmoid(self.expand(torch.relu(self.reduce(x.mean(dim=(2, 3))))))
        return x * (2.0 * gates)[:, :, None, None]


class NFBlock(nn.Module):
    """An NFNet bottleneck block: 1x1, grouped 1x3 (time; strided in frequency when the stage downsamples),
    grouped 3x1 (frequency), 1x1, squeeze-excite, a learnable skip gain and ``ALPHA``. A transition block (the
    first of a stage) scales its input before the split and projects the shortcut (average-pooled in frequency
    when the stage downsamples); the others scale the residual branch only and add their input unchanged."""

    def __init__(self, in_channels: int, out_channels: int, group_width: int, beta: float, freq_stride: int,
                 transition: bool, size: tuple[int, int]):
        super().__init__()
        middle = out_channels // 2
        groups = middle // group_width
        self.beta, self.freq_stride = beta, freq_stride
        convs = [WSConv2d(in_channels, middle, (1, 1), size)]
        convs.append(WSConv2d(middle, middle, (1, 3), size, (freq_stride, 1), groups))
        convs.append(WSConv2d(middle, middle, (3, 1), convs[-1].out_size, groups=groups))
        convs.append(WSConv2d(middle, out_channels, (1, 1), convs[-1].out_size))
        self.convs = nn.ModuleList(convs)
        self.excite = SqueezeExcite(out_channels)
        self.skip_gain = nn.Parameter(torch.zeros(()))
        if freq_stride > 1 and size[0] % freq_stride:
            raise ValueError(f"frequency size {size[0]} does not pool by {freq_stride} without padding")
        self.shortcut = WSConv2d(in_channels, out_channels, (1, 1), convs[-1].out_size) if transition else None
        self.out_size = convs[-1].out_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.shortcut is not None:
            x = scaled_gelu(x) * self.beta
            skip = x if self.freq_stride == 1 else nn.functional.avg_pool2d(x, (self.freq_stride, 1))
            skip, hidden = self.shortcut(skip), x
        else:
            skip, hidden = x, scaled_gelu(x) * self.beta
        for index, conv in enumerate(self.convs):
            hidden = conv(scaled_gelu(hidden) if index else hidden)
        return skip + self.excite(hidden) * self.skip_gain * ALPHA


def _stage(in_channels: int, out_channels: int, group_width: int, stage: int,
           size: tuple[int, int]) -> nn.ModuleList:
    """One stage's blocks with the original's variance bookkeeping for the input scales (beta)."""
    expected = 1.0 if stage == 0 else (1.0 + ALPHA ** 2) ** 0.5
    blocks = [NFBlock(in_channels, out_channels, group_width, 1.0 / expected, STAGE_FREQ_STRIDES[stage], True,
                      size)]
    expected = (expected ** 2 + ALPHA ** 2) ** 0.5
    for _ in range(1, STAGE_BLOCKS[stage]):
        blocks.append(NFBlock(out_channels, out_channels, group_width, 1.0 / expected, 1, False,
                              blocks[-1].out_size))
        expected = (expected ** 2 + ALPHA ** 2) ** 0.5
    return nn.ModuleList(blocks)


class Stem(nn.Module):
    """Four weight-standardised convolutions, scaled GELU between them."""

    def __init__(self, layout: tuple[tuple[int, tuple[int, int], tuple[int, int]], ...], size: tuple[int, int]):
        super().__init__()
        convs, channels = [], 1
        for width, kernel, stride in layout:
            convs.append(WSConv2d(channels, width, kernel, convs[-1].out_size if convs else size, stride))
            channels = width
        self.convs = nn.ModuleList(convs)
        self.out_size = convs[-1].out_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for index, conv in enumerate(self.convs):
            x = conv(scaled_gelu(x) if index else x)
        return x


class Fusion(nn.Module):
    """Fast to slow: a 1x7 convolution strided by 4 in time, then a 1x1 projection (concatenated by the caller)."""

    def __init__(self, in_channels: int, time_channels: int, out_channels: int, size: tuple[int, int]):
        super().__init__()
        self.time = WSConv2d(in_channels, time_channels, (1, 7), size, (1, 4))
        self.project = WSConv2d(time_channels, out_channels, (1, 1), self.time.out_size)

    def forward(self, fast: torch.Tensor) -> torch.Tensor:
        return self.project(self.time(fast))


class SFNFNetF0(nn.Module):
    """The network on standardised slices ``[S, 1, 96, 300]``; returns every ``STATES`` entry ``[S, width]``."""

    def __init__(self) -> None:
        super().__init__()
        size = (N_MELS, SLICE_FRAMES)
        self.slow_stem, self.fast_stem = Stem(SLOW_STEM, size), Stem(FAST_STEM, size)
        slow_size, fast_size = self.slow_stem.out_size, self.fast_stem.out_size
        slow_channels, fast_channels = SLOW_STEM[-1][0], FAST_STEM[-1][0]
        fusions, slow_stages, fast_stages = [], [], []
        for stage, (time_channels, fused) in enumerate(FUSIONS):
            fusions.append(Fusion(fast_channels, time_channels, fused, fast_size))
            if fusions[-1].project.out_size != slow_size:
                raise ValueError(f"stage {stage}: fused size {fusions[-1].project.out_size} != slow {slow_size}")
            slow_stages.append(_stage(slow_channels + fused, SLOW_WIDTHS[stage], SLOW_GROUP_WIDTH, stage, slow_size))
            fast_stages.append(_stage(fast_channels, FAST_WIDTHS[stage], FAST_GROUP_WIDTH, stage, fast_size))
            slow_size, fast_size = slow_stages[-1][-1].out_size, fast_stages[-1][-1].out_size
            slow_channels, fast_channels = SLOW_WIDTHS[stage], FAST_WIDTHS[stage]
        self.fusions = nn.ModuleList(fusions)
        self.slow_stages, self.fast_stages = nn.ModuleList(slow_stages), nn.ModuleList(fast_stages)

    def forward(self, slices: torch.Tensor) -> dict[str, torch.Tensor]:
        slow, fast = self.slow_stem(slices), self.fast_stem(slices)
        states = {"slow_stem": slow.mean(dim=(2, 3)), "fast_stem": fast.mean(dim=(2, 3))}
        for stage, (fusion, slow_blocks, fast_blocks) in enumerate(zip(self.fusions, self.slow_stages,
                                                                       self.fast_stages)):
            slow = torch.cat([slow, fusion(fast)], dim=1)
            for block in slow_blocks:
                slow = block(slow)
            for block in fast_blocks:
                fast = block(fast)
            states[f"slow_stage{stage + 1}"] = slow.mean(dim=(2, 3))
            states[f"fast_stage{stage + 1}"] = fast.mean(dim=(2, 3))
        states["embedding"] = scaled_gelu(torch.cat([states["slow_stage4"], states["fast_stage4"]], dim=1))
        return states


class MULE(nn.Module):
    """``waveform [B, N]`` (16 kHz, N >= ``MIN_SAMPLES``) -> ``STATES`` by name, each ``[B, N // 32000, width]``:
    one vector per 2 s slice."""

    def __init__(self, network: SFNFNetF0 | None = None) -> None:
        super().__init__()
        self.logmel = LogMel()
        self.network = network if network is not None else SFNFNetF0()
        self.eval()

    def forward(self, waveform: torch.Tensor) -> dict[str, torch.Tensor]:
        if not torch.jit.is_tracing() and waveform.shape[1] < MIN_SAMPLES:
            raise ValueError(f"MULE needs at least {MIN_SAMPLES} samples (300 mel frames), got {waveform.shape[1]}")
        slices = standardised_slices(self.logmel(waveform))
        batch, count = slices.shape[:2]
        states = self.network(slices.reshape(batch * count, 1, N_MELS, SLICE_FRAMES))
        return {name: value.reshape(batch, count, value.shape[-1]) for name, value in states.items()}


def random_mule(seed: int) -> MULE:
    """The published shape with seeded random weights, initialised as the original initialises them."""
    torch.manual_seed(seed)
    return MULE().eval()


# --- the released weights: a Keras v3 archive written by Keras 2.13 ------------------------------------------

#: the top-level group of ``model.weights.h5``: Keras 2.13 and 2.14 walk the model's
#: ``_layer_checkpoint_dependencies``, tf-keras >= 2.15 its ``layers``
_WEIGHT_GROUPS = ("_layer_checkpoint_dependencies", "layers")
Test = Callable[[dict], bool]


def counter_step(weights: h5py.Group, group: str) -> int:
    """How far a layer with weights moves its class's name counter: Keras 2.13 meets each such layer twice in
    ``_layer_checkpoint_dependencies`` and counts both (no ``weight_standardization_1`` group then); Keras 2.14
    skips the repeat; ``layers`` holds each layer once."""
    doubled = group == "_layer_checkpoint_dependencies" and f"{group}/weight_standardization_1" not in weights
    return 2 if doubled else 1


def _refusal(message: str) -> Exception:
    from .checkpoint import CheckpointError  # transformers comes with it: only when a checkpoint is read

    return CheckpointError(message)


def keras_snake_case(name: str) -> str:
    """Keras 2.13's ``to_snake_case``, which names a layer's group in the weights file by its class."""
    snake = re.sub("([a-z])([A-Z])", r"\1_\2", re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)).lower()
    return snake if snake[0] != "_" else "private" + snake


def _references(node: object, names: dict) -> Iterator[str]:
    """Layer names an ``inbound_nodes`` entry refers to, also inside keyword arguments (``[name, 0, 0, ...]``)."""
    if isinstance(node, dict):
        for value in node.values():
            yield from _references(value, names)
    elif isinstance(node, list):
        if len(node) >= 3 and isinstance(node[0], str) and node[0] in names and isinstance(node[1], int):
            yield node[0]
        for value in node[1:] if node and isinstance(node[0], str) else node:
            yield from _references(value, names)


class KerasGraph:
    """The functional model of ``config.json``: its layers in order, what feeds each, and their weight paths."""

    def __init__(self, config: dict, source: str):
        self.source = source
        try:
            layers = config["config"]["layers"]
            self.layers = {entry["name"]: entry for entry in layers}
        except (KeyError, TypeError) as err:
            raise _refusal(f"{source}: config.json is not a Keras functional model (no {err} in it)") from None
        self.inputs = {name: set(_references(entry.get("inbound_nodes", []), self.layers))
                       for name, entry in self.layers.items()}
        self.consumers: dict[str, list[str]] = {name: [] for name in self.layers}
        for name, inputs in self.inputs.items():
            for source_name in inputs:
                self.consumers[source_name].append(name)

    def class_of(self, name: str) -> str:
        return str(self.layers[name].get("class_name", "")).split(">")[-1]

    def config_of(self, name: str) -> dict:
        return self.layers[name].get("config", {})

    def after(self, name: str, class_name: str, what: str, test: Test = lambda config: True) -> str:
        """The one layer of ``class_name`` fed by ``name`` that passes ``test``."""
        found = [c for c in self.consumers[name] if self.class_of(c) == class_name and test(self.config_of(c))]
        if len(found) != 1:
            raise _refusal(f"{self.source}: expected one {class_name} layer ({what}) after {name!r}, found "
                           f"{found or 'none'}; config.json does not hold MULE's SF-NFNet-F0")
        return found[0]

    def below(self, name: str, class_name: str, what: str, through: str, test: Test = lambda config: True) -> str:
        """The one nearest layer of ``class_name`` that ``name`` reaches through ``through`` layers only."""
        queue, seen, found = deque(self.consumers[name]), set(), []
        while queue:
            current = queue.popleft()
            if current in seen:
                continue
            seen.add(current)
            if self.class_of(current) == class_name and test(self.config_of(current)):
                found.append(current)
            elif self.class_of(current) == through:
                queue.extend(self.consumers[current])
        if len(found) != 1:
            raise _refusal(f"{self.source}: expected one {class_name} layer ({what}) below {name!r}, found "
                           f"{found or 'none'}; config.json does not hold MULE's SF-NFNet-F0")
        return found[0]

    def weight_paths(self, step: int) -> dict[str, str]:
        """Each layer's group in ``model.weights.h5``, named by class with a counter in the layers' order."""
        counters: dict[str, int] = {}
        paths = {}
        for name in self.layers:
            snake = keras_snake_case(self.class_of(name))
            index = counters.get(snake, 0)
            paths[name] = snake if index == 0 else f"{snake}_{index}"
            weighted = self.class_of(name) in ("WeightStandardization", "Dense") or (
                self.class_of(name) == "ScalarMultiply" and self.config_of(name).get("learnable"))
            counters[snake] = index + (step if weighted else 1)
        return paths


def _conv_test(conv: WSConv2d) -> Test:
    def test(config: dict) -> bool:
        inner = config.get("layer", {}).get("config", {})
        return (inner.get("filters") == conv.weight.shape[0] and list(inner.get("kernel_size", ())) ==
                list(conv.kernel) and list(inner.get("strides", ())) == list(conv.stride)
                and inner.get("groups", 1) == conv.groups)
    return test


def _gain_test(value: float | None) -> Test:
    """A constant ScalarMultiply of ``value``, or (None) the learnable one."""
    def test(config: dict) -> bool:
        if value is None:
            return bool(config.get("learnable"))
        return not config.get("learnable") and abs(float(config.get("init_gain", np.nan)) - value) < 1e-6
    return test


def _is_scaled_gelu(config: dict) -> bool:
    return "gelu" in json.dumps(config.get("activation"))


def keras_layers(graph: KerasGraph, network: SFNFNetF0) -> list[tuple[str, str, str]]:
    """``(Keras layer name, kind, torch prefix)`` of every weighted layer, found by walking ``graph`` from its
    input along the network's structure; each step checks the layer's class and shape settings."""
    found: list[tuple[str, str, str]] = []
    inputs = [name for name in graph.layers if graph.class_of(name) == "InputLayer"]
    if len(inputs) != 1:
        raise _refusal(f"{graph.source}: expected one InputLayer in config.json, found {inputs or 'none'}")

    def conv(after: str, module: WSConv2d, prefix: str) -> str:
        name = graph.after(after, "WeightStandardization", f"{prefix}: {module.weight.shape[0]} filters, kernel "
                           f"{module.kernel}, strides {module.stride}, groups {module.groups}", _conv_test(module))
        found.append((name, "conv", prefix))
        return name

    def act(after: str, prefix: str) -> str:
        return graph.after(after, "Activation", f"{prefix}: the scaled GELU", _is_scaled_gelu)

    def stem(module: Stem, prefix: str) -> str:
        x = inputs[0]
        for index, layer in enumerate(module.convs):
            x = conv(act(x, prefix) if index else x, layer, f"{prefix}.convs.{index}")
        return x

    def block(x: str, module: NFBlock, prefix: str) -> str:
        if module.shortcut is not None:
            x = graph.after(act(x, prefix), "ScalarMultiply", f"{prefix}: beta", _gain_test(module.beta))
            skip = x if module.freq_stride == 1 else graph.after(x, "AveragePooling2D", f"{prefix}: shortcut pool")
            skip, hidden = conv(skip, module.shortcut, f"{prefix}.shortcut"), x
        else:
            skip = x
            hidden = graph.after(act(x, prefix), "ScalarMultiply", f"{prefix}: beta", _gain_test(module.beta))
        for index, layer in enumerate(module.convs):
            hidden = conv(act(hidden, prefix) if index else hidden, layer, f"{prefix}.convs.{index}")
        squeeze = graph.after(hidden, "GlobalAveragePooling2D", f"{prefix}: squeeze")
        for part in ("reduce", "expand"):
            units = getattr(module.excite, part).out_features
            squeeze = graph.after(squeeze, "Dense", f"{prefix}.excite.{part}: {units} units",
                                  lambda config: config.get("units") == units)
            found.append((squeeze, "dense", f"{prefix}.excite.{part}"))
        gain = graph.below(squeeze, "ScalarMultiply", f"{prefix}: skip gain", "TFOpLambda", _gain_test(None))
        found.append((gain, "gain", f"{prefix}.skip_gain"))
        alpha = graph.after(gain, "ScalarMultiply", f"{prefix}: alpha", _gain_test(ALPHA))
        out = graph.after(alpha, "StochDepth", f"{prefix}: residual sum")
        if skip not in graph.inputs[out]:
            raise _refusal(f"{graph.source}: {out!r} does not add the shortcut {skip!r} ({prefix})")
        return out

    slow, fast = stem(network.slow_stem, "slow_stem"), stem(network.fast_stem, "fast_stem")
    for stage, (fusion, slow_blocks, fast_blocks) in enumerate(zip(network.fusions, network.slow_stages,
                                                                   network.fast_stages)):
        fused = conv(conv(fast, fusion.time, f"fusions.{stage}.time"), fusion.project, f"fusions.{stage}.project")
        joined = graph.after(fused, "Concatenate", f"fusion {stage}")
        if slow not in graph.inputs[joined]:
            raise _refusal(f"{graph.source}: {joined!r} does not join the slow path's {slow!r} (fusion {stage})")
        slow = joined
        for index, module in enumerate(slow_blocks):
            slow = block(slow, module, f"slow_stages.{stage}.{index}")
        for index, module in enumerate(fast_blocks):
            fast = block(fast, module, f"fast_stages.{stage}.{index}")
    joined = graph.after(graph.after(slow, "GlobalAveragePooling2D", "slow output pool"), "Concatenate", "output")
    if graph.after(fast, "GlobalAveragePooling2D", "fast output pool") not in graph.inputs[joined]:
        raise _refusal(f"{graph.source}: the output {joined!r} does not join the fast path")
    act(joined, "embedding")
    return found


def keras_state(weights: h5py.Group, graph: KerasGraph, network: SFNFNetF0, source: str) -> dict[str, torch.Tensor]:
    """``network``'s state dict from an open ``model.weights.h5`` (h5py) and the model's graph."""
    group = next((name for name in _WEIGHT_GROUPS if name in weights), None)
    if group is None:
        raise _refusal(f"{source}: model.weights.h5 has neither of {', '.join(_WEIGHT_GROUPS)} at its top; not "
                       f"a Keras v3 weights file")
    paths = graph.weight_paths(counter_step(weights, group))

    def read(layer: str, variable: str) -> torch.Tensor:
        path = f"{group}/{paths[layer]}/{variable}"
        if path not in weights:
            raise _refusal(f"{source}: model.weights.h5 lacks {path} (layer {layer!r} of config.json)")
        return torch.from_numpy(np.array(weights[path], dtype=np.float32))

    state = {}
    for layer, kind, prefix in keras_layers(graph, network):
        if kind == "conv":
            state[f"{prefix}.weight"] = read(layer, "vars/0").permute(3, 2, 0, 1).contiguous()
            state[f"{prefix}.gain"] = read(layer, "vars/1")
            state[f"{prefix}.bias"] = read(layer, "layer/vars/0")
        elif kind == "dense":
            state[f"{prefix}.weight"] = read(layer, "vars/0").T.contiguous()
            state[f"{prefix}.bias"] = read(layer, "vars/1")
        else:
            state[prefix] = read(layer, "vars/0")
    return state


def load_mule_checkpoint(path: Path) -> tuple[MULE, str]:
    """MULE with the weights of a ``model.keras`` as PandoraMedia released it (a Keras v3 zip: ``config.json``
    and ``model.weights.h5``, read with zipfile and h5py, no TensorFlow), and the file's SHA-256."""
    from .checkpoint import load_state

    try:
        import h5py
    except ImportError:
        raise ImportError("reading MULE's model.keras needs h5py: pip install 'marblekit[tensorflow]'") from None
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"MULE checkpoint {path} does not exist (expected supporting_data/model/"
                                f"model.keras of PandoraMedia/music-audio-representations)")
    if not zipfile.is_zipfile(path):
        pointer = path.read_bytes()[:40].startswith(b"version https://git-lfs")
        raise _refusal(f"{path}: not a zip archive; expected a Keras v3 .keras file (config.json and "
                       f"model.weights.h5)" + ("; this is a Git LFS pointer: run `git lfs pull`" if pointer else ""))
    model = MULE()
    with zipfile.ZipFile(path) as archive:
        missing = [name for name in ("config.json", "model.weights.h5") if name not in archive.namelist()]
        if missing:
            raise _refusal(f"{path}: the archive lacks {', '.join(missing)}; expected a Keras v3 .keras file")
        try:
            config = json.loads(archive.read("config.json"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise _refusal(f"{path}: config.json is not valid JSON ({err})") from None
        graph = KerasGraph(config, str(path))
        contents = io.BytesIO(archive.read("model.weights.h5"))  # h5py seeks back and forth: slow in a zip
    try:
        weights = h5py.File(contents, "r")
    except OSError as err:
        raise _refusal(f"{path}: model.weights.h5 is not an HDF5 file ({err})") from None
    with weights:
        state = keras_state(weights, graph, model.network, str(path))
    load_state(model.network, state, f"{path} (MULE model.keras)")
    return model.eval(), sha256_of(path)


# --- the backbone plugin (marblekit.export.plugins) --------------------------------------------------------

build, load_checkpoint = named_state_hooks(random_mule, load_mule_checkpoint)
