"""NSynth-like single notes: ``synth-pitch`` (MIDI key) and ``synth-instrument`` (instrument family).

Each note is held 3 s and released for 1 s (4 s clips). As in NSynth, splits are instrument-disjoint: every
General MIDI program is assigned to one split, so a test note always comes from a program never heard in
training (one program per family in valid and in test, the rest in train)."""

from __future__ import annotations

import numpy as np

from marblekit.synth import theory
from marblekit.synth.midi import Note, Part
from marblekit.synth.plan import MIX, ItemSpec, Size, TaskPlan, balanced_labels, item_rng, split_sequence, task_rng

PITCH_RANGE = (36, 96)
PITCH_SIZES = {"tiny": Size(48, 4.0), "small": Size(300, 4.0), "full": Size(6100, 4.0)}
INSTRUMENT_SIZES = {"tiny": Size(44, 4.0), "small": Size(220, 4.0), "full": Size(5500, 4.0)}
_HOLD = 3.0
_VELOCITIES = (50, 75, 100, 127)


def program_splits(rng: np.random.Generator) -> dict[int, str]:
    """Each program's split: per family, one program for valid, one for test, the others for train."""
    splits = {}
    for programs, _ in theory.FAMILIES.values():
        order = rng.permutation(programs)
        splits |= {int(p): "valid" if i == 0 else "test" if i == 1 else "train" for i, p in enumerate(order)}
    return splits


def _plays(program: int, pitch: int) -> bool:
    low, high = theory.playable_range(program)
    return low <= pitch <= high


def _note_item(task: str, index: int, split: str, program: int, pitch: int, label: int, rng: np.random.Generator,
               seconds: float) -> ItemSpec:
    velocity = int(rng.choice(_VELOCITIES))
    part = Part(program, [Note(0.0, _HOLD, pitch, velocity)])
    meta = {"program": program, "family": theory.family_of(program), "pitch": pitch, "velocity": velocity}
    return ItemSpec(f"{task.removeprefix('synth-')}-{index:05d}", split, f"program-{program}", label, seconds,
                    {MIX: [part]}, meta)


def pitch_task(seed: int, scale: str) -> TaskPlan:
    """Single notes of many instruments labelled with their MIDI key (one class per key in ``PITCH_RANGE``)."""
    name, size = "synth-pitch", PITCH_SIZES[scale]
    rng = task_rng(seed, name)
    by_program = program_splits(rng)
    splits = split_sequence(rng, size.items)
    keys = list(range(PITCH_RANGE[0], PITCH_RANGE[1] + 1))
    labels = balanced_labels(rng, splits, len(keys))
    items = []
    for index, (split, label) in enumerate(zip(splits, labels)):
        item = item_rng(seed, name, index)
        pitch = keys[label]
        playable = sorted(p for p, s in by_program.items() if s == split and _plays(p, pitch))
        items.append(_note_item(name, index, split, int(item.choice(playable)), pitch, label, item, size.seconds))
    return TaskPlan(name, "multiclass", "accuracy", items, classes=[theory.note_name(k) for k in keys],
                    notes=f"MIDI keys {PITCH_RANGE[0]}-{PITCH_RANGE[1]}; class i is MIDI key {PITCH_RANGE[0]} + i")


def instrument_task(seed: int, scale: str) -> TaskPlan:
    """Single notes labelled with the instrument family of their program (NSynth's eleven families)."""
    name, size = "synth-instrument", INSTRUMENT_SIZES[scale]
    rng = task_rng(seed, name)
    by_program = program_splits(rng)
    splits = split_sequence(rng, size.items)
    families = list(theory.FAMILIES)
    labels = balanced_labels(rng, splits, len(families))
    items = []
    for index, (split, label) in enumerate(zip(splits, labels)):
        item = item_rng(seed, name, index)
        programs = theory.FAMILIES[families[label]][0]
        program = int(item.choice(sorted(p for p in programs if by_program[p] == split)))
        low, high = theory.playable_range(program)
        items.append(_note_item(name, index, split, program, int(item.integers(low, high + 1)), label, item,
                                size.seconds))
    return TaskPlan(name, "multiclass", "accuracy", items, classes=families)
