"""A/B of the NumPy rollout of the CPU fast paths (``fast_paths.NUMPY``: the forward on weights laid out once per
rollout, actor and critic as one block chain, SB3's RolloutBuffer written directly) against the torch closed form
it replaced, side by side in one process, alternating, on the one-liner's
stack (``gym.make`` -> DummyVecEnv + Monitor, one env) and the Zoo's (DummyVecEnv + VecNormalize, 2 envs). One
torch thread. The torch variant is the same code with ``fast_paths.NUMPY = False``. One row per timed ``learn()``
is appended to ``rollout_ab.csv``; the summary prints medians and their ratio.

    python -m benchmarks.speed.rollout_ab --reps 3
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

from benchmarks.common.provenance import provenance
from benchmarks.common.table import append_rows

HERE = Path(__file__).resolve().parent
TABLE = HERE / "rollout_ab.csv"


def build(stack: str) -> Any:
    import gymnasium as gym
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    from sb3_trpo_plus import TRPOPlus

    if stack == "one-liner":
        return TRPOPlus("MlpPolicy", gym.make("HalfCheetah-v5"), seed=0)
    env = VecNormalize(make_vec_env("HalfCheetah-v5", n_envs=2, seed=0))
    return TRPOPlus(
        "MlpPolicy", env, seed=0, n_steps=1024, batch_size=128, n_critic_updates=20, target_kl=0.24, cg_damping=0.6
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20480)
    parser.add_argument("--table", type=Path, default=TABLE, help="the table the timings are appended to")
    args = parser.parse_args()
    import numpy as np
    import torch as th

    from sb3_trpo_plus import fast_paths

    th.set_num_threads(1)
    run = time.strftime("%Y%m%dT%H%M%S")
    rev = provenance().code_rev
    rows = []
    for stack in ("one-liner", "zoo"):
        for rep in range(-1, args.reps):  # rep -1: warm-up, not recorded
            for forward in ("numpy", "torch"):
                fast_paths.NUMPY = forward == "numpy"
                model = build(stack)
                start = time.perf_counter()
                model.learn(args.steps)
                elapsed = time.perf_counter() - start
                if rep >= 0:
                    rows.append(
                        {
                            "run": run,
                            "stack": stack,
                            "forward": forward,
                            "rep": rep,
                            "steps": args.steps,
                            "learn_s": round(elapsed, 3),
                            "load_1min": round(os.getloadavg()[0], 2),
                            "code_rev": rev,
                        }
                    )
    fast_paths.NUMPY = True
    append_rows(args.table, rows)
    for stack in ("one-liner", "zoo"):
        medians = {
            f: float(np.median([r["learn_s"] for r in rows if r["stack"] == stack and r["forward"] == f]))
            for f in ("numpy", "torch")
        }
        print(
            f"{stack}: numpy {medians['numpy']:.2f} s, torch {medians['torch']:.2f} s, "
            f"torch/numpy {medians['torch'] / medians['numpy']:.2f} (learn({args.steps}), medians of {args.reps})"
        )


if __name__ == "__main__":
    main()
