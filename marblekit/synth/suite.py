"""Rendering a task plan into its folder: every item's stems through FluidSynth (a few items at a time, since
each render is an independent subprocess), the mix peak-normalised, the WAVs and then the manifest written."""

from __future__ import annotations

import logging
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile
from tqdm import tqdm

from marblekit.core.task_format import SPLITS, TASK_FILE, write_task
from marblekit.synth.chance import chance_levels
from marblekit.synth.fluid import SAMPLE_RATE, Renderer
from marblekit.synth.plan import GENERATOR_VERSION, ItemSpec, TaskPlan

log = logging.getLogger(__name__)
_PEAK = 10 ** (-1 / 20)


@dataclass(frozen=True)
class TaskSummary:
    """What rendering one task produced and how long it took."""

    name: str
    counts: dict[str, int]
    audio_seconds: float
    wall_seconds: float


def _sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Signal-to-distortion ratio in dB (plain energy ratio, no allowed distortions)."""
    return float(10 * np.log10(np.sum(reference ** 2) / max(np.sum((reference - estimate) ** 2), 1e-12)))


def _render_item(renderer: Renderer, folder: Path, item: ItemSpec) -> dict[str, Any]:
    """Render, normalise and write one item; returns its manifest record."""
    stems = {name: renderer.render(parts, item.seconds) for name, parts in item.stems.items()}
    mix = np.sum(list(stems.values()), axis=0)
    peak = float(np.max(np.abs(mix)))
    if peak == 0.0:
        raise RuntimeError(f"item {item.id} rendered silent: is {renderer.soundfont} a General MIDI soundfont?")
    gain = _PEAK / peak
    path = f"audio/{item.id}.wav"
    soundfile.write(folder / path, mix * gain, SAMPLE_RATE, subtype="PCM_16")
    meta = dict(item.meta)
    if isinstance(item.label, dict):  # separation: the label maps each stem to the file it goes to
        for name, stem_path in item.label.items():
            (folder / stem_path).parent.mkdir(parents=True, exist_ok=True)
            soundfile.write(folder / stem_path, stems[name] * gain, SAMPLE_RATE, subtype="PCM_16")
        meta["sdr_mixture"] = {name: round(_sdr(stem, mix), 4) for name, stem in stems.items()}
    return {"id": item.id, "path": path, "split": item.split, "piece": item.piece, "label": item.label,
            "meta": meta}


def _fresh_folder(folder: Path) -> None:
    """Empty ``folder`` if it holds an earlier render (never a folder without our task.json)."""
    if folder.exists():
        if not (folder / TASK_FILE).is_file() and any(folder.iterdir()):
            raise ValueError(f"{folder} exists and is not a synthetic task folder: choose an empty output folder")
        shutil.rmtree(folder)
    (folder / "audio").mkdir(parents=True)


def render_task(plan: TaskPlan, out: Path, renderer: Renderer, seed: int, scale: str, jobs: int,
                progress: bool = True) -> TaskSummary:
    """Render every item of ``plan`` into ``out/<plan.name>`` and write its ``task.json`` and manifest."""
    started = time.perf_counter()
    folder = out / plan.name
    _fresh_folder(folder)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        records = list(tqdm(pool.map(lambda item: _render_item(renderer, folder, item), plan.items),
                            total=len(plan.items), desc=plan.name, unit="clip", leave=False, disable=not progress))
    counts = {split: sum(r["split"] == split for r in records) for split in SPLITS}
    header = {"name": plan.name, "kind": plan.kind, "metric": plan.metric, "classes": plan.classes,
              "targets": plan.targets, "stems": plan.stems, "notes": plan.notes,
              "chance": chance_levels(plan.kind, plan.classes, plan.stems, records), "counts": counts,
              "seed": seed, "scale": scale, "generator_version": GENERATOR_VERSION, "sample_rate": SAMPLE_RATE,
              "channels": 1, "clip_seconds": plan.items[0].seconds, "soundfont": renderer.soundfont.name}
    write_task(folder, header, records)
    seconds = sum(item.seconds for item in plan.items)
    return TaskSummary(plan.name, counts, seconds, time.perf_counter() - started)
