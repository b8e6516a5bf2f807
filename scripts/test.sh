#!/usr/bin/env bash
# The test command: installs what is needed, then runs the whole suite (GPU-only tests skip with a reason).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec .venv/bin/python -m pytest -q -rs "$@"
