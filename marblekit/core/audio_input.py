"""Audio preparation, MARBLE v1 order: decode -> mono -> crop (at the file's rate) -> resample -> z-normalise.

Tracks are streamed: decoded, mixed down and resampled (soxr's stream, bit-identical to resampling the whole
clip) a block at a time, so memory does not grow with a track's length. Whole-clip z-normalisation needs the
clip's mean and variance before the first sample can be normalised; the stream accumulates them on the way
(Chan's pairwise update in float64) and normalisation is applied when windows are read (``Prepared.read``).
The extractor's decoder processes write the model-rate samples to a scratch file (``prepare_to_file``);
``prepare`` keeps them in memory for small uses.

Decoding tries libsndfile (``soundfile``) first and falls back to FFmpeg (PyAV) only when libsndfile does
not recognise the format; a file libsndfile opens but cannot read to the end is reported as corrupt, not
handed to a more lenient decoder. Every problem raises :class:`AudioError` with a message that says what
is wrong with the file, so the caller can record it per track.
"""

from __future__ import annotations

import contextlib
import io
import os
import struct
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile as sf
import soxr

#: Wav2Vec2FeatureExtractor's variance floor (MARBLE's ``processor_normalize``).
NORMALIZE_EPS = 1e-7
#: frames decoded per step at the file's rate: a few MB whatever the track's length
BLOCK_FRAMES = 1 << 18


class AudioError(Exception):
    """A track cannot be prepared; the message names the problem."""


@dataclass(frozen=True)
class Preparation:
    """How every track of one extraction is turned into model input. ``normalize_windows``: each window is
    z-normalised on its own instead of with the whole clip's statistics (GiantSteps' reference cuts songs into
    30 s clip files first, each normalised alone)."""

    sample_rate: int
    normalize: bool
    crop_s: float | None = None
    normalize_windows: bool = False


@dataclass
class Statistics:
    """Sample count, mean and sum of squared deviations of a stream, updated a block at a time."""

    count: int = 0
    mean: float = 0.0
    squares: float = 0.0

    def add(self, block: np.ndarray) -> None:
        if not block.size:
            return
        mean = float(block.mean(dtype=np.float64))
        squares = float(np.square(block - mean, dtype=np.float64).sum())
        total = self.count + block.size
        delta = mean - self.mean
        self.squares += squares + delta * delta * self.count * block.size / total
        self.mean += delta * block.size / total
        self.count = total

    @property
    def variance(self) -> float:
        return self.squares / self.count if self.count else 0.0


@dataclass(frozen=True)
class Prepared:
    """A prepared track: ``samples`` model-rate mono float32 samples in ``path`` (raw, not yet normalised)
    and what normalising them takes."""

    path: Path
    samples: int
    mean: float
    scale: float  # sqrt(variance + eps); 1 when the backbone takes raw audio
    normalize: bool
    normalize_windows: bool = False

    def read(self, start: int, stop: int) -> np.ndarray:
        """Samples ``[start, stop)``, normalised as MARBLE normalises the whole clip, or this window alone."""
        raw = np.fromfile(self.path, dtype=np.float32, count=stop - start, offset=4 * start)
        if not self.normalize:
            return raw
        if self.normalize_windows:
            return zscore(raw)
        return ((raw - self.mean) / self.scale).astype(np.float32)


def zscore(samples: np.ndarray) -> np.ndarray:
    """``samples`` z-normalised with their own mean and variance (Wav2Vec2FeatureExtractor's rule)."""
    mean = samples.mean(dtype=np.float64)
    return ((samples - mean) / np.sqrt(np.square(samples - mean, dtype=np.float64).mean() + NORMALIZE_EPS)
            ).astype(np.float32)


def stream(path: Path, start: float, end: float | None, how: Preparation,
           sink: Callable[[np.ndarray], None]) -> Statistics:
    """Hand the model-rate mono float32 samples of ``path[start:end]`` (cropped to ``how.crop_s``) to
    ``sink`` block by block; returns their statistics."""
    _check_readable(path)
    blocks, rate = decode(path, start, end if how.crop_s is None else _crop_end(start, end, how.crop_s))
    until = "the end" if end is None else f"{end:g} s"
    return _prepare_blocks(blocks, rate, how, sink, f"between {start:g} s and {until}")


