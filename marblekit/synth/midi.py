"""A minimal Standard MIDI File writer: the suite only needs notes, program changes and drums, and writing
them directly keeps the renders free of a MIDI library's defaults and version drift."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

#: channel 10 (index 9) plays the General MIDI drum kit
DRUM_CHANNEL = 9
#: ticks per quarter note; with 500 000 µs per quarter (120 BPM) one tick is 1/960 s, finer than FluidSynth's 1 ms player clock
DIVISION = 480
_TICKS_PER_SECOND = 960
_TEMPO_US_PER_QUARTER = 500_000


@dataclass(frozen=True)
class Note:
    """One note in seconds; ``pitch`` is a MIDI key number (a drum sound on the drum channel)."""

    start: float
    duration: float
    pitch: int
    velocity: int = 96


@dataclass
class Part:
    """Notes played by one General MIDI program (ignored on the drum channel) on one channel."""

    program: int
    notes: list[Note] = field(default_factory=list)
    drums: bool = False

    def pitches(self) -> list[int]:
        """MIDI keys of the pitched notes (none for drums)."""
        return [] if self.drums else [note.pitch for note in self.notes]


def _vlq(value: int) -> bytes:
    """Encode a delta time as a MIDI variable-length quantity."""
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    return bytes(reversed(out))


def _check(part: Part, note: Note) -> None:
    if not 0 <= note.pitch <= 127 or not 1 <= note.velocity <= 127:
        raise ValueError(f"MIDI note out of range: pitch {note.pitch}, velocity {note.velocity} (expected 0-127, 1-127)")
    if note.start < 0 or note.duration <= 0:
        raise ValueError(f"note at {note.start} s lasting {note.duration} s: expected start >= 0 and duration > 0")
    if not 0 <= part.program <= 127:
        raise ValueError(f"General MIDI program {part.program} out of range 0-127")


def midi_bytes(parts: list[Part]) -> bytes:
    """A format-0 MIDI file with one channel per part (the drum part on channel 10); at most 15 pitched parts."""
    pitched = [part for part in parts if not part.drums]
    if len(pitched) > 15:
        raise ValueError(f"{len(pitched)} pitched parts: a MIDI file has only 15 non-drum channels")
    channels = iter(c for c in range(16) if c != DRUM_CHANNEL)
    events: list[tuple[int, int, bytes]] = []  # (tick, order: note-offs before note-ons, message)
    for part in parts:
        channel = DRUM_CHANNEL if part.drums else next(channels)
        events.append((0, 0, bytes([0xC0 | channel, part.program if not part.drums else 0])))
        for note in part.notes:
            _check(part, note)
            on = round(note.start * _TICKS_PER_SECOND)
            off = max(on + 1, round((note.start + note.duration) * _TICKS_PER_SECOND))
            events.append((on, 2, bytes([0x90 | channel, note.pitch, note.velocity])))
            events.append((off, 1, bytes([0x80 | channel, note.pitch, 0])))
    events.sort(key=lambda event: (event[0], event[1], event[2]))
    track = bytearray(_vlq(0) + b"\xff\x51\x03" + _TEMPO_US_PER_QUARTER.to_bytes(3, "big"))
    now = 0
    for tick, _, message in events:
        track += _vlq(tick - now) + message
        now = tick
    track += _vlq(0) + b"\xff\x2f\x00"
    header = b"MThd" + struct.pack(">IHHH", 6, 0, 1, DIVISION)
    return header + b"MTrk" + struct.pack(">I", len(track)) + bytes(track)


def write_midi(path: Path, parts: list[Part]) -> None:
    """Write ``parts`` as a MIDI file at ``path``."""
    path.write_bytes(midi_bytes(parts))
