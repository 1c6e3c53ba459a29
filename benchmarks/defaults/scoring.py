"""The one-liner benchmark's scoring, shared by every round of RULE.md: the score s(c,t) of a candidate on a task
(its mean final return between the random policy's and the task's best candidate's), a screening's table and
choice, the tuned Zoo entries (``benchmarks/learning/data/runs.csv``) and the table cells."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.common.stats import welch_p

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
TUNED = ROOT / "benchmarks" / "learning" / "data" / "runs.csv"
RANDOM = {**json.loads((ROOT / "benchmarks" / "learning" / "random_scores.json").read_text()), "Pendulum-v1": -1200.0}
RANDOM["CartPole-v1"] = 22.0
CLASSIC = {"Pendulum-v1": 100_000, "CartPole-v1": 100_000}
SCREEN_SEEDS = (100, 101)
TIE = 0.02


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


def tuned_entries() -> pd.DataFrame:
    data = pd.read_csv(TUNED)
    return data[(data.algo == "trpo_plus") & data.seed.between(0, 9)]


def p_below(ours: pd.Series, theirs: pd.Series) -> str:
    """The one-sided Welch p-value of "ours is below theirs" as a table cell, ``n/a`` without runs to compare."""
    return f"{welch_p(ours.to_numpy(), theirs.to_numpy(), 'less'):.3f}" if len(theirs) else "n/a"


def summary(values: pd.Series) -> str:
    """``mean ± std (n)``, or ``n/a``."""
    return f"{values.mean():.1f} ± {values.std(ddof=1):.1f} ({len(values)})" if len(values) else "n/a"
