"""Helpers for the synthetic-suite tests: one tiny render per session, and numpy estimators (f0, chroma key,
onset strength, tempo) that check the labels against the audio without using the generator's code."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
import soundfile

from marblekit.app.commands.synth import add_arguments, run

_RENDERS: dict[tuple[str, int], Path] = {}
#: Krumhansl-Kessler key profiles, tonic first
_MAJOR_PROFILE = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
_MINOR_PROFILE = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")


def render(factory: pytest.TempPathFactory, seed: int = 0, tasks: tuple[str, ...] = ()) -> Path:
    """Render the tiny suite (or some tasks of it) once per session and seed through the CLI entry point."""
    key = (",".join(tasks), seed)
    if key not in _RENDERS:
        out = factory.mktemp(f"synth-seed{seed}")
        parser = argparse.ArgumentParser()
        add_arguments(parser)
        argv = [str(out), "--scale", "tiny", "--seed", str(seed)] + (["--tasks", *tasks] if tasks else [])
        assert run(parser.parse_args(argv)) == 0
        _RENDERS[key] = out
    return _RENDERS[key]


def read(path: Path) -> tuple[np.ndarray, int]:
    audio, rate = soundfile.read(path, dtype="float64")
    assert audio.ndim == 1, f"{path}: expected mono audio"
    return audio, rate


def f0_yin(signal: np.ndarray, rate: int, fmin: float = 50.0, fmax: float = 2200.0) -> float:
    """Fundamental frequency of a steady tone by YIN's cumulative mean normalised difference (first dip < 0.15)."""
    frame = signal[: 4096]
    lags = np.arange(1, int(rate / fmin) + 1)
    window = len(frame) - lags[-1]
    diff = np.array([np.sum((frame[:window] - frame[lag:lag + window]) ** 2) for lag in lags])
    cmnd = diff * lags / np.maximum(np.cumsum(diff), 1e-12)
    low = int(rate / fmax)
    candidates = np.where(cmnd[low:] < 0.15)[0]
    start = low + (candidates[0] if len(candidates) else int(np.argmin(cmnd[low:])))
    while start + 1 < len(cmnd) and cmnd[start + 1] < cmnd[start]:
        start += 1
    if 0 < start < len(cmnd) - 1:
        a, b, c = cmnd[start - 1], cmnd[start], cmnd[start + 1]
        shift = 0.5 * (a - c) / (a - 2 * b + c) if a - 2 * b + c else 0.0
    else:
        shift = 0.0
    return rate / (lags[start] + shift)


def midi_of(frequency: float) -> float:
    return 69 + 12 * np.log2(frequency / 440.0)


def spectrogram(signal: np.ndarray, size: int = 4096, hop: int = 1024) -> np.ndarray:
    frames = np.lib.stride_tricks.sliding_window_view(signal, size)[::hop] * np.hanning(size)
    return np.abs(np.fft.rfft(frames, axis=1))


def chroma(signal: np.ndarray, rate: int) -> np.ndarray:
    """Spectral magnitude per pitch class, from STFT bins between 55 Hz and 2 kHz."""
    magnitude = spectrogram(signal, 8192, 2048).sum(axis=0)
    freqs = np.fft.rfftfreq(8192, 1 / rate)
    band = (freqs > 55) & (freqs < 2000)
    classes = np.round(midi_of(freqs[band])).astype(int) % 12
    return np.bincount(classes, weights=magnitude[band], minlength=12)


def key_estimate(signal: np.ndarray, rate: int) -> str:
    """Krumhansl-Schmuckler: the key whose rotated profile correlates best with the chroma."""
    profile = chroma(signal, rate)
    scores = {}
    for tonic in range(12):
        for mode, template in (("major", _MAJOR_PROFILE), ("minor", _MINOR_PROFILE)):
            scores[f"{_NAMES[tonic]} {mode}"] = np.corrcoef(profile, np.roll(template, tonic))[0, 1]
    return max(scores, key=scores.get)


def register(signal: np.ndarray, rate: int) -> float:
    """Magnitude-weighted mean MIDI pitch of the spectrum between 40 Hz and 1.5 kHz."""
    magnitude = spectrogram(signal, 8192, 2048).sum(axis=0)
    freqs = np.fft.rfftfreq(8192, 1 / rate)
    band = (freqs > 40) & (freqs < 1500)
    return float(np.sum(magnitude[band] * midi_of(freqs[band])) / np.sum(magnitude[band]))


def onset_strength(signal: np.ndarray, rate: int, hop: int = 441) -> tuple[np.ndarray, float]:
    """Half-wave rectified log-spectral flux and its frame rate (100 frames/s)."""
    spec = np.log1p(100 * spectrogram(signal, 2048, hop))
    flux = np.maximum(np.diff(spec, axis=0), 0).sum(axis=1)
    return np.concatenate([[0.0], flux]), rate / hop


def strength_near(envelope: np.ndarray, frame_rate: float, times: np.ndarray, radius: float = 0.03) -> np.ndarray:
    """Maximum onset strength within ``radius`` seconds of each time (frame t covers the audio ending there)."""
    width = int(round(radius * frame_rate))
    out = []
    for time in times:
        centre = int(round(time * frame_rate)) + 1
        out.append(envelope[max(0, centre - width): centre + width + 1].max(initial=0.0))
    return np.array(out)


def tempo_estimate(envelope: np.ndarray, frame_rate: float, low: float = 50.0, high: float = 200.0) -> float:
    """Tempo (BPM) at the autocorrelation peak of the onset envelope between ``low`` and ``high`` BPM."""
    centred = envelope - envelope.mean()
    correlation = np.correlate(centred, centred, "full")[len(centred) - 1:]
    lags = np.arange(int(frame_rate * 60 / high), int(frame_rate * 60 / low) + 1)
    return 60 * frame_rate / lags[np.argmax(correlation[lags])]
