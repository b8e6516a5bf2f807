"""A separation task's audio and spectrograms, aligned to a store's frame features.

The STFT hop is the store's ``sample_rate / frame_rate`` so that STFT frame t lines up with backbone frame
t (MERT-v1: 24 kHz / 75 fps = 320, MARBLE's n_fft 2048 / hop 320). n_fft is 2048, or the next power of two
of at least 4 hops for coarser frame rates. Each track's features are truncated or zero-padded to its STFT
frame count (the reference pads with zeros). Audio is read as stereo (open-unmix's force-stereo: a mono file
doubled, channels past two dropped) and resampled with soxr to the store's sample rate; the model sees the
channel mean of the channels' magnitudes (open-unmix's ``ComplexNorm(mono=True)``), estimates are stereo.
Waveforms are kept reflect-padded by n_fft/2 so that a chunk's STFT without centring equals the same frames
of the whole track's centred STFT.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from marblekit.core.store_layout import StoreAttrs
from marblekit.core.task_format import SPLITS
from marblekit.probes.assemble import track_index
from marblekit.probes.features import StoreFeatures
from marblekit.probes.matrix import LayerMatrix, MemoryBudget, load_rows
from marblekit.probes.tasks.base import Dataset, Item, Task
from marblekit.probes.types import Schedule

N_FFT = 2048
CHANNELS = 2


@dataclass(frozen=True)
class Spectrogram:
    """Hann-window STFT settings shared by training, evaluation and decoding."""

    n_fft: int
    hop: int

    @classmethod
    def for_store(cls, attrs: StoreAttrs, source: str) -> Spectrogram:
        """hop = sample_rate / frame_rate, which must be a whole number of samples."""
        hop = float(attrs.sample_rate) / float(attrs.frame_rate)
        if abs(hop - round(hop)) > 1e-6:
            raise ValueError(f"store {source}: sample_rate / frame_rate = {hop} is not a whole number of samples, "
                             "so STFT frames cannot be aligned to the backbone's frames")
        hop_samples = int(round(hop))
        return cls(max(N_FFT, 2 ** math.ceil(math.log2(4 * hop_samples))), hop_samples)

    @property
    def n_bins(self) -> int:
        return self.n_fft // 2 + 1

    def n_frames(self, n_samples: int) -> int:
        """Frames of the centred STFT of ``n_samples`` samples."""
        return 1 + n_samples // self.hop

    def pad(self, wave: np.ndarray) -> np.ndarray:
        """Reflect padding of [channels, samples] by n_fft/2 on both sides (what a centred STFT does)."""
        edge = self.n_fft // 2
        return np.pad(wave, ((0, 0), (edge, edge)), mode="reflect" if wave.shape[-1] > edge else "constant")

    def complex(self, padded: Any) -> Any:
        """Uncentred STFT of padded waveforms [batch, channels, samples] -> complex [frames, batch, channels, bins]."""
        import torch

        batch, channels, samples = padded.shape
        window = torch.hann_window(self.n_fft, dtype=padded.dtype, device=padded.device)
        spec = torch.stft(padded.reshape(batch * channels, samples), self.n_fft, self.hop, window=window,
                          center=False, return_complex=True)
        return spec.reshape(batch, channels, *spec.shape[1:]).permute(3, 0, 1, 2)

    def magnitude(self, padded: Any) -> Any:
        return self.channel_mean(self.complex(padded))

    @staticmethod
    def channel_mean(spec: Any) -> Any:
        """Complex [frames, batch, channels, bins] -> the channel mean of the channels' magnitudes [frames, batch,
        bins] (open-unmix's mono ComplexNorm)."""
        return spec.abs().mean(dim=2)

    def inverse(self, spec: Any, length: int) -> Any:
        """Complex [frames, batch, channels, bins] -> waveforms [batch, channels, length] (centred inverse STFT)."""
        import torch

        frames, batch, channels, bins = spec.shape
        window = torch.hann_window(self.n_fft, dtype=spec.real.dtype, device=spec.device)
        flat = spec.permute(1, 2, 3, 0).reshape(batch * channels, bins, frames)
        waves = torch.istft(flat, self.n_fft, self.hop, window=window, center=True, length=length)
        return waves.reshape(batch, channels, length)


@dataclass
class Track:
    """One item: its feature rows (at most ``n_frames``; missing frames are zeros), its reflect-padded stereo
    mixture [2, samples] and the paths of its stems (read one stem at a time)."""

    id: str
    rows: np.ndarray
    n_samples: int
    n_frames: int
    mixture: np.ndarray
    stem_paths: dict[str, Path]


@dataclass
class SeparationData:
    """Layer-major frame features (``LayerMatrix``, in RAM or memory-mapped), the tracks of each split (their
    ``rows`` index the features' rows), the STFT that aligns them and the layers the weighted sum mixes."""

    features: LayerMatrix
    splits: dict[str, list[Track]]
    spectrogram: Spectrogram
    sample_rate: int
    stems: tuple[str, ...]
    schedule: Schedule
    mixed_layers: tuple[int, ...] = ()

    def track_features(self, track: Track, layers: np.ndarray, start: int = 0, length: int | None = None
                       ) -> np.ndarray:
        """Frames [start, start+length) of a track's ``layers`` (one width) as float32 [length, layers, D],
        zeros past the stored rows."""
        length = track.n_frames - start if length is None else length
        out = np.zeros((length, len(layers), self.features.width(layers)), np.float32)
        rows = track.rows[start:start + length]
        out[:len(rows)] = np.stack([self.features.layer(k)[rows] for k in layers], axis=1)
        return out

    def stem(self, track: Track, stem: str) -> np.ndarray:
        """A stem's padded stereo waveform at the store's sample rate, same length as the mixture's."""
        wave = read_stereo(track.stem_paths[stem], self.sample_rate)
        if wave.shape[1] != track.n_samples:
            raise ValueError(f"{track.stem_paths[stem]}: {wave.shape[1]} samples at {self.sample_rate} Hz but the "
                             f"mixture {track.id} has {track.n_samples}; stems must be as long as their mixture")
        return self.spectrogram.pad(wave)


def read_stereo(path: Path, sample_rate: int) -> np.ndarray:
    """An audio file as [2, samples] float32 at ``sample_rate``: mono doubled, channels past two dropped."""
    import soundfile
    import soxr

    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: expected a stem or mixture audio file")
    audio, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    stereo = np.repeat(audio, CHANNELS, axis=1) if audio.shape[1] == 1 else audio[:, :CHANNELS]
    if rate != sample_rate:
        stereo = soxr.resample(stereo, rate, sample_rate)
    return np.ascontiguousarray(stereo.T, dtype=np.float32)


def separation_data(task: Task, dataset: Dataset, features: StoreFeatures, root: Path, source: str,
                    budget: MemoryBudget | None = None, progress: bool = False) -> SeparationData:
    """Join the dataset's tracks to the store's frames, read once within ``budget``; refuses a store whose
    extraction differs."""
    task.features.check(features.attrs, features.level, source)
    spectrogram = Spectrogram.for_store(features.attrs, source)
    sample_rate = int(features.attrs.sample_rate)
    index = track_index(task, dataset, features, source)
    track_rows = features.track_rows
    splits: dict[str, list[Track]] = {split: [] for split in SPLITS}
    for item in dataset.items:
        splits[item.split].append(_track(item, track_rows[index[item.id]], root, spectrogram, sample_rate,
                                         dataset.outputs, source))
    tracks = [track for split in SPLITS for track in splits[split]]
    matrix, positions = load_rows(features, [track.rows for track in tracks], budget, progress=progress)
    for track, rows in zip(tracks, positions):
        track.rows = rows
    return SeparationData(matrix, splits, spectrogram, sample_rate, dataset.outputs, task.schedule,
                          features.attrs.weighted_layers)


def _track(item: Item, rows: np.ndarray, root: Path, spectrogram: Spectrogram, sample_rate: int,
           stems: tuple[str, ...], source: str) -> Track:
    if len(rows) == 0:
        raise ValueError(f"store {source}: track {item.id} has no feature rows")
    absent = [s for s in stems if s not in item.label]
    if absent:
        raise ValueError(f"{item.id}: the label lacks stems {absent} (expected a mapping stem -> audio path)")
    mixture = read_stereo(root / item.audio_path, sample_rate)
    n_frames = spectrogram.n_frames(mixture.shape[1])
    return Track(item.id, rows[:n_frames], mixture.shape[1], n_frames, spectrogram.pad(mixture),
                 {s: root / item.label[s] for s in stems})
