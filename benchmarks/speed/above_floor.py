"""Time above the env's floor (issue 42): what each algorithm adds to the time its VecEnv stack takes on its own.

For each stack and env count, side by side in one process, alternating (the order rotated every repetition, after
one warm-up repetition that is not recorded), one torch thread, HalfCheetah-v5:

* ``env``: the gym env alone (``gym.make``, no VecEnv), stepped with precomputed random actions, ``n_envs`` of them
  in turn, resetting at the end of each episode;
* ``floor``: the stack (``DummyVecEnv`` + ``Monitor``: the one-liner's, what ``TRPOPlus("MlpPolicy", env)`` builds;
  ``DummyVecEnv`` + ``Monitor`` + ``VecNormalize``: the Zoo's) stepped with the same random actions;
* ``sb3_contrib``: ``sb3_contrib.TRPO("MlpPolicy", stack).learn(steps)`` with its defaults
  (``n_steps = 2048 / n_envs``);
* ``trpo_plus``: ``sb3_trpo_plus.TRPO`` with the same arguments: the same update (sb3-contrib's units, no
  normalization: ``tests/test_parity.py``), through TRPOPlus's code.

An algorithm's time above the floor is the median of its ``learn()`` minus the floor's median; the headline is
sb3-contrib's over TRPOPlus's (it does not move with the machine), reported beside each over the floor. One row per
timed run is appended to ``above_floor.csv``.

    python -m benchmarks.speed.above_floor --reps 3
    python -m benchmarks.speed.above_floor --summary      # the table's last run, summarized
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common.provenance import provenance
from benchmarks.common.table import append_rows

HERE = Path(__file__).resolve().parent
TABLE = HERE / "above_floor.csv"
ENV_ID = "HalfCheetah-v5"
STACKS = ("one-liner", "zoo")
WHAT = ("env", "floor", "sb3_contrib", "trpo_plus")


def make_stack(stack: str, n_envs: int, seed: int = 0) -> Any:
    """The VecEnv of ``stack``: ``DummyVecEnv`` + ``Monitor`` (``make_vec_env``, as SB3 wraps ``gym.make``'s env),
    and ``VecNormalize`` on it for the Zoo's."""
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    env = make_vec_env(ENV_ID, n_envs=n_envs, seed=seed)
    return VecNormalize(env) if stack == "zoo" else env


def random_actions(steps: int, n_envs: int) -> np.ndarray:
    """Uniform actions in HalfCheetah's box, drawn before the timing starts."""
    return np.random.default_rng(0).uniform(-1.0, 1.0, size=(steps // n_envs, n_envs, 6)).astype(np.float32)


def time_env(steps: int, n_envs: int) -> float:
    import gymnasium as gym

    envs = [gym.make(ENV_ID) for _ in range(n_envs)]
    for index, env in enumerate(envs):
        env.reset(seed=index)
    actions = random_actions(steps, n_envs)
    start = time.perf_counter()
    for row in actions:
        for env, action in zip(envs, row, strict=True):
            _, _, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                env.reset()
    return time.perf_counter() - start


def time_floor(stack: str, steps: int, n_envs: int) -> float:
    env = make_stack(stack, n_envs)
    env.reset()
    actions = random_actions(steps, n_envs)
    start = time.perf_counter()
    for row in actions:
        env.step(row)
    return time.perf_counter() - start


def time_learn(library: str, stack: str, steps: int, n_envs: int) -> float:
    if library == "sb3_contrib":
        from sb3_contrib import TRPO
    else:
        from sb3_trpo_plus import TRPO  # type: ignore[assignment]
    model = TRPO("MlpPolicy", make_stack(stack, n_envs), n_steps=2048 // n_envs, seed=0)
    start = time.perf_counter()
    model.learn(steps)
    return time.perf_counter() - start


def timers(stack: str, n_envs: int, steps: int) -> dict[str, Callable[[], float]]:
    return {
        "env": lambda: time_env(steps, n_envs),
        "floor": lambda: time_floor(stack, steps, n_envs),
        "sb3_contrib": lambda: time_learn("sb3_contrib", stack, steps, n_envs),
        "trpo_plus": lambda: time_learn("trpo_plus", stack, steps, n_envs),
    }


def summarize(rows: list[dict[str, Any]]) -> list[str]:
    """One line per stack and env count: the medians, each algorithm's time above the floor, the ratios."""
    lines = []
    for stack in STACKS:
        for n_envs in sorted({int(r["n_envs"]) for r in rows}):
            med = {}
            for what in WHAT:
                times = [
                    float(r["seconds"])
                    for r in rows
                    if r["stack"] == stack and int(r["n_envs"]) == n_envs and r["what"] == what
                ]
                if times:
                    med[what] = statistics.median(times)
            if len(med) < len(WHAT):
                continue
            contrib, ours = med["sb3_contrib"] - med["floor"], med["trpo_plus"] - med["floor"]
            lines.append(
                f"{stack}, {n_envs} env(s): env {med['env']:.2f} s, floor {med['floor']:.2f} s; above the floor: "
                f"sb3-contrib {contrib:.2f} s ({contrib / med['floor']:.2f} x floor), TRPOPlus {ours:.2f} s "
                f"({ours / med['floor']:.2f} x floor); sb3-contrib / TRPOPlus {contrib / ours:.2f}"
            )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20480)
    parser.add_argument("--n-envs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--stacks", nargs="+", default=list(STACKS), choices=STACKS)
    parser.add_argument("--table", type=Path, default=TABLE)
    parser.add_argument("--summary", action="store_true", help="summarize the table's last run and exit")
    args = parser.parse_args()
    if args.summary:
        import csv

        with args.table.open() as file:
            recorded: list[dict[str, Any]] = list(csv.DictReader(file))
        last = recorded[-1]["run"]
        print("\n".join(summarize([r for r in recorded if r["run"] == last])))
        return
    import torch as th

    th.set_num_threads(1)
    record = provenance()
    run = time.strftime("%Y%m%dT%H%M%S")
    rows: list[dict[str, Any]] = []
    for stack in args.stacks:
        for n_envs in args.n_envs:
            cases = timers(stack, n_envs, args.steps)
            for rep in range(-1, args.reps):  # rep -1: warm-up, not recorded
                order = list(WHAT[(rep + 1) % len(WHAT) :] + WHAT[: (rep + 1) % len(WHAT)])
                for what in order:
                    seconds = cases[what]()
                    if rep >= 0:
                        rows.append(
                            {
                                "run": run,
                                "stack": stack,
                                "n_envs": n_envs,
                                "what": what,
                                "rep": rep,
                                "steps": args.steps,
                                "seconds": round(seconds, 3),
                                "load_1min": round(os.getloadavg()[0], 2),
                                "code_rev": record.code_rev,
                            }
                        )
            print("\n".join(summarize([r for r in rows if r["stack"] == stack and r["n_envs"] == n_envs])), flush=True)
    append_rows(args.table, rows)


if __name__ == "__main__":
    main()
