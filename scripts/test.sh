#!/usr/bin/env bash
# Installs the dev requirements into .venv (once) and runs the test suite.
# Default: the fast tests plus the representative slow ones marked `ci`.
# Extra arguments go to pytest instead, e.g. `scripts/test.sh -m slow` or `scripts/test.sh tests`.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -r requirements-dev.txt
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps -e .
export TF_CPP_MIN_LOG_LEVEL=2
if [ "$#" -eq 0 ]; then
  set -- -m "not slow or ci"
fi
exec .venv/bin/python -m pytest "$@"
