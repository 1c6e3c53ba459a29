#!/usr/bin/env bash
# The environment every command of the README runs in, tests included: a virtual environment (default .venv)
# with torch 2.13.0, then this checkout installed editable with the extras zoo, mujoco and dev, as the README's
# Install line for a clone does. An existing environment is kept and brought up to date.
# Usage: bash scripts/setup_venv.sh [DIR]     (scripts/quickstart.sh and .ci/run call it)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
# torch first, pinned: an unpinned torch would pull a CUDA build of several GB
"$VENV/bin/python" -m pip install --quiet torch==2.13.0
"$VENV/bin/python" -m pip install --quiet -e ".[zoo,mujoco,dev]"
