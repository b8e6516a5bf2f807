#!/usr/bin/env bash
# The main job on the embedded default: installs what is needed, then runs `marblekit demo` end to end
# (extra arguments go to marblekit demo, e.g. --checkpoint DIR for real MERT weights).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec .venv/bin/marblekit demo "$@"
