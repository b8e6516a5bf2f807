"""Music facts the generators share: General MIDI instrument families, keys, scales and triads."""

from __future__ import annotations

from marblekit.core.keys import TONICS

#: NSynth's eleven instrument families as General MIDI programs, with a MIDI key range each family sounds well in
FAMILIES: dict[str, tuple[tuple[int, ...], tuple[int, int]]] = {
    "keyboard": (tuple(range(0, 8)), (36, 96)),
    "mallet": (tuple(range(8, 16)), (48, 96)),
    "organ": (tuple(range(16, 24)), (36, 96)),
    "guitar": (tuple(range(24, 32)), (40, 84)),
    "bass": (tuple(range(32, 40)), (28, 60)),
    "string": (tuple(range(40, 47)) + tuple(range(48, 52)), (36, 96)),
    "vocal": ((52, 53, 54), (48, 79)),
    "brass": (tuple(range(56, 64)), (40, 84)),
    "reed": (tuple(range(64, 72)), (46, 84)),
    "flute": (tuple(range(72, 80)), (60, 96)),
    "synth_lead": (tuple(range(80, 88)), (36, 96)),
}
#: programs whose range is narrower than their family's (violin, contrabass, tuba, baritone sax, ocarina):
#: FluidR3_GM and TimGM6mb have no samples, or silence, beyond these keys
PROGRAM_RANGES: dict[int, tuple[int, int]] = {40: (55, 93), 43: (28, 55), 58: (40, 72), 67: (46, 72), 78: (60, 78)}
MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)
MINOR_SCALE = (0, 2, 3, 5, 7, 8, 10)
#: chord progressions as scale degrees (1 = tonic); each starts on the tonic
MAJOR_PROGRESSIONS = ((1, 4, 5, 1), (1, 6, 4, 5), (1, 5, 6, 4), (1, 4, 1, 5), (1, 6, 2, 5), (1, 2, 5, 1))
MINOR_PROGRESSIONS = ((1, 4, 5, 1), (1, 6, 4, 5), (1, 7, 6, 5), (1, 4, 1, 5), (1, 6, 7, 1), (1, 4, 7, 5))
#: General MIDI drum keys
KICK, SNARE, CLOSED_HAT, OPEN_HAT, RIDE, CRASH = 36, 38, 42, 46, 51, 49


def family_of(program: int) -> str:
    """The family a General MIDI program belongs to."""
    for family, (programs, _) in FAMILIES.items():
        if program in programs:
            return family
    raise ValueError(f"General MIDI program {program} is in none of the families {list(FAMILIES)}")


def playable_range(program: int) -> tuple[int, int]:
    """Lowest and highest MIDI key a program is rendered at."""
    return PROGRAM_RANGES.get(program, FAMILIES[family_of(program)][1])


def note_name(pitch: int) -> str:
    """Scientific pitch name of a MIDI key, e.g. 60 -> C4."""
    return f"{TONICS[pitch % 12]}{pitch // 12 - 1}"


def scale(tonic: int, minor: bool) -> tuple[int, ...]:
    """Pitch classes of the key's scale (natural minor for minor keys)."""
    return tuple((tonic + step) % 12 for step in (MINOR_SCALE if minor else MAJOR_SCALE))


def triad(tonic: int, minor: bool, degree: int) -> tuple[int, int, int]:
    """Pitch classes (root, third, fifth) of the triad on a scale degree; the minor dominant takes the leading tone."""
    steps = MINOR_SCALE if minor else MAJOR_SCALE
    chord = [steps[(degree - 1 + i) % 7] for i in (0, 2, 4)]
    if minor and degree == 5:
        chord[1] = 11
    return tuple((tonic + step) % 12 for step in chord)  # type: ignore[return-value]

#: General MIDI programs that each arrangement role draws from
CHORD_PROGRAMS = (0, 1, 4, 5, 16, 19, 24, 25, 27, 46)
PAD_PROGRAMS = (48, 49, 50, 52, 89)
BASS_PROGRAMS = (32, 33, 34, 35, 38)
MELODY_PROGRAMS = (11, 40, 56, 65, 68, 71, 73, 80, 81)
VOICE_PROGRAMS = (52, 53, 54, 85)
