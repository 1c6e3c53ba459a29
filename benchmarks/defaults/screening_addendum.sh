#!/usr/bin/env bash
# Round 4's addenda (RULE.md, 23:02 and 23:05 UTC): dauto_kurt, then std05, on stage 1's seven tasks, one lane:
#   bash benchmarks/defaults/screening_addendum.sh 100|101
# Appends to benchmarks/defaults/screening.csv; a row already there is skipped.
set -u
cd "$(dirname "$0")/../.."
seed="${1:?usage: $0 SEED}"
table=benchmarks/defaults/screening.csv
one() {  # label env steps sets...  (oneliner --skip-done: a run already in the table is skipped)
    local label=$1 env=$2 steps=$3; shift 3
    python -m benchmarks.defaults.oneliner --config new --label "$label" --env "$env" --seed "$seed" --steps "$steps" \
        --table "$table" --env-kwargs '{}' --skip-done "$@" || echo "FAILED: $label $env $seed" >&2
}
TASKS=(Ant-v5:300000 HalfCheetah-v5:300000 Hopper-v5:300000 Walker2d-v5:300000 Swimmer-v5:300000 Pendulum-v1:100000
       CartPole-v1:100000)
for task in "${TASKS[@]}"; do
    one dauto_kurt "${task%%:*}" "${task##*:}" --set 'cg_damping="auto"' \
        --set 'policy_kwargs={"features_extractor_kwargs": {"heavy_tails": true}}'
done
for task in "${TASKS[@]}"; do
    one std05 "${task%%:*}" "${task##*:}" --set 'policy_kwargs={"log_std_init": -0.6931}'
done
