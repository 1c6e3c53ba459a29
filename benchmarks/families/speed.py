"""The recurrent family's speed beside RecurrentPPO's (issue 41, item 4): the same task, each with its own entry
(``trpo_plus_lstm.yml`` and the Zoo's ``ppo_lstm.yml``, as ``run.py`` builds them), ``learn(steps)`` alternating
in one process, one torch thread; CPU seconds (``time.process_time``) and wall seconds per 1,000 steps, one row per
measurement appended to ``speed.csv``. CPU time moves less with a busy machine than wall time; the ratio of the two
algorithms, measured side by side, is the figure to quote::

    python -m benchmarks.families.speed --tasks PendulumNoVel-v1 --repeats 3
    python -m benchmarks.families.speed --tasks PendulumNoVel-v1 --profile   # where RecurrentTRPOPlus's time goes
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import time
from pathlib import Path

import pandas as pd

from benchmarks.common.provenance import provenance
from benchmarks.common.table import append_row
from benchmarks.families.run import _recurrent_run

HERE = Path(__file__).resolve().parent
TABLE = HERE / "speed.csv"
ALGOS = ("trpo_plus_lstm", "ppo_lstm")


def rollout_steps(model: object) -> int:
    """Steps of one rollout (``n_steps`` times the number of envs)."""
    return int(model.n_steps) * int(model.n_envs)  # type: ignore[attr-defined]


def measure(algo: str, task: str, rollouts: int, seed: int = 0) -> dict[str, float]:
    """``learn`` over ``rollouts`` rollouts (the set-up not timed): CPU and wall seconds per 1,000 steps."""
    model, _env, _budget, _evaluate = _recurrent_run(algo, task, seed)
    steps = rollouts * rollout_steps(model)
    cpu, wall = time.process_time(), time.perf_counter()
    model.learn(steps)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {"steps": steps, "cpu_s_per_1k": 1000 * cpu / steps, "wall_s_per_1k": 1000 * wall / steps}


def profile(task: str, rollouts: int, top: int = 25) -> str:
    """cProfile of RecurrentTRPOPlus's ``learn`` on ``task``: the functions with the most cumulative time."""
    model, _env, _budget, _evaluate = _recurrent_run("trpo_plus_lstm", task, 0)
    profiler = cProfile.Profile()
    profiler.enable()
    model.learn(rollouts * rollout_steps(model))
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(top)
    return out.getvalue()


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per task: each algorithm's median CPU and wall seconds per 1,000 steps, and RecurrentTRPOPlus's ratio."""
    medians = table.groupby(["task", "algo"])[["cpu_s_per_1k", "wall_s_per_1k"]].median().unstack("algo")
    for column in ("cpu_s_per_1k", "wall_s_per_1k"):
        medians[(column, "ratio")] = medians[(column, "trpo_plus_lstm")] / medians[(column, "ppo_lstm")]
    return medians


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["PendulumNoVel-v1", "CartPoleNoVel-v1"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rollouts", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    import torch as th

    th.set_num_threads(1)
    if args.profile:
        for task in args.tasks:
            print(profile(task, args.rollouts))
        return
    stamp = provenance()
    for repeat in range(args.repeats):
        for task in args.tasks:
            for algo in ALGOS if repeat % 2 == 0 else ALGOS[::-1]:  # alternating which goes first
                row = {"task": task, "algo": algo, "repeat": repeat, **measure(algo, task, args.rollouts)}
                row.update(code_rev=stamp.code_rev, machine=stamp.machine_summary)
                append_row(TABLE, row)
                print(row, flush=True)
    print(summary(pd.read_csv(TABLE)).round(3).to_string())


if __name__ == "__main__":
    main()
