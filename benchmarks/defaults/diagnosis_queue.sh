#!/usr/bin/env bash
# The diagnosis queue of DIAGNOSIS.md, one lane: bash benchmarks/defaults/diagnosis_queue.sh 1|2
# Runs from the repository root, appends to benchmarks/defaults/diagnosis.csv, one run at a time.
set -u
cd "$(dirname "$0")/../.."
one() { python -m benchmarks.defaults.oneliner --table benchmarks/defaults/diagnosis.csv "$@" || echo "FAILED: $*" >&2; }
ANT=(--env Ant-v5 --steps 500000)
ant_variant() {  # $1 seed
    one --config new "${ANT[@]}" --seed "$1"
    one --config new --label nocfrc "${ANT[@]}" --seed "$1" --env-kwargs '{"include_cfrc_ext_in_observation": false}'
    one --config new --label noobsnorm "${ANT[@]}" --seed "$1" --set normalize_observations=false
    one --config sb3_contrib "${ANT[@]}" --seed "$1"
    one --config new --label novalnorm "${ANT[@]}" --seed "$1" --set normalize_values=false
    one --config new --label clip5 "${ANT[@]}" --seed "$1" --set 'policy_kwargs={"features_extractor_kwargs": {"clip_obs": 5.0}}'
}
case "${1:-}" in
    1)
        ant_variant 100
        ant_variant 101
        one --config new --label logstd05 --env HalfCheetah-v5 --steps 1000000 --seed 100 101 --set 'policy_kwargs={"log_std_init": -0.5}'
        ;;
    2)
        S=(--env Swimmer-v5 --steps 1000000)
        for seed in 100 101; do
            one --config new "${S[@]}" --seed "$seed"
            one --config new --label gamma999 "${S[@]}" --seed "$seed" --set gamma=0.999
            one --config new --label gamma9999 "${S[@]}" --seed "$seed" --set gamma=0.9999 --set gae_lambda=0.99
        done
        one --config sb3_contrib --env HalfCheetah-v5 --steps 1000000 --seed 100 101
        one --config new --env Hopper-v5 --steps 1000000 --seed 102 103 104 105
        ;;
    *) echo "usage: $0 1|2" >&2; exit 2 ;;
esac
