#!/usr/bin/env bash
# Issue 44's confirmation peers (RULE.md, 23:06 UTC): sb3-contrib's TRPO and SB3's PPO one-liners, benchmark seeds 0-4,
# 1M steps, appended to runs.csv; a run already there is skipped. Two lanes split the tasks:
#   bash benchmarks/defaults/confirmation_peers.sh 1|2
set -u
cd "$(dirname "$0")/../.."
table=benchmarks/defaults/runs.csv
case "${1:-}" in
    1) TASKS=(Ant-v5 HalfCheetah-v5 Swimmer-v5 InvertedDoublePendulum-v5 Pusher-v5) ;;
    2) TASKS=(Humanoid-v5 Hopper-v5 Walker2d-v5 Reacher-v5) ;;
    *) echo "usage: $0 1|2" >&2; exit 2 ;;
esac
for env in "${TASKS[@]}"; do
    for seed in 0 1 2 3 4; do
        for config in sb3_contrib sb3_ppo; do
            python -m benchmarks.defaults.oneliner --config "$config" --env "$env" --seed "$seed" --steps 1000000 \
                --table "$table" --skip-done || echo "FAILED: $config $env $seed" >&2
        done
    done
done
