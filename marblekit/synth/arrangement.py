"""Short generated songs: a beat grid with tempo drift, a chord progression in a key, and parts (chords, bass,
melody, pad, drums) that the key, beat, tagging, regression and separation tasks combine."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from marblekit.synth import theory
from marblekit.synth.midi import Note, Part

BEATS_PER_BAR = 4


@dataclass(frozen=True)
class Song:
    """The shared skeleton of an item: key, beat times (seconds) and one triad per bar."""

    tonic: int
    minor: bool
    beats: tuple[float, ...]
    chords: tuple[tuple[int, int, int], ...]
    transpose: int = 0

    def bar_of(self, beat: int) -> int:
        return beat // BEATS_PER_BAR

    def period(self, beat: int) -> float:
        """Seconds from beat ``beat`` to the next one (the last beat repeats the previous period)."""
        if beat + 1 < len(self.beats):
            return self.beats[beat + 1] - self.beats[beat]
        return self.beats[beat] - self.beats[beat - 1]


def beat_grid(rng: np.random.Generator, seconds: float, bpm: float, drift: float) -> tuple[float, ...]:
    """Beat times up to ``seconds`` for a tempo that swings sinusoidally by ``±drift`` (a fraction) around ``bpm``."""
    if not 20 <= bpm <= 400 or not 0 <= drift < 0.5:
        raise ValueError(f"tempo {bpm} BPM with drift {drift}: expected 20-400 BPM and drift in [0, 0.5)")
    cycle, phase = rng.uniform(6.0, 20.0), rng.uniform(0.0, 2 * np.pi)
    t, beats = rng.uniform(0.05, 60.0 / bpm), []
    while t < seconds:
        beats.append(round(t, 6))
        t += 60.0 / (bpm * (1.0 + drift * np.sin(2 * np.pi * t / cycle + phase)))
    return tuple(beats)


def make_song(rng: np.random.Generator, tonic: int, minor: bool, beats: tuple[float, ...], transpose: int = 0) -> Song:
    """A song in the given key whose bars follow one of the key's progressions, repeated."""
    if len(beats) < 2:
        raise ValueError(f"a song needs at least two beats, got {len(beats)}")
    progressions = theory.MINOR_PROGRESSIONS if minor else theory.MAJOR_PROGRESSIONS
    degrees = progressions[rng.integers(len(progressions))]
    bars = (len(beats) + BEATS_PER_BAR - 1) // BEATS_PER_BAR
    chords = tuple(theory.triad(tonic, minor, degrees[bar % len(degrees)]) for bar in range(bars))
    return Song(tonic, minor, beats, chords, transpose)


def _voice(pitch_classes: tuple[int, ...], low: int) -> list[int]:
    """Each pitch class at its first MIDI key at or above ``low``, in ascending order."""
    return sorted(low + (pc - low) % 12 for pc in pitch_classes)


def _velocity(rng: np.random.Generator, accent: bool) -> int:
    return int(np.clip(rng.normal(100 if accent else 82, 6), 40, 127))


def chord_part(rng: np.random.Generator, song: Song, program: int, low: int = 52) -> Part:
    """Triads in one of three styles: a chord per beat, a chord per bar, or eighth-note arpeggios."""
    style = rng.choice(["beat", "bar", "arpeggio"])
    low += song.transpose
    part = Part(program)
    for beat, start in enumerate(song.beats):
        voicing = _voice(song.chords[song.bar_of(beat)], low)
        period, accent = song.period(beat), beat % BEATS_PER_BAR == 0
        if style == "beat":
            part.notes += [Note(start, 0.9 * period, p, _velocity(rng, accent)) for p in voicing]
        elif style == "bar" and accent:
            length = 0.95 * period * min(BEATS_PER_BAR, len(song.beats) - beat)
            part.notes += [Note(start, length, p, _velocity(rng, True)) for p in voicing]
        elif style == "arpeggio":
            for half in range(2):
                pitch = voicing[(2 * beat + half) % len(voicing)] + (12 if half and beat % 2 else 0)
                part.notes.append(Note(start + half * period / 2, 0.45 * period, pitch, _velocity(rng, accent and not half)))
    return part


def pad_part(song: Song, program: int, low: int = 55) -> Part:
    """Sustained triads, one per bar (strings, choir)."""
    part = Part(program)
    for beat in range(0, len(song.beats), BEATS_PER_BAR):
        length = 0.98 * song.period(beat) * min(BEATS_PER_BAR, len(song.beats) - beat)
        part.notes += [Note(song.beats[beat], length, p, 76)
                       for p in _voice(song.chords[song.bar_of(beat)], low + song.transpose)]
    return part


def bass_part(rng: np.random.Generator, song: Song, program: int, low: int = 33) -> Part:
    """Chord roots on beats one and three (or on every beat), the fifth now and then."""
    every_beat = rng.random() < 0.4
    part = Part(program)
    for beat, start in enumerate(song.beats):
        position = beat % BEATS_PER_BAR
        if not every_beat and position % 2:
            continue
        root, _, fifth = song.chords[song.bar_of(beat)]
        pc = fifth if position == 2 and rng.random() < 0.3 else root
        length = song.period(beat) * (0.9 if every_beat else 1.8)
        part.notes.append(Note(start, length, _voice((pc,), low + song.transpose)[0], _velocity(rng, position == 0)))
    return part


def melody_part(rng: np.random.Generator, song: Song, program: int, low: int = 62, high: int = 84) -> Part:
    """A stepwise line in the key's scale: chord tones on downbeats, quarters and eighths, a few rests."""
    low, high = low + song.transpose, high + song.transpose
    ladder = [p for p in range(low, high + 1) if p % 12 in theory.scale(song.tonic, song.minor)]
    index = int(rng.integers(len(ladder) // 4, 3 * len(ladder) // 4))
    part = Part(program)
    for beat, start in enumerate(song.beats):
        period = song.period(beat)
        if beat % BEATS_PER_BAR == 0:
            chord = song.chords[song.bar_of(beat)]
            tones = [i for i, p in enumerate(ladder) if p % 12 in chord]
            index = min(tones, key=lambda i: abs(i - index))
        elif rng.random() < 0.12:
            continue
        halves = 2 if rng.random() < 0.35 else 1
        for half in range(halves):
            part.notes.append(Note(start + half * period / 2, 0.95 * period / halves, ladder[index],
                                   _velocity(rng, beat % BEATS_PER_BAR == 0 and not half)))
            index = int(np.clip(index + rng.choice([-2, -1, -1, 1, 1, 2]), 0, len(ladder) - 1))
    return part


def drum_part(rng: np.random.Generator, song: Song) -> Part:
    """A rock pattern: kick on one and three, snare on two and four, hi-hat (or ride) eighths, a crash on bar one."""
    cymbal = theory.RIDE if rng.random() < 0.25 else theory.CLOSED_HAT
    extra_kick = rng.random() < 0.5
    part = Part(0, drums=True)
    for beat, start in enumerate(song.beats):
        period, position = song.period(beat), beat % BEATS_PER_BAR
        hits = [theory.KICK if position % 2 == 0 else theory.SNARE, cymbal]
        if beat == 0:
            hits.append(theory.CRASH)
        part.notes += [Note(start, 0.2, key, _velocity(rng, position == 0)) for key in hits]
        part.notes.append(Note(start + period / 2, 0.1, cymbal, _velocity(rng, False) - 20))
        if extra_kick and position == 1:
            part.notes.append(Note(start + period / 2, 0.2, theory.KICK, _velocity(rng, False)))
    return part
