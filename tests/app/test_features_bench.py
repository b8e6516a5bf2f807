"""``bench features`` runs end to end at a toy size: the service and direct Triton answer the same windows with
the same vectors, and every row is measured (its figures come from real runs, never from tests)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from marblekit.app.bench.features import add_arguments, bench_features
from marblekit.core.backbones import get_backbone
from marblekit.export.pipeline import export_model
from marblekit.serving.environment import environment_problem

MISSING = environment_problem()


@pytest.mark.triton
@pytest.mark.skipif(MISSING is not None, reason=f"no serving environment: {MISSING}")
def test_bench_features_measures_every_path(tmp_path: Path) -> None:
    export_model(get_backbone("handcrafted"), tmp_path, check_parity=False)
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["handcrafted", "--repo", str(tmp_path), "--clients", "1,2", "--clip-seconds", "3",
                              "--window-seconds", "1", "--seconds", "0.5", "--repeats", "1",
                              "--batch-delays-ms", "0"])
    report = bench_features(args)
    assert report.max_abs_diff < 1e-4
    assert [(row.label, row.clients) for row in report.rows] == [
        ("direct Triton", 1), ("feature service", 1), ("direct Triton", 2), ("feature service", 2),
        ("service, batch 0 ms", 2), ("cache hit", 1), ("cache hit", 8)]
    assert all(row.rounds[0].latencies and row.rate > 0 for row in report.rows)
    assert set(report.ratios) == {1, 2} and "service / direct at 2 clients" in report.render()
