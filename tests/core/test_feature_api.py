"""The feature service's committed Python stubs are what grpcio-tools makes of proto/ today."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROTO = Path("marblekit/features/v1/features.proto")
STUBS = ("features_pb2.py", "features_pb2.pyi", "features_pb2_grpc.py")


def test_committed_stubs_match_the_proto(tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools", reason="grpcio-tools (the test extra) generates the stubs")
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I", str(ROOT / "proto"), f"--python_out={tmp_path}",
                    f"--grpc_python_out={tmp_path}", f"--pyi_out={tmp_path}", str(ROOT / "proto" / PROTO)],
                   check=True, capture_output=True, timeout=60)
    for name in STUBS:
        fresh, committed = tmp_path / PROTO.parent / name, ROOT / PROTO.parent / name
        assert fresh.read_bytes() == committed.read_bytes(), \
            f"{committed} is stale: run scripts/generate-protos.sh and commit the result"
