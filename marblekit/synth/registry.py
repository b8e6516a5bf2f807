"""The synthetic tasks by name, each a generator ``(seed, scale) -> TaskPlan``."""

from __future__ import annotations

from collections.abc import Callable

from marblekit.synth.beat import beat_task
from marblekit.synth.key import key_task
from marblekit.synth.notes import instrument_task, pitch_task
from marblekit.synth.plan import TaskPlan
from marblekit.synth.regression import regression_task
from marblekit.synth.separation import separation_task
from marblekit.synth.tagging import tagging_task

TASKS: dict[str, Callable[[int, str], TaskPlan]] = {
    "synth-pitch": pitch_task,
    "synth-instrument": instrument_task,
    "synth-key": key_task,
    "synth-beat": beat_task,
    "synth-tagging": tagging_task,
    "synth-regression": regression_task,
    "synth-separation": separation_task,
}
