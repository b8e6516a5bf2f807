#!/usr/bin/env bash
# Installs everything marblekit needs on a fresh Debian/Ubuntu machine; safe to run again.
#   Debian packages: ffmpeg (decoding fallback), FluidSynth + a GM soundfont (synthetic suite), libsndfile.
#   .venv          the main environment: marblekit with torch (CPU wheel), onnxruntime, zarr, tritonclient,
#                  TensorFlow (CPU) and the musicnn wheel for its checkpoints and the parity reference.
#   .venv-triton   the serving environment: nvidia-pytriton's tritonserver + Python backend, onnxruntime and
#                  OpenVINO, numpy<2.
#   .reference/    reference implementations the tests compare against, outside any environment.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(ffmpeg fluidsynth fluid-soundfont-gm libsndfile1 build-essential)
missing=()
for package in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
  echo "install: Debian packages ${missing[*]}"
  SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PYTHON=${PYTHON:-python3.11}
quiet_pip() { "$1" -m pip install -q --disable-pip-version-check "${@:2}" 2>&1 | grep -v "^WARNING: Location" || true; }

[ -x .venv/bin/python ] || { echo "install: creating .venv"; "$PYTHON" -m venv .venv; }
echo "install: main environment (.venv)"
quiet_pip .venv/bin/python torch==2.13.0
quiet_pip .venv/bin/python -e '.[torch,probes,test,tensorflow,s3,ray]'
quiet_pip .venv/bin/python --no-deps musicnn==0.1.0  # MusiCNN's trained checkpoints and original code
quiet_pip .venv/bin/python --no-deps openunmix==1.3.0  # the reference's Wiener filter, for the tests (needs no torchaudio)
# The reference toolkit's Lightning (its lr_find is the learning-rate range test's reference), kept apart from
# .venv: the tests run it in its own process with this folder on PYTHONPATH.
[ -d .reference/lightning/pytorch_lightning ] || quiet_pip .venv/bin/python --no-deps --target .reference/lightning \
  pytorch-lightning==1.9.4 lightning-utilities==0.8.0 torchmetrics==0.11.4 "setuptools<70"
.venv/bin/python -c "import marblekit, torch, onnxruntime, openvino, zarr" \
  || { echo "install: .venv is incomplete (see pip's messages above)" >&2; exit 1; }

[ -x .venv-triton/bin/python ] || { echo "install: creating .venv-triton"; "$PYTHON" -m venv .venv-triton; }
echo "install: serving environment (.venv-triton)"
quiet_pip .venv-triton/bin/python -r serving/requirements-triton.txt
.venv-triton/bin/python -c "import pytriton, onnxruntime, openvino" \
  || { echo "install: .venv-triton is incomplete (see pip's messages above)" >&2; exit 1; }
echo "install: done"
