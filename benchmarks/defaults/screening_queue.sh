#!/usr/bin/env bash
# Round 4's stage 1 (RULE.md), one lane: bash benchmarks/defaults/screening_queue.sh 100|101
# Runs from the repository root, appends to benchmarks/defaults/screening.csv, one run at a time; a row already in
# the table (same label, env, seed, steps) is skipped, so a stopped lane picks up where it left off.
set -u
cd "$(dirname "$0")/../.."
seed="${1:?usage: $0 SEED}"
table=benchmarks/defaults/screening.csv
one() {  # label env steps args...  (oneliner --skip-done: a run already in the table is skipped)
    local label=$1 env=$2 steps=$3; shift 3
    python -m benchmarks.defaults.oneliner --config new --label "$label" --env "$env" --seed "$seed" --steps "$steps" \
        --table "$table" --env-kwargs '{}' --skip-done "$@" || echo "FAILED: $label $env $seed" >&2
}
DAUTO=(--set 'cg_damping="auto"')
for task in Ant-v5:300000 HalfCheetah-v5:300000 Hopper-v5:300000 Walker2d-v5:300000 Swimmer-v5:300000 \
            Pendulum-v1:100000 CartPole-v1:100000; do
    env=${task%%:*}; steps=${task##*:}
    one new "$env" "$steps"
    one dauto "$env" "$steps" "${DAUTO[@]}"
    one dauto_std05 "$env" "$steps" "${DAUTO[@]}" --set 'policy_kwargs={"log_std_init": -0.6931}'
    one dauto_g9999 "$env" "$steps" "${DAUTO[@]}" --set gamma=0.9999 --set gae_lambda=0.99
    one dauto_clip5 "$env" "$steps" "${DAUTO[@]}" --set 'policy_kwargs={"features_extractor_kwargs": {"clip_obs": 5.0}}'
done
# Then issue 41's PendulumNoVel-v1 tuning (benchmarks/families/TUNING.md), this lane's seed
tune() {  # label sets...
    python -m benchmarks.families.run --tasks PendulumNoVel-v1 --seeds "$seed" --table benchmarks/families/tuning.csv \
        --label "$@" || echo "FAILED: PendulumNoVel $1 $seed" >&2
}
tune entry
tune kl05 --set target_kl=0.05
tune ns256_kl02 --set n_steps=256 --set target_kl=0.02
tune ns256_kl05 --set n_steps=256 --set target_kl=0.05
tune ns256_kl10 --set n_steps=256 --set target_kl=0.1
