#!/usr/bin/env bash
# Creates the extraction environment .venv-extract (once; rerunning checks and completes it):
# MediaPipe Holistic for video -> Kaggle-layout landmark parquet files (`tfislr-extract`).
# It is separate from the main .venv because mediapipe 0.10.21 needs protobuf < 5 while
# TensorFlow 2.21 needs protobuf >= 6.31; see requirements-extract.txt.
#   TFISLR_EXTRACT_VENV  where to create it (default: .venv-extract in the checkout)
#   PYTHON               the interpreter to build it from (default: python3; 3.9-3.12)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${TFISLR_EXTRACT_VENV:-.venv-extract}"
if [ ! -x "$VENV/bin/python" ]; then
  "${PYTHON:-python3}" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps -r requirements-extract.txt
# tfislr itself without its (TensorFlow) dependencies: provides `tfislr-extract` in the env.
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps -e .
"$VENV/bin/python" -m tfislr.video.extract --check
