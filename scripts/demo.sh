#!/usr/bin/env bash
# The main job on the embedded default: installs what is needed, then runs it end to end.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export PATH="$PWD/.venv/bin:$PATH"
marblekit models
marblekit export handcrafted --repo model_repository
marblekit export mert-v1-95m --random-init --repo model_repository
marblekit export mert-v1-95m --random-init --precision fp16 --repo model_repository
