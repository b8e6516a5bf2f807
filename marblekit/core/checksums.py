"""File checksums recorded as provenance (checkpoints, ONNX graphs, audio)."""

from __future__ import annotations

import hashlib
from pathlib import Path


def sha256_of(*paths: Path) -> str:
    """SHA-256 over the concatenated bytes of ``paths``, read in 4 MiB blocks."""
    digest = hashlib.sha256()
    for path in paths:
        with Path(path).open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 22), b""):
                digest.update(block)
    return digest.hexdigest()