def stream_bytes(data: bytes, how: Preparation, sink: Callable[[np.ndarray], None]) -> Statistics:
    """The same for an audio file's bytes (the feature service's requests), decoded exactly as a file."""
    if not data:
        raise AudioError("empty audio (0 bytes)")
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        _check_wav_length(io.BytesIO(data), len(data))
    blocks, rate = decode(io.BytesIO(data), 0.0, how.crop_s)
    return _prepare_blocks(blocks, rate, how, sink, "in the audio")


def stream_pcm(samples: np.ndarray, rate: int, how: Preparation, sink: Callable[[np.ndarray], None]) -> Statistics:
    """The same for raw samples ``[frames, channels]`` at ``rate``."""
    if rate <= 0:
        raise AudioError(f"sample rate must be positive, got {rate}")
    last = len(samples) if how.crop_s is None else min(len(samples), int(round(how.crop_s * rate)))
    blocks = (samples[first:min(first + BLOCK_FRAMES, last)] for first in range(0, last, BLOCK_FRAMES))
    return _prepare_blocks(blocks, rate, how, sink, "in the audio")


def _prepare_blocks(blocks: Iterable[np.ndarray], rate: int, how: Preparation, sink: Callable[[np.ndarray], None],
                    where: str) -> Statistics:
    """Mix down, check and resample decoded ``[frames, channels]`` blocks, handing them to ``sink``."""
    stats, decoded, bad = Statistics(), 0, 0
    resampler = soxr.ResampleStream(rate, how.sample_rate, 1, dtype="float32", quality="HQ") \
        if rate != how.sample_rate else None
    for block in blocks:
        decoded += block.size
        bad += int(np.count_nonzero(~np.isfinite(block)))
        if bad:
            continue  # count the rest, keep nothing
        mono = block.mean(axis=1, dtype=np.float32)
        _emit(resampler.resample_chunk(mono) if resampler else mono, stats, sink)
    if decoded == 0:
        raise AudioError(f"no audio samples {where}")
    if bad:
        raise AudioError(f"{bad} of {decoded} decoded samples are NaN or infinite")
    if resampler:
        _emit(resampler.resample_chunk(np.zeros(0, np.float32), last=True), stats, sink)
    return stats


def _emit(samples: np.ndarray, stats: Statistics, sink: Callable[[np.ndarray], None]) -> None:
    stats.add(samples)
    sink(samples)


def _scale(stats: Statistics, how: Preparation) -> float:
    return float(np.sqrt(stats.variance + NORMALIZE_EPS)) if how.normalize else 1.0


def prepare_to_file(path: Path, start: float, end: float | None, how: Preparation, scratch: Path) -> Prepared:
    """Stream ``path`` into a fresh raw float32 file in ``scratch``; the caller removes it when done."""
    handle, name = tempfile.mkstemp(prefix="track-", suffix=".f32", dir=scratch)
    with os.fdopen(handle, "wb") as out:
        try:
            stats = stream(path, start, end, how, lambda samples: samples.tofile(out))
        except BaseException:
            os.unlink(name)
            raise
    return Prepared(Path(name), stats.count, stats.mean, _scale(stats, how), how.normalize, how.normalize_windows)


def prepare(path: Path, start: float, end: float | None, how: Preparation) -> np.ndarray:
    """The whole model-rate waveform in memory, normalised (benchmarks and small experiments)."""
    parts: list[np.ndarray] = []
    return assemble(parts, stream(path, start, end, how, parts.append), how)


def assemble(parts: list[np.ndarray], stats: Statistics, how: Preparation) -> np.ndarray:
    """Blocks a ``stream*`` call handed over, as one clip, z-normalised when ``how`` asks for it."""
    clip = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    return ((clip - stats.mean) / _scale(stats, how)).astype(np.float32) if how.normalize else clip


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
        _check_wav_length(path, path.stat().st_size)


def _check_wav_length(path: Path | BinaryIO, size: int) -> None:
    """libsndfile silently reads a cut-off WAV up to where it ends; compare with what the header declares."""
    with (open(path, "rb") if isinstance(path, Path) else contextlib.nullcontext(path)) as handle:
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


