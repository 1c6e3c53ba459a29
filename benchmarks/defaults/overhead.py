"""What normalization costs: ``learn()`` time of the one-liner with and without it, side by side in one process.

Alternates ``TRPOPlus("MlpPolicy", gym.make(ENV), seed=0, **config).learn(STEPS)`` between ``normalized`` (the
defaults) and ``plain`` (``normalize_observations=False, normalize_values=False``; the same ``target_kl``), one
torch thread, and appends one row per timing to ``overhead.csv``; prints the median ratio ``normalized / plain``.

    python -m benchmarks.defaults.overhead --env HalfCheetah-v5 --steps 20480 --reps 3
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch as th

from benchmarks.common.provenance import provenance
from benchmarks.common.table import append_rows
from sb3_trpo_plus import TRPOPlus

HERE = Path(__file__).resolve().parent
CONFIGS: dict[str, dict[str, Any]] = {"normalized": {}, "plain": {"normalize_observations": False, "normalize_values": False}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="HalfCheetah-v5")
    parser.add_argument("--steps", type=int, default=20480)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--out", type=Path, default=HERE / "overhead.csv")
    args = parser.parse_args()
    th.set_num_threads(1)
    times: dict[str, list[float]] = {name: [] for name in CONFIGS}
    rows = []
    for rep in range(args.reps):
        for name, kwargs in CONFIGS.items():
            model = TRPOPlus("MlpPolicy", gym.make(args.env), seed=0, target_kl=0.06, **kwargs)
            start = time.perf_counter()
            model.learn(args.steps)
            elapsed = time.perf_counter() - start
            times[name].append(elapsed)
            rows.append({"env": args.env, "steps": args.steps, "config": name, "rep": rep, "learn_s": round(elapsed, 3)})
    ratio = statistics.median(times["normalized"]) / statistics.median(times["plain"])
    machine = provenance().machine_summary
    append_rows(args.out, [{**row, "machine": machine} for row in rows])
    print(
        f"{args.env}, {args.steps} steps: normalized {statistics.median(times['normalized']):.2f} s, "
        f"plain {statistics.median(times['plain']):.2f} s, ratio {ratio:.3f} (median of {args.reps})"
    )


if __name__ == "__main__":
    main()
