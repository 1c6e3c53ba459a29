"""Round 4 of RULE.md (issue 44): the wider screening's candidates, stage 1's survivors, stage 2's choice and the
confirmation of the choice on benchmark seeds beside sb3-contrib's and SB3 PPO's one-liners."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.defaults.oneliner import BEFORE_ROUND4, merged_arguments
from benchmarks.defaults.scoring import CLASSIC, RANDOM, p_below, scores_table, screening, summary, tuned_entries

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
    if not scores[chosen]:
        return "No task is complete yet (a row once all five seeds of the three are in): " + ", ".join(missing) + "."
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
