"""MusiCNN (Pons & Serra, ISMIR 2019 LBD) and its VGG baseline in PyTorch, with the front end inside the graph,
and an importer for the trained TensorFlow checkpoints that the ``musicnn`` wheel ships (MTT and MSD of each).
The VGG pools are those the wheel's code runs for both VGG checkpoints (MSD_vgg's training graph pooled its
first two layers differently; the wheel's extractor refuses to run it at all).

The graph takes a mono 16 kHz waveform and computes what ``musicnn.extractor`` computes: a centred STFT of the
whole input (n_fft 512, hop 256, periodic Hann, zero padding as librosa >= 0.9), Slaney mel power (96 bands),
``log10(10000 * mel + 1)`` with every step rounded to float16 as numpy does it, patches of 187 frames (3 s; the
last partial patch dropped), and the network in inference mode on every patch. One deliberate difference: the
original overflows float16 to inf where the mel power exceeds 6.55 (loud input) and its features become inf or
NaN; here ``10000 * mel`` saturates at the float16 maximum, so loud input gives finite features.

Layout convention: a patch is ``[batch, 1, time=187, freq=96]`` (TensorFlow's NHWC with H = time, W = freq);
TensorFlow kernels ``[h, w, in, out]`` become torch ``[out, in, h, w]``. Every block is conv -> ReLU -> batch
norm (epsilon 1e-3, moving statistics), as in the original.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from marblekit.core.checksums import sha256_of

from .architecture import named_state_hooks
from .plugins import MUSICNN_HOP as HOP
from .plugins import MUSICNN_PATCH_FRAMES as PATCH_FRAMES
from .spectral import dft_kernels, slaney_mel_filterbank

SAMPLE_RATE, N_FFT, N_MELS = 16000, 512, 96
FLOAT16_MAX = 65504.0
BN_EPS = 1e-3


def _float16(x: torch.Tensor) -> torch.Tensor:
    """Round to the nearest float16 and back (numpy's float16 arithmetic computes in float32, then rounds)."""
    return x.to(torch.float16).to(torch.float32)


class LogMel(nn.Module):
    """``waveform [B, N]`` -> ``[B, N // 256 + 1, 96]``: musicnn's float16 log-compressed mel power."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("dft", torch.tensor(dft_kernels(N_FFT), dtype=torch.float32))
        self.register_buffer("mel", torch.tensor(slaney_mel_filterbank(SAMPLE_RATE, N_FFT, N_MELS).T,
                                                 dtype=torch.float32))

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        padded = nn.functional.pad(waveform[:, None, :], (N_FFT // 2, N_FFT // 2))
        real, imag = nn.functional.conv1d(padded, self.dft, stride=HOP).transpose(1, 2).chunk(2, dim=-1)
        mel = _float16((real * real + imag * imag) @ self.mel)
        scaled = _float16(torch.clamp(10000.0 * mel, max=FLOAT16_MAX))
        return _float16(torch.log10(_float16(scaled + 1.0)))


def _batch_norm(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS)


class MusiCNNPatch(nn.Module):
    """The network on patches ``[P, 187, 96]``; returns every named representation of each patch."""

    def __init__(self, num_classes: int = 50, filters: float = 1.6, midend: int = 64, backend: int = 200):
        super().__init__()
        timbral, temporal = int(filters * 128), int(filters * 32)
        self.input_bn = _batch_norm(1)
        self.timbral = nn.ModuleList(nn.Conv2d(1, timbral, (7, int(share * N_MELS))) for share in (0.4, 0.7))
        self.timbral_bn = nn.ModuleList(_batch_norm(timbral) for _ in range(2))
        self.temporal = nn.ModuleList(nn.Conv2d(1, temporal, (length, 1)) for length in (128, 64, 32))
        self.temporal_bn = nn.ModuleList(_batch_norm(temporal) for _ in range(3))
        frontend = 2 * timbral + 3 * temporal
        self.midend = nn.ModuleList(nn.Conv1d(width, midend, 7, padding=3) for width in (frontend, midend, midend))
        self.midend_bn = nn.ModuleList(nn.BatchNorm1d(midend, eps=BN_EPS) for _ in range(3))
        pooled = frontend + 3 * midend
        self.pool_bn = nn.BatchNorm1d(2 * pooled, eps=BN_EPS)
        self.dense = nn.Linear(2 * pooled, backend)
        self.dense_bn = nn.BatchNorm1d(backend, eps=BN_EPS)
        self.output = nn.Linear(backend, num_classes)

    def forward(self, patches: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.input_bn(patches[:, None])
        padded = nn.functional.pad(x, (0, 0, 3, 3))  # time padding after the input norm, as tf.pad there
        timbral = [bn(torch.relu(conv(padded))).amax(dim=3) for conv, bn in zip(self.timbral, self.timbral_bn)]
        temporal = []
        for conv, bn in zip(self.temporal, self.temporal_bn):
            length = conv.kernel_size[0]  # TensorFlow's 'same': the odd extra row of padding goes at the end
            same = nn.functional.pad(x, (0, 0, (length - 1) // 2, length // 2))
            temporal.append(bn(torch.relu(conv(same))).amax(dim=3))
        frontend = torch.cat(timbral + temporal, dim=1)  # [P, 561, T]
        cnn1 = self.midend_bn[0](torch.relu(self.midend[0](frontend)))
        cnn2 = self.midend_bn[1](torch.relu(self.midend[1](cnn1))) + cnn1
        cnn3 = self.midend_bn[2](torch.relu(self.midend[2](cnn2))) + cnn2
        midend = torch.cat([frontend, cnn1, cnn2, cnn3], dim=1)  # [P, 753, T]
        max_pool, mean_pool = midend.amax(dim=2), midend.mean(dim=2)
        flat = torch.stack([max_pool, mean_pool], dim=2).flatten(1)  # interleaved, as TensorFlow flattens
        penultimate = self.dense_bn(torch.relu(self.dense(self.pool_bn(flat))))
        frames = {"timbral": torch.cat(timbral, dim=1), "temporal": torch.cat(temporal, dim=1),
                  "cnn1": cnn1, "cnn2": cnn2, "cnn3": cnn3}
        return {**{name: value.transpose(1, 2) for name, value in frames.items()},  # [P, T, width]
                "mean_pool": mean_pool, "max_pool": max_pool, "penultimate": penultimate,
                "taggram": torch.sigmoid(self.output(penultimate))}


#: the VGG baseline's pools (kernel, stride) in (time, freq), as the wheel's models.py runs MTT_vgg and MSD_vgg
VGG_POOLS = (((4, 1), (2, 2)), ((2, 2), (2, 2)), ((2, 2), (2, 2)), ((2, 2), (2, 2)), ((4, 4), (4, 4)))
#: the VGG baseline's named representations: the five pool outputs [time, freq, 128] of each patch
VGG_FEATURES = tuple(f"pool{index}" for index in range(1, 6))


class VGGPatch(nn.Module):
    """musicnn's VGG baseline on patches ``[P, 187, 96]``: five 3x3 convolutions of 128 filters (conv -> ReLU
    -> batch norm -> max pool), a dense layer on the flattened last pool; returns the pools and the taggram."""

    def __init__(self, num_classes: int = 50, filters: int = 128):
        super().__init__()
        self.input_bn = _batch_norm(1)
        self.convs = nn.ModuleList(nn.Conv2d(1 if index == 0 else filters, filters, 3, padding=1) for index in range(5))
        self.norms = nn.ModuleList(_batch_norm(filters) for _ in range(5))
        self.pools = nn.ModuleList(nn.MaxPool2d(kernel, stride) for kernel, stride in VGG_POOLS)
        self.output = nn.Linear(2 * filters, num_classes)

    def forward(self, patches: torch.Tensor) -> dict[str, torch.Tensor]:
        hidden, features = self.input_bn(patches[:, None]), {}
        for name, conv, norm, pool in zip(VGG_FEATURES, self.convs, self.norms, self.pools):
            hidden = pool(norm(torch.relu(conv(hidden))))
            features[name] = hidden.permute(0, 2, 3, 1)  # [P, time, freq, channels], TensorFlow's layout
        flat = features["pool5"].flatten(1)  # NHWC order, as TensorFlow flattens
        return {**features, "taggram": torch.sigmoid(self.output(flat))}


class MusiCNN(nn.Module):
    """``waveform [B, N]`` (16 kHz) -> named features of ``network`` (MusiCNN's by default, or the VGG
    baseline's): per frame ``[B, patches * frames, ...]`` and per patch ``[B, patches, width]``, patches of 187
    frames of the whole input's spectrogram (at least 2.99 s)."""

    def __init__(self, network: nn.Module | None = None) -> None:
        super().__init__()
        self.logmel = LogMel()
        self.network = network if network is not None else MusiCNNPatch()
        self.eval()

    def forward(self, waveform: torch.Tensor) -> dict[str, torch.Tensor]:
        spectrogram = self.logmel(waveform)
        batch, frames = spectrogram.shape[:2]
        patches = frames // PATCH_FRAMES
        cut = spectrogram[:, :patches * PATCH_FRAMES].reshape(batch * patches, PATCH_FRAMES, N_MELS)
        return {name: value.reshape(batch, patches * value.shape[1], *value.shape[2:]) if value.dim() >= 3
                else value.reshape(batch, patches, value.shape[1]) for name, value in self.network(cut).items()}


# --- the TensorFlow checkpoint ----------------------------------------------------------------------------

def _conv2d(kernel: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy())  # [h, w, in, out] -> [out, in, h, w]


def _tensor(read, name: str) -> torch.Tensor:
    return torch.from_numpy(np.atleast_1d(read(name)).copy())


def _norm(read, index: int, prefix: str) -> dict[str, torch.Tensor]:
    """TensorFlow's ``batch_normalization[_index]`` as the torch batch norm at ``prefix``."""
    name = "batch_normalization" + (f"_{index}" if index else "")
    return {f"{prefix}.{ours}": _tensor(read, f"{name}/{theirs}") for ours, theirs in (
        ("weight", "gamma"), ("bias", "beta"), ("running_mean", "moving_mean"), ("running_var", "moving_variance"))}


def _dense(read, name: str, prefix: str) -> dict[str, torch.Tensor]:
    return {f"{prefix}.weight": _tensor(read, f"{name}/kernel").T.contiguous(),
            f"{prefix}.bias": _tensor(read, f"{name}/bias")}


def _musicnn_state_of(read) -> dict[str, torch.Tensor]:
    """MusiCNNPatch's state dict from a reader of TensorFlow variables by name (``read(name) -> ndarray``)."""
    state = _norm(read, 0, "input_bn")

    def conv(prefix: str, index: int, one_d: bool = False) -> None:
        name = "conv2d" + (f"_{index}" if index else "")
        kernel = read(f"{name}/kernel")
        state[f"{prefix}.weight"] = (torch.from_numpy(kernel[:, :, 0, :].transpose(2, 1, 0).copy()) if one_d
                                     else _conv2d(kernel))
        state[f"{prefix}.bias"] = _tensor(read, f"{name}/bias")

    for branch in range(2):
        conv(f"timbral.{branch}", branch)
        state |= _norm(read, branch + 1, f"timbral_bn.{branch}")
    for branch in range(3):
        conv(f"temporal.{branch}", branch + 2)
        state |= _norm(read, branch + 3, f"temporal_bn.{branch}")
    for layer in range(3):
        conv(f"midend.{layer}", layer + 5, one_d=True)
        state |= _norm(read, layer + 6, f"midend_bn.{layer}")
    return state | _norm(read, 9, "pool_bn") | _norm(read, 10, "dense_bn") | _dense(read, "dense", "dense") \
        | _dense(read, "dense_1", "output")


def _vgg_state_of(read) -> dict[str, torch.Tensor]:
    """VGGPatch's state dict from a reader of its TensorFlow variables (``1CNN``..``5CNN``)."""
    state = _norm(read, 0, "input_bn") | _dense(read, "dense", "output")
    for index in range(5):
        state |= _norm(read, index + 1, f"norms.{index}")
        state[f"convs.{index}.weight"] = _conv2d(read(f"{index + 1}CNN/kernel"))
        state[f"convs.{index}.bias"] = _tensor(read, f"{index + 1}CNN/bias")
    return state


def load_tensorflow_checkpoint(folder: Path) -> tuple[MusiCNN, str]:
    """A trained MusiCNN (or, for the ``*_vgg`` folders, the VGG baseline) from a checkpoint folder of the
    ``musicnn`` wheel (``.index`` / ``.data-*`` with an empty name stem, as it ships them); TensorFlow reads
    it, only here. Returns the model and the SHA-256 of the files read."""
    from .checkpoint import load_state  # transformers comes with it: only when a checkpoint is read

    try:
        from tensorflow.compat.v1.train import NewCheckpointReader
    except ImportError:
        raise ImportError("reading a MusiCNN checkpoint needs TensorFlow: pip install 'marblekit[tensorflow]'") \
            from None
    folder = Path(folder)
    files = [folder / ".index", folder / ".data-00000-of-00001"]
    missing = [str(path) for path in files if not path.is_file()]
    if missing:
        raise FileNotFoundError(f"not a musicnn checkpoint folder (expected {', '.join(missing)})")
    reader = NewCheckpointReader(str(folder) + "/")
    vgg = reader.has_tensor("1CNN/kernel")
    model = MusiCNN(VGGPatch() if vgg else MusiCNNPatch())
    state = (_vgg_state_of if vgg else _musicnn_state_of)(reader.get_tensor)
    load_state(model.network, state, f"{folder} ({'VGG' if vgg else 'MusiCNN'} checkpoint)")
    return model.eval(), sha256_of(*files)


# --- the backbone plugin (marblekit.export.plugins) --------------------------------------------------------

def random_musicnn(seed: int) -> MusiCNN:
    """MusiCNN with seeded random weights (torch's default initialisers, batch norm at its initial statistics)."""
    torch.manual_seed(seed)
    return MusiCNN()


def load_musicnn(path: Path) -> tuple[MusiCNN, str]:
    """MusiCNN from a musicnn checkpoint folder; a VGG folder is refused, naming what it is."""
    model, sha256 = load_tensorflow_checkpoint(path)
    if not isinstance(model.network, MusiCNNPatch):
        raise ValueError(f"{path} holds musicnn's VGG baseline, not MusiCNN (expected a *_musicnn folder)")
    return model, sha256


build, load_checkpoint = named_state_hooks(random_musicnn, load_musicnn)
