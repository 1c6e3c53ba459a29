"""Tables of the one-liner benchmark from ``runs.csv``, by the rule of RULE.md: the screening's scores and choice,
and the confirmation beside the tuned Zoo entry (``benchmarks/learning/data/runs.csv``). Writes ``RESULTS.md``.

    python -m benchmarks.defaults.tables            # print and write RESULTS.md
    python -m benchmarks.defaults.tables --readme   # also the README's one-liner line
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.common.stats import welch_p
from benchmarks.defaults.oneliner import BEFORE_ROUND4, merged_arguments

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
TUNED = ROOT / "benchmarks" / "learning" / "data" / "runs.csv"
RANDOM = {**json.loads((ROOT / "benchmarks" / "learning" / "random_scores.json").read_text()), "Pendulum-v1": -1200.0}
RANDOM["CartPole-v1"] = 22.0
CLASSIC = {"Pendulum-v1": 100_000, "CartPole-v1": 100_000}
#: RULE.md's screening rounds: candidates (fewer changes first: a tie goes to the earlier one) and task budgets
ROUNDS = {
    "Round 1": (
        ["today", "norm", "new"],
        {"HalfCheetah-v5": 300_000, "Hopper-v5": 300_000, "Walker2d-v5": 300_000, **CLASSIC},
    ),
    "Round 2": (["new", "lin"], {"HalfCheetah-v5": 1_000_000, "Hopper-v5": 1_000_000, "Walker2d-v5": 1_000_000, **CLASSIC}),
}
SCREEN_SEEDS = (100, 101)
TIE = 0.02
CONFIRM_SEEDS = (0, 1, 2)  # RULE.md: a task's row is reported once these are all done


def scores_table(runs: pd.DataFrame, candidates: list[str], tasks: dict[str, int]) -> tuple[str, dict[str, float] | None]:
    """A screening's table (mean final return and score s(c,t) of each candidate on each task) and each candidate's
    mean score (``None`` while runs are missing)."""
    lines = ["| task | steps | " + " | ".join(candidates) + " |", "|---|---|" + "---|" * len(candidates)]
    scores: dict[str, list[float]] = {c: [] for c in candidates}
    complete = True
    for task, steps in tasks.items():
        means = {}
        for config in candidates:
            rows = runs[(runs.config == config) & (runs.env == task) & (runs.steps == steps) & runs.seed.isin(SCREEN_SEEDS)]
            means[config] = float(rows.final_mean.mean()) if len(rows) == len(SCREEN_SEEDS) else None
        cells = []
        best = max((m for m in means.values() if m is not None), default=None)
        for config in candidates:
            mean = means[config]
            if mean is None or best is None:
                complete = False
                cells.append("n/a" if mean is None else f"{mean:.1f}")
                continue
            score = (mean - RANDOM[task]) / (best - RANDOM[task])
            scores[config].append(score)
            cells.append(f"{mean:.1f} ({score:.2f})")
        lines.append(f"| {task} | {steps:,} | " + " | ".join(cells) + " |")
    if not complete:
        return "\n".join(lines), None
    mean_scores = {c: float(np.mean(scores[c])) for c in candidates}
    lines.append("| **mean score** | | " + " | ".join(f"**{mean_scores[c]:.3f}**" for c in candidates) + " |")
    return "\n".join(lines), mean_scores


def screening(runs: pd.DataFrame, candidates: list[str], tasks: dict[str, int]) -> tuple[str, str | None]:
    """One round's screening table and its chosen candidate (``None`` while runs are missing)."""
    table, mean_scores = scores_table(runs, candidates, tasks)
    if mean_scores is None:
        return table, None
    top = max(mean_scores.values())
    return table, next(c for c in candidates if mean_scores[c] >= top - TIE)


#: RULE.md's round 4: the parts a candidate is made of (its label joins them with ``_``; ``new`` has none), each a set
#: of constructor arguments over ``new``'s (``log_std_init``, ``clip_obs`` and ``heavy_tails`` go into ``policy_kwargs``)
ROUND4_PARTS: dict[str, dict[str, object]] = {
    "dauto": {"cg_damping": "auto"},
    "std05": {"log_std_init": -0.6931},
    "g9999": {"gamma": 0.9999, "gae_lambda": 0.99},
    "clip5": {"clip_obs": 5.0},
    "kurt": {"heavy_tails": True},  # RULE.md's round 4 addendum
}
ROUND4_CANDIDATES = ["new", "std05", "dauto", "dauto_std05", "dauto_g9999", "dauto_clip5", "dauto_kurt"]


