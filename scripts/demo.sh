#!/usr/bin/env bash
# Installs the requirements into .venv (once), then runs the demo: synthetic data
# in the Kaggle layout → prepared store → training (demo config) → TFLite export.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.txt
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps -e .
export TF_CPP_MIN_LOG_LEVEL=2
exec .venv/bin/python demo.py "$@"
