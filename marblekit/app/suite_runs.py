"""Extract a rendered synthetic suite through a Triton server and probe every store: the steps the demo and
the export gate share, so both score backbones the same way."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from marblekit.app.exit_codes import TracksFailed
from marblekit.extractor.api import ExtractRequest, extract, render_summary
from marblekit.probes.run import ProbeRequest, run_probe
from marblekit.probes.separation import SeparationSettings
from marblekit.probes.tasks import get_task

#: Source separation trains one LSTM model per stem and grid point, one after another: GPU work at MARBLE's
#: sizes. On a suite it runs at a size a 2-core machine finishes in about a minute per backbone.
SUITE_SEPARATION = SeparationSettings(hidden=32, chunk_s=2.0, samples_per_track=4, batch_size=16)
SUITE_SEPARATION_LEARNING_RATES = (1e-3,)
SUITE_SEPARATION_EPOCHS = 5


def extract_suite(suite: Path, models: tuple[str, ...], tasks: tuple[str, ...], stores: Path, url: str,
                  progress: bool = True) -> dict[tuple[str, str], Path]:
    """One store per (model, task) under ``stores/<model>/<task>.zarr``, with the windows and feature level each
    task declares; a task with failed tracks stops the run (raises TracksFailed)."""
    written = {}
    for model in models:
        for task_name in tasks:
            needs = get_task(task_name).features
            store = stores / model / f"{task_name}.zarr"
            request = ExtractRequest(suite / task_name / "manifest.jsonl", model, store, server=url,
                                     window_s=needs.window_s, hop_s=needs.hop_s, crop_s=needs.crop_s,
                                     frames=needs.level == "frames", progress=progress)
            print(f"  {model} / {task_name}", flush=True)
            summary = extract(request)
            print(render_summary(summary, store))
            if summary.failed or not summary.finalized:
                raise TracksFailed(f"extracting {task_name} with {model} failed; see the messages above")
            written[model, task_name] = store
    return written


def probe_suite(suite: Path, stores: dict[tuple[str, str], Path], results: Path, workers: int = 0,
                max_epochs: int | None = None, progress: bool = True) -> dict[tuple[str, str], dict[str, Any]]:
    """The probe grid of every store into ``results/<model>/<task>/``; returns each results.json report."""
    reports = {}
    for (model, task_name), store in stores.items():
        request = ProbeRequest(store, task_name, suite / task_name, results / model / task_name,
                               workers=workers, max_epochs=max_epochs)
        if get_task(task_name).kind == "separation":
            request.separation = SUITE_SEPARATION
            request.learning_rates = SUITE_SEPARATION_LEARNING_RATES
            request.max_epochs = min(max_epochs or SUITE_SEPARATION_EPOCHS, SUITE_SEPARATION_EPOCHS)
        report = run_probe(request, progress=progress)
        winner = report["winner"]
        print(f"  {model:>14} / {task_name:<18} {winner['config']['name']:<28} test {winner['test']['score']:.3f}")
        reports[model, task_name] = report
    return reports
