"""Backbones from other packages: a tiny plugin registered only through the ``marblekit.backbones`` entry point
is listed, exported with the checkpoint it ships, extracted and matches its own PyTorch code; broken or
clashing plugins are reported, not fatal."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from marblekit.core import backbones
from marblekit.core.audio_input import Preparation, prepare
from marblekit.core.store_layout import open_pooled
from marblekit.core.windows import Windowing

PLUGIN_DIST = Path(__file__).with_name("plugin_dist")


@pytest.fixture
def plugin_path(tmp_path: Path, monkeypatch) -> Path:
    """The plugin's distribution on sys.path (and PYTHONPATH, for the CLI), with its weights shipped."""
    site = tmp_path / "site"
    shutil.copytree(PLUGIN_DIST, site)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))
    backbones._registry.cache_clear()
    import tinyplug

    torch.manual_seed(7)
    tinyplug.save_checkpoint(tinyplug.build(tinyplug.SPEC, 7), site / "tinyplug" / "weights.npz")
    yield site
    backbones._registry.cache_clear()
    sys.modules.pop("tinyplug", None)


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "marblekit.app.cli", *args], capture_output=True, text=True,
                          timeout=300)


def test_a_plugin_backbone_runs_end_to_end(plugin_path: Path, tmp_path: Path) -> None:
    import tinyplug

    listed = cli("models", "--json")
    assert listed.returncode == 0, listed.stderr
    [row] = [row for row in json.loads(listed.stdout) if row["name"] == "tiny-plug"]
    assert row["hidden_states"] == 3 and row["weights"].startswith("tinyplug/weights.npz")
    exported = cli("export", "tiny-plug", "--repo", str(tmp_path / "repo"))  # no flag: the shipped checkpoint
    assert exported.returncode == 0, exported.stderr
    assert "weights: checkpoint" in exported.stdout and "PARITY FAILED" not in exported.stdout
    config = json.loads((tmp_path / "repo" / "tiny-plug" / "marblekit.json").read_text())
    assert config["provenance"]["checkpoint"] == str(plugin_path / "tinyplug" / "weights.npz")
    assert config["provenance"]["checkpoint_sha256"] == hashlib.sha256(tinyplug.SHIPPED.read_bytes()).hexdigest()
    rng = np.random.default_rng(0)
    (tmp_path / "cat").mkdir()
    sf.write(tmp_path / "cat" / "a.wav", (0.1 * rng.standard_normal(44100 * 3)).astype(np.float32), 44100)
    extracted = cli("extract", str(tmp_path / "cat"), "--model", "tiny-plug", "--store", str(tmp_path / "s.zarr"),
                    "--engine", "local", "--repo", str(tmp_path / "repo"), "--window", "1", "--no-progress")
    assert extracted.returncode == 0, extracted.stderr
    view = open_pooled(tmp_path / "s.zarr")
    clip = prepare(tmp_path / "cat" / "a.wav", 0.0, None, Preparation(16000, False))
    windows = [clip[a:b] for a, b in Windowing(1.0, 1.0).bounds(len(clip), 16000)]
    model, _ = tinyplug.load_checkpoint(tinyplug.SHIPPED, tinyplug.SPEC)
    with torch.no_grad():
        expected = np.stack([model(torch.from_numpy(w)[None])[0].mean(dim=1).flatten().numpy() for w in windows])
    np.testing.assert_allclose(view.pooled.astype(np.float32), expected, rtol=2e-3, atol=2e-3)


def _dist(site: Path, name: str, entry: str) -> None:
    info = site / f"{name}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[marblekit.backbones]\n{entry}\n")


def test_a_broken_plugin_is_skipped_with_a_warning(plugin_path: Path, tmp_path: Path, monkeypatch, caplog) -> None:
    site = tmp_path / "more"
    _dist(site, "brokenplug", "broken = not_a_module_anywhere:PLUGIN")
    _dist(site, "wrongplug", "wrong = json:dumps")
    monkeypatch.syspath_prepend(str(site))
    backbones._registry.cache_clear()
    names = backbones.all_backbones()
    assert "tiny-plug" in names and "handcrafted" in names
    messages = " ".join(record.getMessage() for record in caplog.records)
    assert "backbone plugin 'broken' (not_a_module_anywhere:PLUGIN) failed to load" in messages
    assert "'wrong' (json:dumps) is a function, not a marblekit.core.backbones.BackbonePlugin" in messages


def test_a_plugin_may_not_take_a_registered_name(plugin_path: Path, tmp_path: Path, monkeypatch) -> None:
    site = tmp_path / "clash"
    (site / "clashplug").mkdir(parents=True)
    (site / "clashplug" / "__init__.py").write_text(
        "import dataclasses\nfrom marblekit.core.backbones import HANDCRAFTED, BackbonePlugin\n"
        "PLUGIN = BackbonePlugin(specs=(dataclasses.replace(HANDCRAFTED, family='clash'),), build='x:y')\n")
    _dist(site, "clashplug", "clash = clashplug:PLUGIN")
    monkeypatch.syspath_prepend(str(site))
    backbones._registry.cache_clear()
    with pytest.raises(ValueError, match="plugin 'clash' registers 'handcrafted'.*already taken"):
        backbones.get_backbone("handcrafted")


def test_a_plugin_may_not_take_another_plugins_family(plugin_path: Path, tmp_path: Path, monkeypatch) -> None:
    site = tmp_path / "twin"
    (site / "twinplug").mkdir(parents=True)
    (site / "twinplug" / "__init__.py").write_text(
        "import dataclasses\nfrom marblekit.core.backbones import BackbonePlugin\nimport tinyplug\n"
        "PLUGIN = BackbonePlugin(specs=(dataclasses.replace(tinyplug.SPEC, name='twin'),), build='x:y')\n")
    _dist(site, "twinplug", "twin = twinplug:PLUGIN")
    monkeypatch.syspath_prepend(str(site))
    backbones._registry.cache_clear()
    with pytest.raises(ValueError, match="registers '(twin|tiny-plug)' \\(family 'tinyplug'\\).*already taken"):
        backbones.all_backbones()
