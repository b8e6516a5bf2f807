"""The export regression gate end to end: a real embedded Triton, real extraction of a tiny synthetic suite with
a reduced-precision variant and fp32, real probe grids; a variant within the threshold is published with its
deltas, one that loses more is refused and nothing of it reaches the repository. The variant is handcrafted's
BF16 one, whose features are within 1e-5 of fp32's: on the tiny suite's few test clips (one clip = 4 points)
and two epochs, an INT8 variant's small differences can move a task's score by a clip either way."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from marblekit.app import export_gate
from marblekit.app.cli import main
from marblekit.app.exit_codes import ExitCode
from marblekit.serving.environment import environment_problem
from marblekit.synth.fluid import missing_renderer

TASKS = ("synth-pitch", "synth-key")
MISSING = environment_problem()


pytestmark = [pytest.mark.triton,
              pytest.mark.skipif(MISSING is not None, reason=f"no serving environment: {MISSING}"),
              pytest.mark.skipif(missing_renderer() is not None, reason=f"no FluidSynth: {missing_renderer()}")]


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("suite")
    assert main(["synth", str(out), "--scale", "tiny", "--tasks", *TASKS]) == 0
    return out


def _gate(suite: Path, repo: Path, staging: Path, *extra: str) -> int:
    return main(["export", "handcrafted", "--precision", "bf16", "--repo", str(repo), "--gate", str(suite),
                 "--gate-max-epochs", "2", "--gate-out", str(staging), "--no-progress", *extra])


def _report(staging: Path, model: str, task: str) -> dict:
    return json.loads((staging / "probes" / model / task / "results.json").read_text())


def test_a_variant_within_the_threshold_is_published_with_its_deltas(suite: Path, tmp_path: Path, capsys) -> None:
    repo, staging = tmp_path / "repo", tmp_path / "gate"
    assert _gate(suite, repo, staging) == ExitCode.OK
    assert sorted(path.name for path in repo.iterdir()) == ["handcrafted-bf16"]  # the fp32 reference stays staged
    summary = json.loads((repo / "handcrafted-bf16" / "marblekit.json").read_text())
    gate = summary["gate"]
    assert gate["passed"] and gate["threshold_points"] == 0.5 and gate["reference"] == "handcrafted"
    assert (summary["runtime"]["runtime"], summary["runtime"]["inference_precision"]) == ("openvino", "bf16")
    for task in TASKS:  # the recorded deltas are those of the two probe runs
        reference, variant = (100 * _report(staging, model, task)["winner"]["test"]["score"]
                              for model in ("handcrafted", "handcrafted-bf16"))
        assert gate["tasks"][task]["reference"] == pytest.approx(reference, abs=1e-3)
        assert gate["tasks"][task]["delta"] == pytest.approx(variant - reference, abs=2e-3)
        assert gate["tasks"][task]["delta"] >= -0.5
    table = capsys.readouterr().out
    assert "| task | handcrafted | handcrafted-bf16 | delta (points) | within 0.5 |" in table
    assert "gate passed" in table


def test_a_variant_that_loses_points_is_not_published(suite: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    """The variant's synth-key score is lowered by one point after its real probe run: the gate refuses."""
    probe_suite = export_gate.probe_suite

    def one_point_worse(*args, **kwargs):
        reports = probe_suite(*args, **kwargs)
        reports["handcrafted-bf16", "synth-key"]["winner"]["test"]["score"] -= 0.01
        return reports

    monkeypatch.setattr(export_gate, "probe_suite", one_point_worse)
    repo, staging = tmp_path / "repo", tmp_path / "gate"
    assert _gate(suite, repo, staging) == ExitCode.GATE_FAILED
    assert not (repo / "handcrafted-bf16").exists()
    out = capsys.readouterr().out
    assert "| synth-key |" in out and "| -1.00 | NO |" in out and "GATE FAILED" in out
    assert (staging / "stores" / "handcrafted-bf16" / "synth-key.zarr").is_dir()  # kept for a look


def _report_with(kind: str, **test: float) -> dict:
    return {"kind": kind, "winner": {"test": test}}


def test_deltas_are_in_points_on_marble_scales() -> None:
    """Percent for scores in [0, 1], ROC and AP averaged for tagging, dB as they are for separation."""
    reference = {"key": _report_with("key", score=0.600), "tags": _report_with("multilabel", aucroc=0.9, ap=0.5),
                 "sep": _report_with("separation", score=5.0)}
    variant = {"key": _report_with("key", score=0.596), "tags": _report_with("multilabel", aucroc=0.88, ap=0.5),
               "sep": _report_with("separation", score=4.6)}
    result = export_gate.compare(reference, variant, ("a", "b"), 0.5, Path("suite"))
    deltas = {d.task: round(d.delta, 6) for d in result.deltas}
    assert deltas == {"key": -0.4, "tags": -1.0, "sep": -0.4}
    assert [d.passes(0.5) for d in result.deltas] == [True, False, True] and not result.passed
    assert export_gate.compare(reference, reference, ("a", "a"), 0.0, Path("suite")).passed


def test_the_gate_refuses_what_it_cannot_compare(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="nothing to gate"):
        export_gate.export_gated(None, tmp_path, export_gate.GateSettings(tmp_path), "fp32")
