#!/usr/bin/env bash
# Round 4's addendum (RULE.md, 23:05 UTC): dauto_kurt on stage 1's seven tasks, one lane:
#   bash benchmarks/defaults/screening_addendum.sh 100|101
# Appends to benchmarks/defaults/screening.csv; a row already there is skipped.
set -u
cd "$(dirname "$0")/../.."
seed="${1:?usage: $0 SEED}"
table=benchmarks/defaults/screening.csv
for task in Ant-v5:300000 HalfCheetah-v5:300000 Hopper-v5:300000 Walker2d-v5:300000 Swimmer-v5:300000 \
            Pendulum-v1:100000 CartPole-v1:100000; do
    env=${task%%:*}; steps=${task##*:}
    if python - "$table" "$env" "$seed" "$steps" <<'PY'
import csv, sys
table, env, seed, steps = sys.argv[1:]
sys.exit(0 if any(r["config"] == "dauto_kurt" and r["env"] == env and r["seed"] == seed and r["steps"] == steps
                  for r in csv.DictReader(open(table))) else 1)
PY
    then continue; fi
    python -m benchmarks.defaults.oneliner --config new --label dauto_kurt --env "$env" --seed "$seed" --steps "$steps" \
        --table "$table" --env-kwargs '{}' --set 'cg_damping="auto"' \
        --set 'policy_kwargs={"features_extractor_kwargs": {"heavy_tails": true}}' || echo "FAILED: dauto_kurt $env $seed" >&2
done
