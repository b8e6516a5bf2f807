"""The main job, end to end on the embedded default: audio in, Triton serving, Zarr stores, a MARBLE-style
leaderboard out.

  1. render the synthetic suite (FluidSynth; reused when already rendered with the same seed and scale);
  2. export ``handcrafted``, a MERT-shaped backbone (a local checkpoint, else seeded random weights, labelled
     as such everywhere) and ``musicnn-mtt`` with the trained weights of the installed ``musicnn`` wheel (the
     pretrained row; skipped, saying so, without the wheel) into a Triton model repository;
  3. start the embedded CPU Triton serving them;
  4. extract every task's audio through Triton over gRPC into one store per (backbone, task), with the
     windows and feature level the task declares (extraction resumes where a previous run stopped);
  5. run the probe grid of every task on every store;
  6. write and print the table across backbones and the per-layer plot, then shut Triton down.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from marblekit.app.exit_codes import GateFailed
from marblekit.app.suite_runs import extract_suite, probe_suite
from marblekit.core.backbones import BackboneSpec, get_backbone
from marblekit.core.task_format import read_header
from marblekit.export.pipeline import export_model
from marblekit.export.plugins import musicnn_unavailable
from marblekit.probes.report import write_report
from marblekit.serving.embedded import EmbeddedTriton
from marblekit.synth.fluid import Renderer
from marblekit.synth.registry import TASKS as SYNTH_TASKS
from marblekit.synth.suite import render_task

HANDCRAFTED = "handcrafted"
PRETRAINED = "musicnn-mtt"


@dataclass
class DemoSettings:
    out: Path
    scale: str = "small"
    seed: int = 0
    mert: str = "mert-v0"
    mert_layers: int | None = None
    checkpoint: Path | None = None
    tasks: tuple[str, ...] = tuple(SYNTH_TASKS)
    max_epochs: int | None = None
    workers: int = 0
    progress: bool = True
    pretrained: bool = True  # add the musicnn-mtt row when its checkpoint is installed
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def mert_spec(self) -> BackboneSpec:
        spec = get_backbone(self.mert)
        return spec.with_layers(self.mert_layers) if self.mert_layers else spec

    @property
    def backbones(self) -> tuple[str, ...]:
        return (HANDCRAFTED, self.mert_spec.name) + ((PRETRAINED,) if self.pretrained else ())



def announce(message: str) -> float:
    print(f"\n== demo: {message}", flush=True)
    return time.perf_counter()


def rendered(folder: Path, seed: int, scale: str) -> bool:
    """True when ``folder`` holds a complete render of the same seed and scale (renders are deterministic)."""
    try:
        header = read_header(folder)
    except FileNotFoundError:
        return False
    return header.get("seed") == seed and header.get("scale") == scale


def render_suite(settings: DemoSettings) -> Path:
    suite = settings.out / "suite"
    missing = [task for task in settings.tasks if not rendered(suite / task, settings.seed, settings.scale)]
    if missing:
        renderer = Renderer.locate()
        for task in missing:
            summary = render_task(SYNTH_TASKS[task](settings.seed, settings.scale), suite, renderer, settings.seed,
                                  settings.scale, jobs=2, progress=settings.progress)
            print(f"  {task}: {sum(summary.counts.values())} clips, {summary.audio_seconds / 60:.1f} min of audio")
    print(f"  suite in {suite} ({len(settings.tasks) - len(missing)} task(s) reused)")
    return suite


def export_backbones(settings: DemoSettings) -> Path:
    repo = settings.out / "model_repository"
    export_model(get_backbone(HANDCRAFTED), repo)
    mert = settings.mert_spec
    report = export_model(mert, repo, checkpoint=settings.checkpoint, random_init=settings.checkpoint is None,
                          seed=settings.seed)
    print(report.summary())
    if not report.parity_ok:
        raise GateFailed(f"{mert.name}: the exported graph failed its parity check")
    if settings.checkpoint is None:
        print(f"  NOTE: {mert.name} has seeded RANDOM weights (no --checkpoint): its scores show the "
              f"machinery, not what MERT learned")
    if settings.pretrained:
        report = export_model(get_backbone(PRETRAINED), repo)
        print(report.summary())
        if not report.parity_ok:
            raise GateFailed(f"{PRETRAINED}: the exported graph failed its parity check")
    return repo


def run_demo(settings: DemoSettings) -> str:
    """Run every step; returns the leaderboard table (also in OUT/report/table.md, plot in layers.png)."""
    started = time.perf_counter()
    problem = musicnn_unavailable(get_backbone(PRETRAINED)) if settings.pretrained else None
    if problem:
        print(f"NOTE: no pretrained row ({PRETRAINED}): {problem}")
        settings.pretrained = False
    t = announce(f"1/5 synthetic suite ({settings.scale}, seed {settings.seed})")
    suite = render_suite(settings)
    settings.timings["synth"] = time.perf_counter() - t
    t = announce(f"2/5 export {', '.join(settings.backbones)}")
    repo = export_backbones(settings)
    settings.timings["export"] = time.perf_counter() - t
    t = announce("3/5 embedded Triton, extraction of every task through it")
    with EmbeddedTriton(repo, list(settings.backbones), grpc_port=0, http_port=0, metrics_port=0,
                        log_path=settings.out / "triton.log") as server:
        print(f"  Triton ready: gRPC {server.grpc_url} (log {settings.out / 'triton.log'})")
        stores = extract_suite(suite, settings.backbones, settings.tasks, settings.out / "stores", server.grpc_url,
                               settings.progress)
    print("  Triton stopped")
    settings.timings["extract"] = time.perf_counter() - t
    t = announce("4/5 probe grids")
    results = settings.out / "probes"
    probe_suite(suite, stores, results, settings.workers, settings.max_epochs, settings.progress)
    settings.timings["probe"] = time.perf_counter() - t
    announce("5/5 report")
    text = write_report([results], settings.out / "report")
    settings.timings["total"] = time.perf_counter() - started
    print(text)
    print(f"wrote {settings.out / 'report' / 'table.md'} and {settings.out / 'report' / 'layers.png'}")
    print("time: " + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in settings.timings.items()))
    return text
