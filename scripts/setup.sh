#!/usr/bin/env bash
# Creates .venv and installs the project with its test tools. Safe to re-run.
#   bash scripts/setup.sh          the project and its test tools
#   bash scripts/setup.sh --test   also the Debian packages the tests start (root, apt-get)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--test" ]; then
    bash scripts/system-packages.sh
fi
PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
# The CPU build of torch first: a bare `torch` requirement (stable-baselines3's)
# would otherwise pull a multi-GB CUDA build.
.venv/bin/python -m pip install --quiet torch==2.13.0
# FinRL 0.3.7 declares no dependencies; we use only its environment module.
.venv/bin/python -m pip install --quiet --no-deps finrl==0.3.7
.venv/bin/python -m pip install --quiet -e '.[test]'
