"""The export regression gate: a reduced-precision variant is published only when it scores like fp32.

``marblekit export MODEL --precision int8|bf16|fp16 --gate SUITE`` exports the variant and the fp32 reference
(same weights) into a staging repository, serves both with the embedded Triton, extracts every task of the
synthetic suite with each, runs the probe grid on both stores of every task (same seeds, so the only
difference is the features) and compares the test scores of the validation-selected probes on MARBLE's
scales (points: percent, or dB for separation). When every task's score drops by at most the threshold, the
variant's model folder moves into the target repository with the deltas in its ``marblekit.json``; otherwise
nothing is published, the command exits with the gate's code and the staging folder is kept for a look.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from marblekit.app.suite_runs import extract_suite, probe_suite
from marblekit.core.backbones import BackboneSpec
from marblekit.export.calibration import suite_tasks
from marblekit.export.pipeline import ExportReport, default_name, export_model
from marblekit.probes.report import cell
from marblekit.probes.tasks import TASKS
from marblekit.serving.embedded import EmbeddedTriton

#: the default largest drop of any task's test score, in points (percent, or dB for separation)
DEFAULT_THRESHOLD = 0.5


@dataclass(frozen=True)
class GateSettings:
    suite: Path
    threshold: float = DEFAULT_THRESHOLD
    tasks: tuple[str, ...] = ()  # default: every task of the suite
    max_epochs: int | None = None
    workers: int = 0
    progress: bool = True
    out: Path | None = None  # the staging folder; default a temporary one, removed after a pass

    def task_names(self) -> tuple[str, ...]:
        present = tuple(folder.name for folder in suite_tasks(self.suite))
        unknown = sorted(set(present) - set(TASKS))
        if not self.tasks and unknown:
            raise ValueError(f"--gate {self.suite}: {', '.join(unknown)} are not marblekit tasks; "
                             f"pick tasks with --gate-tasks")
        missing = sorted(set(self.tasks) - set(present))
        if missing:
            raise ValueError(f"--gate-tasks: {', '.join(missing)} not in {self.suite} (it has {', '.join(present)})")
        return self.tasks or present


@dataclass(frozen=True)
class TaskDelta:
    """One task's test score (validation-selected probe) with the fp32 and the variant features."""

    task: str
    reference: float  # points
    variant: float
    reference_text: str  # the table cell, e.g. "83.0/77.9" for tagging's ROC/AP
    variant_text: str

    @property
    def delta(self) -> float:
        return self.variant - self.reference

    def passes(self, threshold: float) -> bool:
        return self.delta >= -threshold


@dataclass
class GateResult:
    reference: str
    variant: str
    threshold: float
    suite: Path
    deltas: list[TaskDelta] = field(default_factory=list)
    staging: Path | None = None

    @property
    def passed(self) -> bool:
        return all(delta.passes(self.threshold) for delta in self.deltas)

    def table(self) -> str:
        lines = [f"| task | {self.reference} | {self.variant} | delta (points) | within {self.threshold:g} |",
                 "|---|---|---|---|---|"]
        lines += [f"| {d.task} | {d.reference_text} | {d.variant_text} | {d.delta:+.2f} | "
                  f"{'yes' if d.passes(self.threshold) else 'NO'} |" for d in self.deltas]
        return "\n".join(lines)

    def describe(self) -> dict[str, object]:
        return {"reference": self.reference, "suite": str(self.suite), "threshold_points": self.threshold,
                "passed": self.passed,
                "tasks": {d.task: {"reference": round(d.reference, 3), "variant": round(d.variant, 3),
                                   "delta": round(d.delta, 3)} for d in self.deltas}}


def compare(reference: dict[str, dict], variant: dict[str, dict], names: tuple[str, str], threshold: float,
            suite: Path) -> GateResult:
    """Per-task deltas of two sets of probe reports (task name -> results.json)."""
    result = GateResult(names[0], names[1], threshold, suite)
    for task in reference:
        (ref_text, ref_points), (var_text, var_points) = cell(reference[task]), cell(variant[task])
        result.deltas.append(TaskDelta(task, ref_points, var_points, ref_text, var_text))
    return result


def export_gated(spec: BackboneSpec, repo: Path, settings: GateSettings, precision: str, name: str | None = None,
                 **export_options) -> tuple[ExportReport, GateResult | None]:
    """Export the ``precision`` variant of ``spec`` and publish it into ``repo`` only if it passes the gate;
    ``export_options`` go to both exports (weights, seed, runtime), ``calibration`` only to the variant.
    The GateResult is None when the variant failed its parity check (then nothing was gated or published)."""
    if precision == "fp32":
        raise ValueError("--gate compares a reduced-precision variant with fp32; --precision fp32 has nothing to gate")
    name = name or default_name(spec, precision)
    reference_name = default_name(spec, "fp32")
    if name == reference_name:
        raise ValueError(f"--name {name}: the gate serves the fp32 reference under that name; pick another")
    tasks = settings.task_names()
    staging = settings.out or Path(tempfile.mkdtemp(prefix="marblekit-gate-"))
    models = staging / "model_repository"
    calibration = export_options.pop("calibration", None)
    variant = export_model(spec, models, name=name, precision=precision, calibration=calibration, **export_options)
    print(variant.summary(), flush=True)
    if not variant.parity_ok:
        return variant, None
    reference = export_model(spec, models, precision="fp32", **export_options)
    print(reference.summary(), flush=True)
    print(f"== gate: {', '.join(tasks)} of {settings.suite} with {reference_name} and {name}", flush=True)
    with EmbeddedTriton(models, [reference_name, name], grpc_port=0, http_port=0, metrics_port=0,
                        log_path=staging / "triton.log") as server:
        stores = extract_suite(settings.suite, (reference_name, name), tasks, staging / "stores", server.grpc_url,
                               settings.progress)
    reports = probe_suite(settings.suite, stores, staging / "probes", settings.workers, settings.max_epochs,
                          settings.progress)
    result = compare({task: reports[reference_name, task] for task in tasks},
                     {task: reports[name, task] for task in tasks}, (reference_name, name), settings.threshold,
                     settings.suite)
    result.staging = staging
    if result.passed:
        variant.model_dir = publish(models / name, repo, result)
        if settings.out is None:
            shutil.rmtree(staging)
            result.staging = None
    return variant, result


def publish(model_dir: Path, repo: Path, result: GateResult) -> Path:
    """Record the gate in the variant's ``marblekit.json`` and move its folder into ``repo`` (replacing an
    older one of the same name)."""
    summary_path = model_dir / "marblekit.json"
    summary = json.loads(summary_path.read_text()) | {"gate": result.describe()}
    summary_path.write_text(json.dumps(summary, indent=2) + "\n")
    target = repo / model_dir.name
    repo.mkdir(parents=True, exist_ok=True)
    if target.exists():
        shutil.rmtree(target)
    shutil.move(str(model_dir), str(target))
    return target
