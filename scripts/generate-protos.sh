#!/usr/bin/env bash
# Regenerates the feature service's Python stubs (marblekit/features/v1/) from proto/ with the pinned
# grpcio-tools of .venv; tests/core/test_feature_api.py checks that the committed stubs match.
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m grpc_tools.protoc -I proto --python_out=. --grpc_python_out=. --pyi_out=. \
  proto/marblekit/features/v1/features.proto