def changes(label: str) -> dict[str, object]:
    """A round 4 candidate's changes from ``new``, by the parts of its label."""
    parts = [] if label == "new" else label.split("_")
    return {key: value for part in parts for key, value in ROUND4_PARTS[part].items()}


def constructor_arguments(label: str) -> dict[str, object]:
    """A round 4 candidate's constructor arguments (what ``oneliner.py --set`` passes): its changes over the
    defaults before round 4, which are pinned (``oneliner.BEFORE_ROUND4``), so that it runs as screened on any code."""
    arguments = dict(changes(label))
    policy_kwargs: dict[str, object] = {}
    if "log_std_init" in arguments:
        policy_kwargs["log_std_init"] = arguments.pop("log_std_init")
    extractor = {key: arguments.pop(key) for key in ("clip_obs", "heavy_tails") if key in arguments}
    if extractor:
        policy_kwargs["features_extractor_kwargs"] = extractor
    return merged_arguments(BEFORE_ROUND4, {**arguments, **({"policy_kwargs": policy_kwargs} if policy_kwargs else {})})


ROUND4_TASKS = dict.fromkeys(("Ant-v5", "HalfCheetah-v5", "Hopper-v5", "Walker2d-v5", "Swimmer-v5"), 300_000)
ROUND4_TASKS.update(CLASSIC)


def survivors(mean_scores: dict[str, float]) -> list[str]:
    """Round 4's stage 1 rule: the two best candidates by mean score, their union when they change different
    arguments, and ``new`` as the reference."""
    first, second = sorted(mean_scores, key=lambda c: -mean_scores[c])[:2]
    chosen = [first, second]
    a, b = changes(first), changes(second)
    if all(a[key] == b[key] for key in set(a) & set(b)) and not (set(a) <= set(b) or set(b) <= set(a)):
        parts = [part for part in ROUND4_PARTS if part in first.split("_") or part in second.split("_")]
        chosen.append("_".join(parts))
    return [*chosen, *([] if "new" in chosen else ["new"])]


def round4_stage1(path: Path) -> str:
    """Round 4's stage 1 table and, once complete, the survivors by the rule."""
    table, mean_scores = scores_table(pd.read_csv(path), ROUND4_CANDIDATES, ROUND4_TASKS)
    if mean_scores is None:
        return table + "\n\nStage 1 is not complete: its queue is `screening_queue.sh`."
    return (
        table + "\n\nGoing on to stage 2 (1M steps) by the rule: " + ", ".join(f"`{c}`" for c in survivors(mean_scores)) + "."
    )


#: stage 2's budgets: the MuJoCo tasks at 1M, classic control read from stage 1's rows (RULE.md)
ROUND4_STAGE2_TASKS = {**dict.fromkeys(list(ROUND4_TASKS)[:5], 1_000_000), **CLASSIC}


def round4_choice(runs: pd.DataFrame) -> tuple[str, str | None]:
    """Round 4's stage 2 table and its choice by RULE.md (``None`` while runs are missing): the highest mean score
    over the seven tasks; within ``TIE`` of it, the candidate with the fewest changes from ``new``."""
    _, stage1 = scores_table(runs, ROUND4_CANDIDATES, ROUND4_TASKS)
    if stage1 is None:
        return "Stage 1 is not complete.", None
    candidates = sorted(survivors(stage1), key=lambda c: len(changes(c)))  # a tie goes to the earlier one
    return screening(runs, candidates, ROUND4_STAGE2_TASKS)


def round4_stage2(path: Path) -> str:
    """Round 4's stage 2 table and, once complete, the choice."""
    table, choice = round4_choice(pd.read_csv(path))
    if choice is None:
        return table + "\n\nStage 2 is not complete: its queue is `python -m benchmarks.defaults.stage2`."
    return table + f"\n\nChosen by the rule: **`{choice}`**."


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


def tuned_entries() -> pd.DataFrame:
    data = pd.read_csv(TUNED)
    return data[(data.algo == "trpo_plus") & data.seed.between(0, 9)]


def p_below(ours: pd.Series, theirs: pd.Series) -> str:
    """The one-sided Welch p-value of "ours is below theirs" as a table cell, ``n/a`` without runs to compare."""
    return f"{welch_p(ours.to_numpy(), theirs.to_numpy(), 'less'):.3f}" if len(theirs) else "n/a"