def decode(source: Path | BinaryIO, start: float, end: float | None) -> tuple[Iterator[np.ndarray], int]:
    """``[frames, channels]`` float32 blocks of ``[start, end)`` seconds, and the sample rate, of a file or of
    an open binary stream (an audio file's bytes)."""
    try:  # a path as bytes: any name the filesystem allows, UTF-8 or not
        handle = sf.SoundFile(os.fsencode(source) if isinstance(source, Path) else source)
    except sf.LibsndfileError as sndfile_error:
        if not isinstance(source, Path):
            source.seek(0)
        return _decode_ffmpeg(source, start, end, str(sndfile_error))
    return _sndfile_blocks(handle, start, end), handle.samplerate


def _sndfile_blocks(handle: sf.SoundFile, start: float, end: float | None) -> Iterator[np.ndarray]:
    with handle:
        first = min(int(round(start * handle.samplerate)), handle.frames)
        last = handle.frames if end is None else min(int(round(end * handle.samplerate)), handle.frames)
        try:
            handle.seek(first)
            for position in range(first, last, BLOCK_FRAMES):
                yield handle.read(min(BLOCK_FRAMES, last - position), dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as err:
            raise AudioError(f"corrupt or truncated {handle.format} audio: {err}") from None


def _decode_ffmpeg(source: Path | BinaryIO, start: float, end: float | None,
                   sndfile_error: str) -> tuple[Iterator[np.ndarray], int]:
    import av

    file = open(source, "rb") if isinstance(source, Path) else source  # a file object: any name allowed
    what = source if isinstance(source, Path) else "the audio"
    try:
        container = av.open(file)
        if not container.streams.audio:
            raise AudioError(f"no audio stream in {what} (libsndfile: {sndfile_error})")
        audio = container.streams.audio[0]
        rate = audio.codec_context.sample_rate
        if rate is None:
            raise AudioError(f"no audio samples decoded from {what}")
    except av.FFmpegError as err:
        file.close()
        raise AudioError(f"not decodable as audio (libsndfile: {sndfile_error}; FFmpeg: {err})") from None
    except BaseException:
        file.close()
        raise
    return _ffmpeg_blocks(file, container, audio, rate, start, end, sndfile_error), rate


def _ffmpeg_blocks(file, container, audio, rate: int, start: float, end: float | None,
                   sndfile_error: str) -> Iterator[np.ndarray]:
    """Decoded frames as [frames, channels] blocks, samples before ``start`` and from ``end`` dropped."""
    import av

    first = int(round(start * rate))
    last = None if end is None else int(round(end * rate))
    position = 0
    with file, container:
        try:
            for out in _planar_frames(container, audio):
                block = out.to_ndarray().T
                keep = block[max(first - position, 0):None if last is None else max(last - position, 0)]
                position += len(block)
                if len(keep):
                    yield np.ascontiguousarray(keep, dtype=np.float32)
                if last is not None and position >= last:
                    return
        except av.FFmpegError as err:
            raise AudioError(f"not decodable as audio (libsndfile: {sndfile_error}; FFmpeg: {err})") from None


def container_duration(path: Path) -> float:
    """The duration a file's container declares, in seconds (what ``ffprobe -show_entries format=duration``
    prints; for MP3 an estimate that may differ from the decoded length by some milliseconds)."""
    import av

    try:
        with open(path, "rb") as file, av.open(file) as container:
            if container.duration is None:
                raise AudioError(f"{path}: the container declares no duration")
            return container.duration / av.time_base
    except FileNotFoundError:
        raise AudioError(f"{path} not found: expected an audio file") from None
    except av.FFmpegError as err:
        raise AudioError(f"{path}: not readable as audio ({err})") from None


def _planar_frames(container, audio) -> Iterator:
    """Every decoded frame as float planar, then what the converter still holds."""
    import av

    planar = av.AudioResampler(format="fltp")
    for frame in container.decode(audio):
        yield from planar.resample(frame)
    yield from planar.resample(None)


def prepare_track(path: Path, start: float, end: float | None, how: Preparation,
                  scratch: Path) -> tuple[Prepared | None, str]:
    """Process-pool entry point: ``(prepared, "")`` or ``(None, reason)``; never raises for a bad file."""
    try:
        return prepare_to_file(path, start, end, how, scratch), ""
    except AudioError as err:
        return None, str(err)
    except Exception as err:  # a decoder bug must cost one track, not the whole extraction
        return None, f"unexpected {type(err).__name__} while decoding: {err}"
