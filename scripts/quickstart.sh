#!/usr/bin/env bash
# Set up a virtual environment in .venv, install sb3-trpo-plus, and train TRPOPlus on Pendulum-v1 with a
# progress bar; ends with a saved model, the training time and the evaluation before and after training.
# Extra arguments go to `python -m sb3_trpo_plus`, e.g.: bash scripts/quickstart.sh --env CartPole-v1
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet torch==2.13.0
.venv/bin/python -m pip install --quiet ".[mujoco]"
.venv/bin/python -m sb3_trpo_plus "$@"
