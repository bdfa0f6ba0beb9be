#!/usr/bin/env bash
# Installs the dev requirements into .venv (once) and runs the test suite.
# Default: the quick suite plus the tests marked `large` (`--run_large`), as CI runs it.
# It also creates the extraction environment .venv-extract (scripts/extract_env.sh, once,
# ~2.5 min) so the video tests run instead of skipping; TFISLR_NO_EXTRACT_ENV=1 leaves it out
# (the video tests then skip; nothing else needs it).
# Extra arguments go to pytest instead, e.g. `scripts/test.sh --run_extra_large` (every test)
# or `scripts/test.sh tests/export` (that folder's quick suite).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -r requirements-dev.txt
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps -e .
if [ "${TFISLR_NO_EXTRACT_ENV:-0}" != 1 ]; then
  bash scripts/extract_env.sh
fi
if [ "$#" -eq 0 ]; then
  set -- --run_large
fi
exec .venv/bin/python -m pytest "$@"
