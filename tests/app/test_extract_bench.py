"""``bench extract`` runs end to end at a toy size and measures every run and stage (its figures come from real
runs of `marblekit bench extract`, never from tests)."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pytest

from marblekit.app.bench.extract import STAGES, add_arguments, bench_extract
from marblekit.core.store_layout import WINDOW_TRACK, StoreReader
from marblekit.serving.environment import environment_problem

MISSING = environment_problem()


@pytest.mark.triton
@pytest.mark.skipif(MISSING is not None, reason=f"no serving environment: {MISSING}")
def test_bench_extract_measures_every_run_and_stage(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["mert-v1-95m", "--num-layers", "1", "--tracks", "2", "--seconds", "5", "--window", "2",
                              "--batch", "2", "--workdir", str(tmp_path)])
    result = bench_extract(args)
    text = result.render()
    runtime = json.loads((tmp_path / "repo" / "mert-v1-95m-1l" / "marblekit.json").read_text())["runtime"]["runtime"]
    for name in ("marblekit extract (embedded Triton)", "marblekit extract --engine local",
                 f"bare {runtime}, same windows", "MARBLE loop"):
        assert re.search(rf"{re.escape(name)}.*\s\d+\.\d\d\s+\d+\.\d\d$", text, re.M), text
    assert list(result.stages) == list(STAGES) and all(seconds != 0 for seconds in result.stages.values()), text
    assert f"bottleneck: {max(result.stages, key=result.stages.get)}" in text
    assert result.windows == 2 * 3  # 5 s in 2 s windows: two full windows and a 1 s one per track
    assert result.served.requests == 2 * 2 and result.served.executions <= result.served.requests
    assert 0 < result.served.compute_s < result.triton.seconds and result.gemm_gflops > 0
    assert result.gflop_per_audio_s > 0 and "of peak" in text
    # the timed store stage wrote the same rows the extraction stored
    assert StoreReader(tmp_path / "timed.zarr").read(WINDOW_TRACK).tolist() == \
        StoreReader(tmp_path / "triton.zarr").read(WINDOW_TRACK).tolist()
