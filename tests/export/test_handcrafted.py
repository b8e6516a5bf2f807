"""The handcrafted backbone against independent numpy/scipy computations of the same features."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.fft
import torch

from marblekit.core.backbones import get_backbone
from marblekit.export.handcrafted import N_FFT, HandcraftedFeatures, mel_filterbank

SPEC = get_backbone("handcrafted")


def features(waveform: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return HandcraftedFeatures(SPEC)(torch.from_numpy(waveform[None].astype(np.float32)))[0].numpy()


def numpy_power_spectrogram(waveform: np.ndarray) -> np.ndarray:
    """Centred (zero-padded) Hann-window STFT power with numpy's FFT, frames every hop samples."""
    padded = np.pad(waveform.astype(np.float64), N_FFT // 2)
    starts = range(0, len(padded) - N_FFT + 1, SPEC.hop)
    frames = np.stack([padded[s:s + N_FFT] for s in starts]) * np.hanning(N_FFT + 1)[:-1]
    return np.abs(np.fft.rfft(frames, axis=1)) ** 2


def tone(midi: float, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(seconds * SPEC.sample_rate)) / SPEC.sample_rate
    return 0.5 * np.sin(2 * np.pi * 440.0 * 2 ** ((midi - 69) / 12) * t)


def test_frame_count_matches_spec() -> None:
    for samples in (1, 319, 320, 16000, 16321):
        assert features(np.zeros(samples)).shape == (4, SPEC.num_frames(samples), 128)


def test_log_mel_and_mfcc_match_numpy_and_scipy() -> None:
    rng = np.random.default_rng(0)
    waveform = tone(60, 0.7) + 0.05 * rng.standard_normal(int(0.7 * SPEC.sample_rate))
    ours = features(waveform)
    log_mel = np.log(numpy_power_spectrogram(waveform) @ mel_filterbank(SPEC.sample_rate, N_FFT, 128).T + 1e-8)
    assert np.abs(ours[0] - log_mel).max() < 2e-3
    assert np.abs(ours[1] - scipy.fft.dct(log_mel, norm="ortho", axis=1)).max() < 2e-2


@pytest.mark.parametrize("midi", [45, 57, 64, 69, 76, 83])
def test_pitch_layers_peak_at_the_played_note(midi: int) -> None:
    semitone, chroma = features(tone(midi))[2:]
    middle = slice(10, -10)
    assert np.bincount(semitone[middle].argmax(axis=1)).argmax() == midi
    assert np.bincount(chroma[middle].argmax(axis=1)).argmax() == midi % 12
    assert np.all(chroma[:, 12:] == 0)
