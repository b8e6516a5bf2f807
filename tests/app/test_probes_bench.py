"""The probe benchmarks run end to end at a toy size and report what they measured (their figures come from
real runs of `marblekit bench probe` / `bench probe-memory`, never from tests)."""

from __future__ import annotations

import re

from marblekit.app.bench.probe import bench_probe
from marblekit.app.bench.probe_memory import bench_probe_memory


def test_bench_probe_compares_modes_with_the_reference_sweep(tmp_path):
    report = bench_probe(layers=2, dim=32, classes=3, reference_runs=2, max_epochs=2, modes=("per-layer",),
                         workdir=tmp_path)
    rows = {line.split("  ")[0].strip(): line for line in report.splitlines()[2:]}
    assert set(rows) == {"marblekit per-layer", "reference-style sweep"}, report
    assert "2 of 18 runs timed" in rows["reference-style sweep"], report
    assert re.search(r"\d+\.\dx", rows["marblekit per-layer"]), report
    # the sweep shares marblekit's item order and dropout masks: the same curves, to float rounding
    difference = re.search(r"valid curves vs sweep: max \|diff\| (\S+) over 2 probes(,|\))",
                           rows["marblekit per-layer"])
    assert difference and float(difference.group(1)) < 1e-6 and difference.group(2) == ")", report


def test_bench_probe_memory_runs_a_store_over_its_budget(tmp_path):
    report = bench_probe_memory(windows=300, windows_per_track=3, layers=3, dim=8, memory_gb=1e-6,
                                workdir=tmp_path)
    assert "300 windows x 3 hidden states x 8 fp16" in report and "--memory-gb 1e-06" in report, report
    assert re.search(r"peak resident [\d.]+ GB \(anonymous [\d.]+ GB", report), report
    assert list((tmp_path / "scratch").iterdir()) == [], "the scratch copy is removed after the job"
