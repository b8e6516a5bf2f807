"""Musical keys as MARBLE numbers them: 24 classes, the 12 major keys from C, then the 12 minor keys from C,
spelled with MARBLE's tonic names (flats). The synthetic suite labels with these classes, the probes score
them (mir_eval's weighted score reads these names), and dataset loaders parse their annotations with
:func:`parse_key`."""

from __future__ import annotations

#: pitch-class names, C = 0, in MARBLE's spelling
TONICS = ("C", "Db", "D", "Eb", "E", "F", "Gb", "G", "Ab", "A", "Bb", "B")
KEY_NAMES = tuple(f"{tonic} major" for tonic in TONICS) + tuple(f"{tonic} minor" for tonic in TONICS)
_SHARPS = {"C#": "Db", "D#": "Eb", "F#": "Gb", "G#": "Ab", "A#": "Bb"}


def key_index(tonic: int, minor: bool) -> int:
    """The class of a tonic pitch class (0 = C) and mode."""
    return tonic % 12 + (12 if minor else 0)


def parse_key(text: str) -> int:
    """The class of a key name such as 'F# minor', 'f# minor' or 'Gb minor' (sharps and flats both read)."""
    parts = text.split()
    if len(parts) < 2:
        raise ValueError(f"unknown key {text!r}: expected a tonic and a mode, e.g. 'F# minor'")
    tonic = parts[0][0].upper() + parts[0][1:]
    name = f"{_SHARPS.get(tonic, tonic)} {parts[1].lower()}"
    if name not in KEY_NAMES:
        raise ValueError(f"unknown key {text!r}: expected one of {', '.join(KEY_NAMES)} (or a sharp spelling)")
    return KEY_NAMES.index(name)
