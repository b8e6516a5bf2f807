"""The learning-rate range test against PyTorch Lightning 1.9.4's own ``lr_find`` (the reference toolkit's
``auto_lr_find``), run in its own process on the same step losses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from marblekit.probes import lr_finder

REFERENCE = Path(__file__).resolve().parents[2] / ".reference" / "lightning"
RUNNER = Path(__file__).with_name("lightning_lr_find.py")


@pytest.fixture(scope="module")
def lightning(tmp_path_factory) -> dict[str, dict]:
    """What Lightning records for each of :func:`series`, in one process."""
    if not (REFERENCE / "pytorch_lightning").is_dir():
        pytest.skip(f"the reference's Lightning 1.9.4 is not installed in {REFERENCE} (scripts/install.sh does it)")
    env = {**os.environ, "PYTHONPATH": str(REFERENCE), "PYTHONWARNINGS": "ignore"}
    done = subprocess.run([sys.executable, str(RUNNER), str(tmp_path_factory.mktemp("lightning"))],
                          input=json.dumps(series()), env=env, capture_output=True, text=True, timeout=300, check=True)
    return json.loads(done.stdout)


def series() -> dict[str, list[float]]:
    rng = np.random.default_rng(0)
    falling_then_diverging = np.concatenate([np.linspace(2.3, 0.4, 60), np.linspace(0.4, 30, 40)])
    noisy = 1.0 + 0.3 * rng.random(100)
    noisy[[20, 55]] = np.nan
    return {
        "falls, then diverges": (falling_then_diverging + 0.05 * rng.random(100)).tolist(),
        "noisy with NaN, never diverges": noisy.tolist(),
        "diverges at once: no suggestion": [1.0, 1.0, 50.0] + [50.0] * 97,
        "diverges at step 1: not yet checked": [0.1, 20.0, 20.0, 20.0] + [20.0] * 96,
    }


@pytest.mark.parametrize("name", list(series()))
def test_range_test_rule_equals_lightning(name, lightning):
    raw = series()[name]
    reference = lightning[name]
    losses = lr_finder.smoothed_losses(np.array(raw, np.float32))  # a step loss is a float32 tensor there
    rates = lr_finder.step_rates()[:len(losses)].tolist()
    np.testing.assert_allclose(rates, reference["rates"], rtol=1e-12)
    np.testing.assert_allclose(losses, reference["losses"], rtol=1e-12, equal_nan=True)
    expected = reference["suggestion"]
    got = lr_finder.suggestion(rates, losses)
    assert (got is None) == (expected is None), (got, expected)
    if expected is not None:
        assert got == pytest.approx(expected, rel=1e-12)