def summary(values: pd.Series) -> str:
    """``mean ± std (n)``, or ``n/a``."""
    return f"{values.mean():.1f} ± {values.std(ddof=1):.1f} ({len(values)})" if len(values) else "n/a"


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


#: issue 44's confirmation (RULE.md, 23:06 UTC): benchmark seeds 0-4 at 1M, the peers beside the choice
ROUND4_CONFIRM_SEEDS = (0, 1, 2, 3, 4)
#: its tasks in the order they run (RULE.md's addendum of 2026-12-08: the shortfalls first, Humanoid-v5 the longest last)
ROUND4_CONFIRM_TASKS = (
    "Ant-v5",
    "Hopper-v5",
    "HalfCheetah-v5",
    "Swimmer-v5",
    "Walker2d-v5",
    "InvertedDoublePendulum-v5",
    "Reacher-v5",
    "Pusher-v5",
    "Humanoid-v5",
)
ROUND4_PEERS = ("sb3_contrib", "sb3_ppo")


def round4_confirmation(runs: pd.DataFrame, chosen: str) -> str:
    """
    Issue 44's confirmation: per task (once all five seeds of the three one-liners are in) each one-liner's
    mean ± std, the tuned entry, the choice's share of it (target 85%; HalfCheetah's worst seed too, target 60%) and
    Welch's one-sided p that the choice is below each peer; then rliable's IQM over the complete tasks, of scores
    normalized per task between the random policy and the best one-liner's mean, with 95% bootstrap intervals.
    """
    from benchmarks.common.stats import iqm_intervals

    tuned = tuned_entries()
    bench = runs[runs.seed.isin(ROUND4_CONFIRM_SEEDS) & (runs.steps == 1_000_000)]
    configs = (chosen, *ROUND4_PEERS)
    header = [
        "task",
        *(f"`{c}`" for c in configs),
        "tuned entry",
        "share of tuned",
        *(f"p(below `{c}`)" for c in ROUND4_PEERS),
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    scores: dict[str, list[np.ndarray]] = {c: [] for c in configs}
    missing = []
    for task in ROUND4_CONFIRM_TASKS:
        values = {}
        for config in configs:
            rows = bench[(bench.config == config) & (bench.env == task)].sort_values("seed")
            values[config] = rows.final_mean if set(ROUND4_CONFIRM_SEEDS) <= set(rows.seed) else None
        if any(v is None for v in values.values()):
            missing.append(task)
            continue
        complete = {c: v for c, v in values.items() if v is not None}
        entry = tuned[tuned.env == task].final_mean
        share = complete[chosen].mean() / entry.mean() if len(entry) else float("nan")
        cell = (
            "n/a (no tuned entry)" if np.isnan(share) else f"{share:.0%}" + (" (met)" if share >= 0.85 else " (**below 85%**)")
        )
        if task.startswith("HalfCheetah") and len(entry):
            worst = complete[chosen].min() / entry.mean()
            cell += f"; worst seed {worst:.0%}" + (" (met)" if worst >= 0.60 else " (**below 60%**)")
        lines.append(
            f"| {task} | "
            + " | ".join([*(summary(complete[c]) for c in configs), summary(entry), cell])
            + " | "
            + " | ".join(p_below(complete[chosen], complete[c]) for c in ROUND4_PEERS)
            + " |"
        )
        best = max(v.mean() for v in complete.values())
        for config in configs:
            scores[config].append((complete[config].to_numpy() - RANDOM[task]) / (best - RANDOM[task]))
    text = "\n".join(lines)
    if missing:
        text += "\n\nNot complete yet (reported once all five seeds of the three are in): " + ", ".join(missing) + "."
    if scores[chosen]:
        points, intervals = iqm_intervals({c: np.stack(scores[c], axis=1) for c in configs})
        n_tasks = len(scores[chosen])
        text += (
            f"\n\nIQM over the {n_tasks} complete task(s) (score 1: the best one-liner's mean on the task), "
            "95% stratified-bootstrap interval: "
            + "; ".join(f"`{c}` {points[c][0]:.2f} [{intervals[c][0, 0]:.2f}, {intervals[c][1, 0]:.2f}]" for c in configs)
            + "."
        )
    return text


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
