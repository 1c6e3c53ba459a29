"""Round 4's stage 2 (RULE.md): the survivors of stage 1 and ``new`` at 1M steps on the five MuJoCo tasks, tuning
seeds 100 and 101, appended to ``screening.csv``. The survivors are read from stage 1's rows by the rule
(:func:`benchmarks.defaults.round4.survivors`); a run already in the table is skipped, so a stopped lane resumes.

    python -m benchmarks.defaults.stage2 --seed 100      # one lane
    python -m benchmarks.defaults.stage2 --dry-run       # what it would run
"""

from __future__ import annotations

import argparse
import json

import pandas as pd

from benchmarks.common.table import append_row
from benchmarks.defaults.oneliner import run
from benchmarks.defaults.round4 import ROUND4_CANDIDATES, ROUND4_TASKS, constructor_arguments, survivors
from benchmarks.defaults.scoring import HERE, scores_table

TABLE = HERE / "screening.csv"
#: stage 2's tasks, longest first (Ant-v5 takes about twice the others)
TASKS = ("Ant-v5", "HalfCheetah-v5", "Hopper-v5", "Walker2d-v5", "Swimmer-v5")
STEPS = 1_000_000


def queue(seeds: list[int]) -> list[tuple[str, str, int]]:
    """(label, env, seed) of every stage 2 run still missing, task by task, every survivor of a task in turn."""
    runs = pd.read_csv(TABLE)
    _, mean_scores = scores_table(runs, ROUND4_CANDIDATES, ROUND4_TASKS)
    if mean_scores is None:
        raise SystemExit("stage 1 is not complete (screening_queue.sh): no survivors yet")
    done = {(r.config, r.env, int(r.seed)) for r in runs.itertuples() if int(r.steps) == STEPS}
    return [
        (label, task, seed)
        for task in TASKS
        for seed in seeds
        for label in survivors(mean_scores)
        if (label, task, seed) not in done
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, nargs="+", default=[100, 101])
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args()
    for label, task, seed in queue(args.seed):
        overrides = constructor_arguments(label)
        if args.dry_run:
            print(label, task, seed, json.dumps(overrides))
            continue
        row = run("new", task, seed, STEPS, label=label, overrides=overrides, env_kwargs={})
        append_row(TABLE, row)
        print(f"{label} {task} seed {seed}: {row['final_mean']:.1f} ({row['wall_time_s']:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
