"""Audio preparation, MARBLE v1 order: decode -> mono -> crop (at the file's rate) -> resample -> z-normalise.

Decoding tries libsndfile (``soundfile``) first and falls back to FFmpeg (PyAV) only when libsndfile does
not recognise the format; a file libsndfile opens but cannot read to the end is reported as corrupt, not
handed to a more lenient decoder. Every problem raises :class:`AudioError` with a message that says what
is wrong with the file, so the caller can record it per track.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

#: Wav2Vec2FeatureExtractor's variance floor (MARBLE's ``processor_normalize``).
NORMALIZE_EPS = 1e-7


class AudioError(Exception):
    """A track cannot be prepared; the message names the problem."""


@dataclass(frozen=True)
class Preparation:
    """How every track of one extraction is turned into model input."""

    sample_rate: int
    normalize: bool
    crop_s: float | None = None


def prepare(path: Path, start: float, end: float | None, how: Preparation) -> np.ndarray:
    """The model-rate float32 mono waveform of ``path[start:end]`` (cropped to ``how.crop_s``), normalised."""
    _check_readable(path)
    audio, rate = decode(path, start, end if how.crop_s is None else _crop_end(start, end, how.crop_s))
    if audio.size == 0:
        raise AudioError(f"no audio samples between {start:g} s and {'the end' if end is None else f'{end:g} s'}")
    bad = int(np.count_nonzero(~np.isfinite(audio)))
    if bad:
        raise AudioError(f"{bad} of {audio.size} decoded samples are NaN or infinite")
    mono = audio.mean(axis=1, dtype=np.float32)  # float32 samples, float64 statistics: long tracks fit in RAM
    if rate != how.sample_rate:
        mono = soxr.resample(mono, rate, how.sample_rate, quality="HQ")
    if how.normalize:
        mean, var = mono.mean(dtype=np.float64), mono.var(dtype=np.float64)
        mono = ((mono - mean) / np.sqrt(var + NORMALIZE_EPS)).astype(np.float32)
    return mono


def _crop_end(start: float, end: float | None, crop_s: float) -> float:
    return start + crop_s if end is None else min(end, start + crop_s)


def _check_readable(path: Path) -> None:
    try:
        with path.open("rb") as handle:
            head = handle.read(12)
    except FileNotFoundError:
        raise AudioError(f"file not found: {path}") from None
    except IsADirectoryError:
        raise AudioError(f"is a directory, not an audio file: {path}") from None
    except PermissionError:
        raise AudioError(f"cannot read {path}: permission denied") from None
    except OSError as err:
        raise AudioError(f"cannot read {path}: {err.strerror or err}") from None
    if not head:
        raise AudioError(f"empty file (0 bytes): {path}")
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        _check_wav_length(path)


def _check_wav_length(path: Path) -> None:
    """libsndfile silently reads a cut-off WAV up to where it ends; compare with what the header declares."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        handle.seek(12)
        while True:
            header = handle.read(8)
            if len(header) < 8:
                return
            chunk, length = struct.unpack("<4sI", header)
            if chunk == b"data":
                present = size - handle.tell()
                if length != 0xFFFFFFFF and present < length:
                    raise AudioError(f"truncated WAV: the header declares {length} bytes of audio, "
                                     f"the file holds {present}")
                return
            handle.seek(length + (length & 1), 1)


def decode(path: Path, start: float, end: float | None) -> tuple[np.ndarray, int]:
    """``[frames, channels]`` float32 samples of ``[start, end)`` seconds and the file's sample rate."""
    try:
        handle = sf.SoundFile(str(path))
    except sf.LibsndfileError as sndfile_error:
        return _decode_ffmpeg(path, start, end, str(sndfile_error))
    with handle:
        first = min(int(round(start * handle.samplerate)), handle.frames)
        last = handle.frames if end is None else min(int(round(end * handle.samplerate)), handle.frames)
        try:
            handle.seek(first)
            audio = handle.read(max(last - first, 0), dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as err:
            raise AudioError(f"corrupt or truncated {handle.format} audio: {err}") from None
        return audio, handle.samplerate


def _decode_ffmpeg(path: Path, start: float, end: float | None, sndfile_error: str) -> tuple[np.ndarray, int]:
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise AudioError(f"no audio stream in {path} (libsndfile: {sndfile_error})")
            stream = container.streams.audio[0]
            planar = av.AudioResampler(format="fltp")
            chunks = [out.to_ndarray() for frame in container.decode(stream) for out in planar.resample(frame)]
            chunks += [out.to_ndarray() for out in planar.resample(None)]
            rate = stream.codec_context.sample_rate
    except av.FFmpegError as err:
        raise AudioError(f"not decodable as audio (libsndfile: {sndfile_error}; FFmpeg: {err})") from None
    if not chunks or rate is None:
        raise AudioError(f"no audio samples decoded from {path}")
    audio = np.concatenate(chunks, axis=1).T
    first = int(round(start * rate))
    last = audio.shape[0] if end is None else int(round(end * rate))
    return np.ascontiguousarray(audio[first:last], dtype=np.float32), rate


def prepare_track(path: Path, start: float, end: float | None, how: Preparation) -> tuple[np.ndarray | None, str]:
    """Process-pool entry point: ``(waveform, "")`` or ``(None, reason)``; never raises for a bad file."""
    try:
        return prepare(path, start, end, how), ""
    except AudioError as err:
        return None, str(err)
    except Exception as err:  # a decoder bug must cost one track, not the whole extraction
        return None, f"unexpected {type(err).__name__} while decoding: {err}"
