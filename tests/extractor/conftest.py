"""Fixtures of the extractor tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from extract_helpers import HANDCRAFTED, MERT

from marblekit.core.backbones import get_backbone


@pytest.fixture(scope="session")
def model_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model repository with both tiny models, exported once per test session."""
    from marblekit.export.pipeline import export_model

    repo = tmp_path_factory.getbasetemp() / "extract-model-repo"
    if not (repo / MERT / "config.pbtxt").exists():
        export_model(get_backbone(HANDCRAFTED), repo, check_parity=False)
        export_model(get_backbone("mert-v1-95m").with_layers(2), repo, random_init=True, check_parity=False)
    return repo
