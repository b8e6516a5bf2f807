"""The architecture rules of pyproject.toml's import-linter contracts, checked on the source tree.

import-linter walks a package's folder, and marblekit's stages live in top-level folders mapped into the
package (``[tool.setuptools.package-dir]``); so the test lays the package out as installed, in a temporary
folder, and runs ``lint-imports`` on that copy. The copy also lets it plant violations and see them caught.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = ROOT / "pyproject.toml"


def lay_out_package(destination: Path) -> Path:
    """Copy every package folder of pyproject's package-dir mapping to where it is imported from."""
    mapping = tomllib.loads(PYPROJECT.read_text())["tool"]["setuptools"]["package-dir"]
    for package, folder in sorted(mapping.items()):  # "marblekit" first, then its mapped stages
        target = destination.joinpath(*package.split("."))
        shutil.copytree(ROOT / folder, target, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return destination


def lint(source: Path) -> subprocess.CompletedProcess:
    linter = Path(sys.executable).with_name("lint-imports")
    env = {**os.environ, "PYTHONPATH": str(source)}
    return subprocess.run([str(linter), "--no-cache", str(PYPROJECT)], cwd=source, env=env, capture_output=True,
                          text=True, timeout=120)


@pytest.fixture()
def source(tmp_path: Path) -> Path:
    return lay_out_package(tmp_path / "src")


def test_every_contract_is_kept(source: Path) -> None:
    result = lint(source)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout and "KEPT" in result.stdout


@pytest.mark.parametrize("module, code, contract", [
    ("probes/leak.py", "import marblekit.serving.client\n", "probes"),
    ("probes/leak.py", "import marblekit.export.pipeline\n", "probes"),
    ("extractor/leak.py", "import torch\n", "light"),
    ("serving/leak.py", "import marblekit.export.onnx_export\n", "light"),
    ("core/leak.py", "import marblekit.extractor.api\n", "layers"),
    ("features/leak.py", "import marblekit.serving.feature_service\n", "layers"),
    ("extractor/leak.py", "import marblekit.app.demo\n", "layers"),
    ("probes/leak.py", "import marblekit.probes.run\n", "acyclic"),
])
def test_a_broken_rule_fails(source: Path, module: str, code: str, contract: str) -> None:
    path = source / "marblekit" / module
    path.write_text(code)
    if module == "probes/leak.py" and "probes.run" in code:  # a cycle: run -> ... -> types -> leak -> run
        types = source / "marblekit" / "probes" / "types.py"
        types.write_text(types.read_text() + "\nfrom marblekit.probes import leak  # noqa: E402,F401\n")
    result = lint(source)
    assert result.returncode != 0
    broken = [line.split(":")[0] for line in result.stdout.splitlines() if line.endswith(" BROKEN")]
    assert contract in broken, result.stdout
