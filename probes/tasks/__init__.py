"""The probing tasks by name: the 14 MARBLE tasks and the synthetic suite."""

from __future__ import annotations

from marblekit.probes.tasks import emomusic, giantsteps, gtzan, musdb, nsynth, synthetic, tagging, vocalset
from marblekit.probes.tasks.base import Dataset, FeatureNeeds, Item, Task

TASKS: dict[str, Task] = {
    task.name: task
    for task in (gtzan.GENRE, gtzan.BEAT, giantsteps.KEY, tagging.MTT, *tagging.MTG.values(), emomusic.EMO,
                 nsynth.PITCH, nsynth.INSTRUMENT, vocalset.TECHNIQUE, vocalset.SINGER, musdb.SEPARATION,
                 *synthetic.SYNTHETIC.values())
}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; expected one of: {', '.join(TASKS)}")
    return TASKS[name]


__all__ = ["TASKS", "Dataset", "FeatureNeeds", "Item", "Task", "get_task"]
