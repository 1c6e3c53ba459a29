"""Issue 44's confirmation (RULE.md, 2026-12-07 23:06 UTC and the addendum of 2026-12-08): round 4's choice as
shipped (``TRPOPlus("MlpPolicy", env)`` with no argument, on code whose defaults are the choice), sb3-contrib's TRPO
one-liner and SB3's PPO one-liner, benchmark seeds 0-4, 1M steps, appended to ``runs.csv``.

The runs are one fixed list, task by task (every seed of a task, each seed's three one-liners in turn); lane ``k``
of ``n`` takes every ``n``-th run from the ``k``-th, so that two lanes finish a task's row together. A run already in
the table is skipped, so a stopped lane resumes::

    python -m benchmarks.defaults.confirmation --lane 1 --lanes 2
    python -m benchmarks.defaults.confirmation --dry-run
"""

from __future__ import annotations

import argparse

import pandas as pd

from benchmarks.common.table import append_row
from benchmarks.defaults.oneliner import TABLE, run
from benchmarks.defaults.round4 import ROUND4_CONFIRM_SEEDS, ROUND4_CONFIRM_TASKS, ROUND4_PEERS, round4_choice

STEPS = 1_000_000


def defaults_are(chosen: str) -> bool:
    """Whether TRPOPlus's defaults, as this code has them, are round 4's candidate ``chosen``: its damping and its
    initial action std (the candidate's ``log_std_init`` was written to 4 decimals)."""
    import inspect
    import math

    from benchmarks.defaults.round4 import constructor_arguments
    from sb3_trpo_plus import TRPOPlus

    arguments = constructor_arguments(chosen)
    log_std = arguments["policy_kwargs"]["log_std_init"]  # type: ignore[index]
    std = TRPOPlus.INITIAL_ACTION_STD if TRPOPlus.INITIAL_ACTION_STD is not None else 1.0
    damping = inspect.signature(TRPOPlus).parameters["cg_damping"].default
    return damping == arguments["cg_damping"] and abs(math.log(std) - float(log_std)) < 1e-4


#: classic control at the Zoo's budget, first (RULE.md's addenda of 01:42 and 01:59 UTC): Pendulum-v1 is the
#: classic task whose one-liner the choice changes (Box actions); CartPole-v1 and Acrobot-v1 have Discrete actions
CLASSIC_RUNS = (("Pendulum-v1", 100_000, (0, 1, 2)),)

Run = tuple[str, str, str, int, int]  # (configuration, label, env, seed, steps)


def runs(chosen: str) -> list[Run]:
    """Every run of the confirmation, in their fixed order: classic control, then the MuJoCo tasks."""
    classic = [("new", chosen, task, seed, steps) for task, steps, seeds in CLASSIC_RUNS for seed in seeds]
    configs = [("new", chosen), *((peer, peer) for peer in ROUND4_PEERS)]
    mujoco = [
        (config, label, task, seed, STEPS)
        for task in ROUND4_CONFIRM_TASKS
        for seed in ROUND4_CONFIRM_SEEDS
        for config, label in configs
    ]
    return classic + mujoco


def queue(chosen: str, lane: int, lanes: int, table: pd.DataFrame) -> list[Run]:
    """Lane ``lane``'s (1-based) share of the runs that are not in ``table`` yet."""
    done = {(r.config, r.env, int(r.seed), int(r.steps)) for r in table.itertuples()}
    mine = runs(chosen)[lane - 1 :: lanes]
    return [entry for entry in mine if entry[1:] not in done]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lane", type=int, default=1)
    parser.add_argument("--lanes", type=int, default=1)
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args()
    if not 1 <= args.lane <= args.lanes:
        raise SystemExit(f"--lane must be 1 to --lanes ({args.lanes}), got {args.lane}")
    from benchmarks.defaults.scoring import HERE

    _, chosen = round4_choice(pd.read_csv(HERE / "screening.csv"))
    if chosen is None:
        raise SystemExit("round 4's stage 2 is not complete (python -m benchmarks.defaults.stage2): nothing chosen yet")
    if not defaults_are(chosen):
        raise SystemExit(f"TRPOPlus's defaults in this code are not round 4's choice {chosen!r}: run on code that ships it")
    for config, label, task, seed, steps in queue(chosen, args.lane, args.lanes, pd.read_csv(TABLE)):
        if args.dry_run:
            print(config, label, task, seed, steps)
            continue
        row = run(config, task, seed, steps, label=label)
        append_row(TABLE, row)
        print(f"{label} {task} seed {seed}: {row['final_mean']:.1f} ({row['wall_time_s']:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
