"""Tables of the one-liner benchmark from ``runs.csv``, by the rule of RULE.md: the screening's scores and choice,
and the confirmation beside the tuned Zoo entry (``benchmarks/learning/data/runs.csv``). Writes ``RESULTS.md``.

    python -m benchmarks.defaults.tables            # print and write RESULTS.md
    python -m benchmarks.defaults.tables --readme   # also the README's one-liner line
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.common.stats import welch_p
from benchmarks.defaults.round4 import round4_choice, round4_confirmation, round4_stage1, round4_stage2
from benchmarks.defaults.scoring import (
    CLASSIC,
    HERE,
    ROOT,
    SCREEN_SEEDS,
    p_below,
    scores_table,
    screening,
    summary,
    tuned_entries,
)

#: RULE.md's screening rounds: candidates (fewer changes first: a tie goes to the earlier one) and task budgets
ROUNDS = {
    "Round 1": (
        ["today", "norm", "new"],
        {"HalfCheetah-v5": 300_000, "Hopper-v5": 300_000, "Walker2d-v5": 300_000, **CLASSIC},
    ),
    "Round 2": (["new", "lin"], {"HalfCheetah-v5": 1_000_000, "Hopper-v5": 1_000_000, "Walker2d-v5": 1_000_000, **CLASSIC}),
}
CONFIRM_SEEDS = (0, 1, 2)  # RULE.md: a task's row is reported once these are all done


#: RULE.md's round 3: the value head that starts at zero (``zerohead``) against the recorded ``new`` rows
ROUND3 = (["new", "zerohead"], {**CLASSIC, "Hopper-v5": 1_000_000, "HalfCheetah-v5": 1_000_000, "Walker2d-v5": 1_000_000})
ROUND3_MARGIN = 0.05


def regression_check(runs: pd.DataFrame) -> str:
    """Round 3's table, scored as the screening scores: the zero head stays if its mean score is at least ``new``'s
    minus :data:`ROUND3_MARGIN`."""
    table, mean_scores = scores_table(runs, *ROUND3)
    if mean_scores is None:
        return table + "\n\nThe check is not complete: the missing runs are queued (RULE.md, round 3)."
    verdict = "stays" if mean_scores["zerohead"] >= mean_scores["new"] - ROUND3_MARGIN else "does not stay"
    return table + f"\n\nBy the rule the zero head **{verdict}**."


def diagnosis(path: Path) -> str:
    """DIAGNOSIS.md's variants: each task's final returns per seed and their mean where every seed of the variant is in."""
    data = pd.read_csv(path)
    parts = []
    for (task, steps), group in data.groupby(["env", "steps"], sort=False):
        seeds = sorted(set(group.seed))
        parts += [
            f"**{task}, {steps:,} steps**",
            "",
            "| variant | " + " | ".join(f"seed {seed}" for seed in seeds) + " | mean |",
            "|---|" + "---|" * (len(seeds) + 1),
        ]
        for variant, rows in group.groupby("config", sort=False):
            by_seed = rows.groupby("seed").final_mean.mean()
            cells = [f"{by_seed[seed]:.1f}" if seed in by_seed else "" for seed in seeds]
            mean = f"{by_seed.mean():.1f}" if len(by_seed) == len(SCREEN_SEEDS) else "(one seed)"
            parts.append(f"| {variant} | " + " | ".join(cells) + f" | {mean} |")
        parts.append("")
    return "\n".join(parts)


def confirmation(runs: pd.DataFrame, chosen: str) -> str:
    """The confirmation table: each configuration's one-liner, the tuned entry, the chosen one's share of it, the
    one-sided Welch p-value of "the chosen one is below" each other one-liner, and the chosen one's wall time."""
    tuned = tuned_entries()
    bench = runs[runs.seed.between(0, 9) & (runs.steps == 1_000_000)]
    others = [c for c in ("new", "today", "sb3_contrib") if c != chosen]
    header = [
        "task",
        *(f"`{c}` one-liner" for c in (chosen, *others)),
        "tuned entry (Zoo stack)",
        "share of tuned",
        *(f"p(`{chosen}` below `{c}`)" for c in others),
        "wall time",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for task in sorted(set(bench.env)):
        values = {}
        for config in (chosen, *others):
            rows = bench[(bench.config == config) & (bench.env == task)]
            complete = set(CONFIRM_SEEDS) <= set(rows.seed)  # reported once all of its planned seeds are done
            values[config] = rows.final_mean if complete else rows.final_mean.iloc[:0]
        if not len(values[chosen]):
            continue
        entry = tuned[tuned.env == task].final_mean
        share = values[chosen].mean() / entry.mean() if len(entry) else float("nan")
        target = " (target met)" if share >= 0.85 else " (**below 85%**)"
        wall = bench[(bench.config == chosen) & (bench.env == task)].wall_time_s
        cells = [
            *(summary(values[c]) for c in (chosen, *others)),
            summary(entry),
            f"{share:.0%}{target}" if not np.isnan(share) else "n/a",
            *(p_below(values[chosen], values[c]) for c in others),
            f"{wall.median():.0f} s",
        ]
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def classic(runs: pd.DataFrame, chosen: str) -> str:
    """Classic control at the Zoo's budgets (RULE.md, "After round 2's queue"): the chosen one-liner beside
    sb3-contrib's on benchmark seeds 0-2 (a task's row once both have all three), and the tuned entry for reference."""
    tuned = tuned_entries()
    bench = runs[runs.seed.between(0, 9) & (runs.steps == 100_000)]
    header = ["task", f"`{chosen}` one-liner", "`sb3_contrib` one-liner", f"p(`{chosen}` below `sb3_contrib`)", "tuned entry"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for task in ("CartPole-v1", "Pendulum-v1", "Acrobot-v1"):
        values = {}
        for config in (chosen, "sb3_contrib"):
            rows = bench[(bench.config == config) & (bench.env == task)]
            values[config] = rows.final_mean if set(CONFIRM_SEEDS) <= set(rows.seed) else rows.final_mean.iloc[:0]
        if not len(values[chosen]) or not len(values["sb3_contrib"]):
            continue
        ours, theirs = values[chosen].to_numpy(), values["sb3_contrib"].to_numpy()
        p_value = welch_p(ours, theirs, "less") if np.std(ours) + np.std(theirs) > 0 else float("nan")
        cells = [
            summary(values[chosen]),
            summary(values["sb3_contrib"]),
            f"{p_value:.3f}",
            summary(tuned[tuned.env == task].final_mean),
        ]
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def extra_tables() -> list[str]:
    """The critic at several reward scales (``reward_scale.py``) and normalization's cost (``overhead.py``)."""
    lines = []
    scales = HERE / "reward_scale.csv"
    if scales.exists():
        data = pd.read_csv(scales)
        table = data.pivot_table(index="reward_scale", columns="normalize_values", values=data.columns[-1], aggfunc="mean")
        lines += [
            "## The critic at any reward scale (`reward_scale.py`)",
            "",
            "Pendulum-v1, rewards times the scale; explained variance of each rollout by the values predicted when it "
            f"was collected, mean of the second half of the updates and of seeds {sorted(set(data.seed))}:",
            "",
            "| reward scale | PopArt (`normalize_values=True`) | returns' own scale (`False`) |",
            "|---|---|---|",
            *(f"| {scale:g} | {row[True]:.2f} | {row[False]:.2f} |" for scale, row in table.iterrows()),
            "",
        ]
    overhead = HERE / "overhead.csv"
    if overhead.exists():
        data = pd.read_csv(overhead)
        medians = data.groupby(["env", "steps", "config"]).learn_s.median().unstack()
        lines += ["## What normalization costs (`overhead.py`)", ""]
        for (env, steps), row in medians.iterrows():
            lines.append(
                f"- {env}, `learn({steps})`: {row['normalized']:.2f} s normalized against {row['plain']:.2f} s plain, "
                f"ratio {row['normalized'] / row['plain']:.3f} (median of each; one process, alternating)."
            )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--readme", action="store_true")
    args = parser.parse_args()
    runs = pd.read_csv(HERE / "runs.csv")
    parts = [
        "# The one-liner benchmark",
        "",
        '`ALGO("MlpPolicy", gym.make(ENV), seed=S, **config).learn(N)`, no wrapper, no YAML, one torch thread, '
        "10 deterministic episodes at the end. Generated by `python -m benchmarks.defaults.tables` from `runs.csv`; "
        "the rule is RULE.md, written before the runs.",
    ]
    chosen = None
    for name, (candidates, tasks) in ROUNDS.items():
        table, choice = screening(runs, candidates, tasks)
        parts += [
            "",
            f"## Screening, {name.lower()} (tuning seeds {SCREEN_SEEDS[0]} and {SCREEN_SEEDS[1]}): mean final return "
            "(score s(c,t))",
            "",
            table,
            "",
            f"Chosen by the rule: **`{choice}`**." if choice else "This round is not complete.",
        ]
        chosen = choice or chosen  # the last complete round's choice
    if chosen:
        parts += [
            "",
            "## Confirmation (benchmark seeds, 1M steps): mean ± std (seeds)",
            "",
            confirmation(runs, chosen),
            "",
            "InvertedDoublePendulum-v5 has no tuned entry in `benchmarks/learning`; its ceiling is about 9360 (a full "
            "1000-step episode).",
            "",
            "## Classic control at the Zoo's budgets (100k steps, benchmark seeds 0-2; the tuned entry: seeds 0-9)",
            "",
            classic(runs, chosen),
            "",
            "p is `nan` where both sides have no spread (the same return on every seed).",
        ]
    parts += [
        "",
        "## Round 3: the value head that starts at zero, against the recorded `new` (tuning seeds 100 and 101)",
        "",
        regression_check(runs),
    ]
    optional = [  # (title, table, what makes the section from it): each where its table exists
        (
            "Round 4, stage 1: the wider screening (tuning seeds 100 and 101): mean final return (score s(c,t))",
            HERE / "screening.csv",
            round4_stage1,
        ),
        (
            "Round 4, stage 2: the survivors at 1M (tuning seeds 100 and 101; classic control from stage 1): mean "
            "final return (score s(c,t))",
            HERE / "screening.csv",
            round4_stage2,
        ),
        (
            "Diagnosis of the shortfalls (DIAGNOSIS.md; tuning seeds, final deterministic return)",
            HERE / "diagnosis.csv",
            diagnosis,
        ),
    ]
    for title, path, section in optional:
        if path.exists():
            parts += ["", f"## {title}", "", section(path)]
    round4 = round4_choice(pd.read_csv(HERE / "screening.csv"))[1] if (HERE / "screening.csv").exists() else None
    if round4 is not None:
        parts += [
            "",
            f"## Issue 44's confirmation of round 4's choice `{round4}` (benchmark seeds 0-4, 1M steps): mean ± std (seeds)",
            "",
            round4_confirmation(runs, round4),
            "",
            "p: Welch's one-sided test that the choice's mean is below the peer's. The tuned entry: "
            "`benchmarks/learning/data/runs.csv` (the Zoo's stack, its own budget).",
            "",
            f"Classic control at the Zoo's budget (100k steps, benchmark seeds 0-2), `{round4}` beside sb3-contrib's "
            "one-liner (Pendulum-v1 only: CartPole-v1's and Acrobot-v1's Discrete actions take neither change):",
            "",
            classic(runs, round4),
            "",
            "Round 2's `new` (std 1) on Pendulum-v1, the same seeds and budget: "
            + summary(
                runs[
                    (runs.config == "new")
                    & (runs.env == "Pendulum-v1")
                    & (runs.steps == 100_000)
                    & runs.seed.isin(CONFIRM_SEEDS)
                ].final_mean
            )
            + ".",
        ]
    parts += ["", *extra_tables()]
    text = "\n".join(parts) + "\n"
    (HERE / "RESULTS.md").write_text(text)
    print(text)
    if args.readme and round4:  # the README shows issue 44's confirmation of round 4's choice
        readme = ROOT / "README.md"
        line = round4_confirmation(runs, round4)
        block = f"<!-- one-liner-table -->\n{line}\n<!-- /one-liner-table -->"
        readme.write_text(
            re.sub(r"<!-- one-liner-table -->.*?<!-- /one-liner-table -->", block, readme.read_text(), flags=re.S)
        )


if __name__ == "__main__":
    main()
