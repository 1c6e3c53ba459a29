#!/usr/bin/env bash
# Set up the virtual environment .venv (scripts/setup_venv.sh: the README's Install line for a clone, tests' tools
# included), and train TRPOPlus on Pendulum-v1 with a progress bar; ends with a saved model, the training time and
# the evaluation before and after training.
# Extra arguments go to `python -m sb3_trpo_plus`, e.g.: bash scripts/quickstart.sh --env CartPole-v1
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_venv.sh .venv
.venv/bin/python -m sb3_trpo_plus "$@"
