"""Aggregate the learning benchmark's finished runs into a CSV, a markdown report and plots.

Usage::

    python -m benchmarks.learning.report

Reads the benchmark's runs from ``data/runs.csv`` and their learning curves from ``data/curves.csv.gz``
(``store.py``) and writes

* ``results.csv``: one row per run (a rounded digest of ``data/runs.csv``);
* ``RESULTS.md``: mean ± std across seeds of the final deterministic evaluation return per task and
  algorithm, with the number of seeds, per-seed details, wall times, and the aggregate below;
* ``plots/<env>.png``: learning curves (deterministic evaluation return against environment steps),
  the mean across seeds as a line and the min-max range across seeds shaded, both algorithms on one plot;
* ``plots/mujoco_iqm.png`` and a table in ``RESULTS.md``: rliable's interquartile mean (IQM) with 95%
  stratified-bootstrap confidence intervals over the MuJoCo tasks, once an algorithm has at least
  ``--min-seeds`` seeds on at least two MuJoCo tasks (only tasks every such algorithm has are used, and only
  the seeds every algorithm has run on every one of them);
* a table of each task against the project's target (``TARGETS``) and against sb3-contrib, seed by seed, with
  the means over seeds 0-2 alone (every task's seeds until 2026-11-24).

With ``--readme`` the results table (final return per task and algorithm: mean ± std across seeds, and the
number of seeds) is also written into the README, between its ``<!-- learning-results-table -->`` and
``<!-- /learning-results-table -->`` markers; nothing else of the README changes (the targets and the IQM tables
are in ``RESULTS.md``).

Score normalization for the aggregate: ``(score - random) / (reference - random)``, where ``random`` is
the mean return of a uniformly random policy on the same v5 task (10 episodes, computed once and
cached in ``random_scores.json``) and ``reference`` is the TRPO score published in the sb3-contrib
documentation (MuJoCo v3, 1M steps, 3 seeds). A normalized score of 1 means "as good as the published
sb3-contrib TRPO"; the reference is a fixed yardstick, not a target (DESIGN.md section 5 explains why
the v5 numbers differ).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import platform
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common.stats import iqm_intervals
from benchmarks.learning.run import ALGOS, ENVS, MUJOCO
from benchmarks.learning.store import Store

HERE = Path(__file__).resolve().parent
README = HERE.parent.parent / "README.md"
PLOTS = HERE / "plots"
RANDOM_SCORES = HERE / "random_scores.json"

# sb3-contrib documentation, TRPO, MuJoCo v3, 1M steps, 3 seeds (DESIGN.md section 5).
REFERENCE = {"HalfCheetah-v5": 1803.0, "Hopper-v5": 3372.0, "Walker2d-v5": 4502.0, "Swimmer-v5": 359.0, "Ant-v5": 3554.0}
# The project's targets for TRPOPlus (issue 5): the final return's mean over the task's benchmark seeds.
TARGETS = {
    "CartPole-v1": 500.0,
    "Pendulum-v1": -200.0,
    "Acrobot-v1": -85.0,
    "MountainCarContinuous-v0": 90.0,
    "HalfCheetah-v5": 3500.0,
    "Hopper-v5": 3400.0,
    "Walker2d-v5": 4500.0,
    "Swimmer-v5": 350.0,
    "Ant-v5": 4000.0,
}
FIRST_SEEDS = [0, 1, 2]  # every task's benchmark seeds until 2026-11-24
LABELS = {"sb3_contrib_trpo": "sb3_contrib.TRPO (RL Zoo hyperparameters)", "trpo_plus": "TRPOPlus"}
COLORS = {"sb3_contrib_trpo": "tab:blue", "trpo_plus": "tab:orange"}
CSV_FIELDS = [
    "algo",
    "env",
    "seed",
    "final_mean",
    "final_std",
    "final_episodes",
    "train_ep_return_mean_last100",
    "n_timesteps",
    "n_envs",
    "wall_time_s",
    "train_time_s",
    "eval_time_s",
    "cpu_time_s",
    "started_utc",
    "finished_utc",
    "hyperparams_source",
    "git_commit",
    "sb3_trpo_plus_dirty",
    "torch",
    "sb3",
    "sb3_contrib",
    "rl_zoo3",
    "gymnasium",
    "mujoco",
    "cpu",
    "command",
]


def load_runs(store: Store | None = None) -> list[dict[str, Any]]:
    """The benchmark's finished runs (records with their curves), by task, algorithm and seed."""
    runs = (store or Store()).load()
    order = {env: i for i, env in enumerate(ENVS)}
    runs.sort(key=lambda r: (order.get(r["env"], len(order)), r["env"], ALGOS.index(r["algo"]), r["seed"]))
    return runs


def csv_row(run: dict[str, Any]) -> dict[str, Any]:
    v = run["versions"]
    return {
        "algo": run["algo"],
        "env": run["env"],
        "seed": run["seed"],
        "final_mean": round(run["final_eval"]["mean"], 3),
        "final_std": round(run["final_eval"]["std"], 3),
        "final_episodes": run["final_eval"]["n_episodes"],
        "train_ep_return_mean_last100": (
            None if run["train_ep_return_mean_last100"] is None else round(run["train_ep_return_mean_last100"], 3)
        ),
        "n_timesteps": run["timesteps_done"],
        "n_envs": run["n_envs"],
        "wall_time_s": round(run["wall_time_s"], 1),
        "train_time_s": round(run["train_time_s"], 1),
        "eval_time_s": round(run["eval_time_s"], 1),
        "cpu_time_s": round(run["cpu_time_s"], 1) if "cpu_time_s" in run else None,
        "started_utc": run["started_utc"],
        "finished_utc": run["finished_utc"],
        "hyperparams_source": run["hyperparams_source"],
        "git_commit": run["git"]["commit"][:12],
        "sb3_trpo_plus_dirty": run["git"]["sb3_trpo_plus_dirty"],
        "torch": v.get("torch"),
        "sb3": v.get("stable_baselines3"),
        "sb3_contrib": v.get("sb3_contrib"),
        "rl_zoo3": v.get("rl_zoo3"),
        "gymnasium": v.get("gymnasium"),
        "mujoco": v.get("mujoco", ""),
        "cpu": run["machine"]["cpu"],
        "command": run["command"],
    }


def random_scores(envs: list[str], episodes: int = 10) -> dict[str, float]:
    """Mean return of a uniformly random policy, cached in ``random_scores.json``."""
    cache = json.loads(RANDOM_SCORES.read_text()) if RANDOM_SCORES.exists() else {}
    missing = [env for env in envs if env not in cache]
    if missing:
        import gymnasium as gym

        for env_id in missing:
            env = gym.make(env_id)
            env.action_space.seed(0)
            returns = []
            for episode in range(episodes):
                env.reset(seed=episode)
                total, done = 0.0, False
                while not done:
                    _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
                    total += float(reward)
                    done = terminated or truncated
                returns.append(total)
            env.close()
            cache[env_id] = float(np.mean(returns))
        RANDOM_SCORES.write_text(json.dumps(dict(sorted(cache.items())), indent=2) + "\n")
    return {env: cache[env] for env in envs}


def fmt(values: list[float]) -> str:
    if not values:
        return "—"
    std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return f"{np.mean(values):.1f} ± {std:.1f} ({len(values)})"


def plot_groups(groups: dict[str, list[list[dict[str, Any]]]], title: str, out: Path, colors: dict[str, str]) -> None:
    """Learning curves of several groups of runs on one plot: each group's mean across its runs as a line,
    its min-max range shaded. ``groups`` maps a label to the runs' curves (rows with timesteps, eval_mean)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = {label: curves for label, curves in groups.items() if curves}
    many = len(shown) > 6  # sweeps: a legend beside the axes, 20 colors x 3 line styles
    fig, ax = plt.subplots(figsize=(7, 5) if many else (6, 4))
    palette = [plt.get_cmap("tab20")(i) for i in range(20)]
    for i, (label, curves) in enumerate(shown.items()):
        grid = np.array([row["timesteps"] for row in max(curves, key=len)])
        ys = np.array([np.interp(grid, [row["timesteps"] for row in c], [row["eval_mean"] for row in c]) for c in curves])
        color = colors.get(label, palette[i % len(palette)] if many else None)
        style = ("-", "--", ":")[i // len(palette) % 3] if many else "-"
        ax.plot(grid, ys.mean(axis=0), color=color, linestyle=style, label=f"{label}, {len(curves)} seeds")
        if len(curves) > 1:
            ax.fill_between(grid, ys.min(axis=0), ys.max(axis=0), color=color, alpha=0.2 if not many else 0.05, linewidth=0)
    ax.set_title(title)
    ax.set_xlabel("environment steps")
    ax.set_ylabel("deterministic evaluation return")
    ax.grid(alpha=0.3)
    if many:  # beside the axes; the saved image grows to hold it (bbox_inches) instead of the axes shrinking
        ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0), ncol=1 + len(shown) // 45)
    else:
        ax.legend(fontsize=8)
        fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100, bbox_inches="tight" if many else None)
    plt.close(fig)


def plot_curves(runs: list[dict[str, Any]], envs: list[str]) -> list[str]:
    written = []
    colors = {LABELS[algo]: COLORS[algo] for algo in ALGOS}
    for env in envs:
        groups = {LABELS[a]: [r["curve"] for r in runs if r["env"] == env and r["algo"] == a] for a in ALGOS}
        out = PLOTS / f"{env}.png"
        plot_groups(groups, env, out, colors)
        written.append(out.name)
    return written


def seed_list(seeds: list[int]) -> str:
    """``[0, 1, 2, 3]`` -> ``"0-3"``; ``[0, 1, 3]`` -> ``"0, 1, 3"``."""
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"{seeds[0]}-{seeds[-1]}"
    return ", ".join(map(str, seeds))


def iqm_aggregate(runs: list[dict[str, Any]], min_seeds: int) -> tuple[list[str], list[str]]:
    """rliable IQM over the MuJoCo tasks: markdown lines and the tasks used (empty if not enough runs)."""
    seeds: dict[str, dict[str, dict[int, float]]] = {}
    for r in runs:
        if r["env"] in MUJOCO:
            seeds.setdefault(r["algo"], {}).setdefault(r["env"], {})[r["seed"]] = r["final_eval"]["mean"]
    eligible = {
        algo: {env for env, by_seed in per_env.items() if len(by_seed) >= min_seeds} for algo, per_env in seeds.items()
    }
    eligible = {algo: envs for algo, envs in eligible.items() if len(envs) >= 2}
    if not eligible:
        return [f"Not enough runs yet (needs ≥ {min_seeds} seeds on ≥ 2 MuJoCo tasks for an algorithm)."], []
    tasks = [env for env in MUJOCO if all(env in envs for envs in eligible.values())]
    if len(tasks) < 2:
        return ["The algorithms with enough runs share fewer than 2 MuJoCo tasks: no aggregate yet."], []

    # The seeds every algorithm has run on every task used: the same runs per task for all of them (rliable's
    # score matrices are runs x tasks), and more than min_seeds once a further seed has finished everywhere.
    common = sorted(set.intersection(*(set(seeds[algo][env]) for algo in eligible for env in tasks)))
    if len(common) < min_seeds:
        return [f"Fewer than {min_seeds} seeds shared by every algorithm and MuJoCo task: no aggregate yet."], []
    rand = random_scores(tasks)
    scores = {}
    for algo in eligible:
        columns = []
        for env in tasks:
            values = [seeds[algo][env][s] for s in common]
            columns.append([(v - rand[env]) / (REFERENCE[env] - rand[env]) for v in values])
        scores[algo] = np.array(columns).T  # (runs, tasks)
    points, intervals = iqm_intervals(scores, reps=2000, seed=0)  # fixed seed: the same runs, the same intervals
    lines = [
        f"Tasks: {', '.join(tasks)}; seeds {seed_list(common)} of each (those every algorithm has run on every task);"
        " normalized score = (score - random) / (reference - random).",
        "",
        "| algorithm | IQM [95% CI] | median [95% CI] | mean [95% CI] |",
        "|---|---|---|---|",
    ]
    for algo in scores:
        cells = [f"{points[algo][i]:.3f} [{intervals[algo][0][i]:.3f}, {intervals[algo][1][i]:.3f}]" for i in range(3)]
        lines.append(f"| {LABELS[algo]} | " + " | ".join(cells) + " |")
    lines += ["", "| task | random policy | reference (sb3-contrib docs, v3) |", "|---|---|---|"]
    lines += [f"| {env} | {rand[env]:.1f} | {REFERENCE[env]:.0f} |" for env in tasks]

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.6 * len(scores)))
    for i, algo in enumerate(scores):
        low, high = intervals[algo][0][0], intervals[algo][1][0]
        ax.barh(i, high - low, left=low, color=COLORS[algo], alpha=0.5, height=0.6)
        ax.plot([points[algo][0]] * 2, [i - 0.3, i + 0.3], color="k")
    ax.set_yticks(range(len(scores)), [LABELS[a] for a in scores], fontsize=8)
    ax.set_xlabel("IQM of normalized score (1 = sb3-contrib docs TRPO), 95% CI")
    ax.set_title(f"MuJoCo v5, {len(tasks)} tasks x {len(common)} seeds")
    fig.tight_layout()
    PLOTS.mkdir(exist_ok=True)
    fig.savefig(PLOTS / "mujoco_iqm.png", dpi=100)
    plt.close(fig)
    lines += ["", "![MuJoCo IQM](plots/mujoco_iqm.png)"]
    return lines, tasks


def finals_by_seed(runs: list[dict[str, Any]], algo: str, env: str) -> dict[int, float]:
    return {r["seed"]: r["final_eval"]["mean"] for r in runs if r["env"] == env and r["algo"] == algo}


def targets_table(runs: list[dict[str, Any]], envs: list[str]) -> list[str]:
    """Markdown: each task's target, both algorithms' means, the seed-by-seed comparison and seeds 0-2 alone.

    The target is judged on TRPOPlus's mean over all its seeds; "not below sb3-contrib" on the seeds both have run.
    """
    plus, base = "trpo_plus", "sb3_contrib_trpo"
    lines = [
        "| task | target (TRPOPlus mean) | TRPOPlus | sb3_contrib.TRPO | TRPOPlus ahead, seed by seed "
        "| seeds 0-2 only: TRPOPlus / sb3-contrib | target | not below sb3-contrib |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for env in envs:
        ours, theirs = finals_by_seed(runs, plus, env), finals_by_seed(runs, base, env)
        if not ours or not theirs:
            continue
        shared = sorted(set(ours) & set(theirs))
        ahead = sum(ours[k] > theirs[k] for k in shared)
        ties = sum(ours[k] == theirs[k] for k in shared)
        ahead_text = f"{ahead} of {len(shared)}" + (f" ({ties} tied)" if ties else "")
        first = [k for k in FIRST_SEEDS if k in ours and k in theirs]
        target = TARGETS.get(env)
        first_text = "—"
        if first:
            first_ours = float(np.mean([ours[k] for k in first]))
            below = " (below target)" if target is not None and first_ours < target else ""
            first_text = f"{first_ours:.1f}{below} / {np.mean([theirs[k] for k in first]):.1f}"
        mean_ours, mean_theirs = float(np.mean(list(ours.values()))), float(np.mean(list(theirs.values())))
        target_text = "—" if target is None else ("met" if mean_ours >= target else "**missed**")
        # against sb3-contrib on the seeds both have run (the same seeds, once both queues are done)
        not_below = np.mean([ours[k] for k in shared]) >= np.mean([theirs[k] for k in shared])
        lines.append(
            f"| {env} | {'—' if target is None else f'≥ {target:g}'} | {mean_ours:.1f} ({len(ours)}) "
            f"| {mean_theirs:.1f} ({len(theirs)}) | {ahead_text} | {first_text} | {target_text} "
            f"| {'yes' if not_below else '**no**'} |"
        )
    return lines


def report_envs(runs: list[dict[str, Any]]) -> list[str]:
    """The tasks that have runs: the benchmark's in its order, then any other."""
    envs = [env for env in ENVS if any(r["env"] == env for r in runs)]
    return envs + sorted({r["env"] for r in runs} - set(envs))


def results_table(runs: list[dict[str, Any]], envs: list[str]) -> list[str]:
    """Markdown: per task, the step budget and each algorithm's final return, mean ± sample std across seeds
    (number of seeds). The README's results table; ``RESULTS.md``'s adds the run times."""
    lines = ["| task | steps | " + " | ".join(LABELS[a] for a in ALGOS) + " |", "|---|---|" + "---|" * len(ALGOS)]
    for env in envs:
        steps = sorted({r["timesteps_done"] for r in runs if r["env"] == env})
        cells = [fmt([r["final_eval"]["mean"] for r in runs if r["env"] == env and r["algo"] == algo]) for algo in ALGOS]
        lines.append(f"| {env} | {', '.join(f'{s:,}' for s in steps)} | " + " | ".join(cells) + " |")
    return lines


def update_readme(blocks: dict[str, list[str]], readme: Path = README) -> None:
    """Replace the lines between each ``<!-- name -->`` / ``<!-- /name -->`` marker pair of the README (and nothing else)."""
    text = readme.read_text()
    for name, lines in blocks.items():
        start, end = f"<!-- {name} -->\n", f"<!-- /{name} -->"
        if start not in text or end not in text:
            print(f"README.md has no {name} markers: not updated")
            continue
        head, rest = text.split(start, 1)
        text = head + start + "\n".join(lines) + "\n" + end + rest.split(end, 1)[1]
        print(f"README.md {name} updated")
    readme.write_text(text)


def write_report(runs: list[dict[str, Any]], out: Path = HERE, min_seeds: int = 3, readme: Path | None = None) -> list[str]:
    """Write ``results.csv``, ``RESULTS.md`` and the plots (``PLOTS``) for ``runs`` into ``out``; with ``readme``,
    its results table too. Returns the README's results table (markdown lines)."""
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows(csv_row(r) for r in runs)

    envs = report_envs(runs)
    plots = plot_curves(runs, envs)
    iqm_lines, _ = iqm_aggregate(runs, min_seeds)

    machines = sorted({f"{r['machine']['cpu']} ({r['machine']['n_cpus']} cores), {r['machine']['platform']}" for r in runs})
    versions = sorted({", ".join(f"{k} {v}" for k, v in r["versions"].items()) for r in runs})
    dates = sorted(r["started_utc"] for r in runs)
    lines = [
        "# Learning benchmark results",
        "",
        f"Generated {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M UTC} by `python -m benchmarks.learning.report` "
        f"from {len(runs)} runs in `data/runs.csv` (see `results.csv` for every run).",
        "",
        "Protocol: RL Zoo env stack and hyperparameters (built by `rl_zoo3`'s `ExperimentManager`), one torch thread, "
        "final score = mean return of 10 deterministic episodes on a separate eval env whose `VecNormalize` "
        "statistics are a frozen copy of the training ones. Table cells: mean ± sample std across seeds "
        "(number of seeds). Queue command: `python -m benchmarks.learning.run_queue --algo <algo>`. "
        "The CPU is shared with other work (sometimes two benchmark runs at once): wall times are inflated and "
        "noisy; the per-process CPU time is the better cost measure (not recorded by the first runs).",
        "",
        f"Runs started between {dates[0] if dates else '—'} and {dates[-1] if dates else '—'}.",
        "",
        "Machines: " + "; ".join(machines) if machines else "Machines: —",
        "",
        "Versions: " + " | ".join(versions) if versions else "Versions: —",
        "",
        "## Final return per task",
        "",
        "| task | steps | " + " | ".join(LABELS[a] for a in ALGOS) + " | wall / CPU time per run (min) |",
        "|---|---|" + "---|" * len(ALGOS) + "---|",
    ]
    # the README's results table: the same rows without the times
    results = results_table(runs, envs)
    for env, row in zip(envs, results[2:], strict=True):
        walls = []
        for algo in ALGOS:
            sel = [r for r in runs if r["env"] == env and r["algo"] == algo]
            if sel:
                cpu = [r["cpu_time_s"] for r in sel if "cpu_time_s" in r]
                cpu_text = f"{np.mean(cpu) / 60:.1f}" if cpu else "—"
                walls.append(f"{algo}: {np.mean([r['wall_time_s'] for r in sel]) / 60:.1f} / {cpu_text}")
        lines.append(row + f" {'; '.join(walls)} |")
    targets = targets_table(runs, envs)
    lines += [
        "",
        "## Against the targets",
        "",
        "Target: the mean final return of TRPOPlus over all of the task's seeds. Seeds 0-2 were every task's "
        "benchmark seeds until 2026-11-24 (now 0-9 for classic control, 0-4 for MuJoCo).",
        "",
        *targets,
    ]
    lines += ["", "## MuJoCo aggregate (rliable)", "", *iqm_lines, "", "## Learning curves", ""]
    lines += [f"![{name[:-4]}](plots/{name})" for name in plots]
    lines += [
        "",
        "## Every run",
        "",
        "| algo | task | seed | final return (10 ep.) | training return (last 100 ep.) | wall time (min) "
        "| CPU time (min) | hyperparameters |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        train = r["train_ep_return_mean_last100"]
        cpu_m = f"{r['cpu_time_s'] / 60:.1f}" if "cpu_time_s" in r else "—"
        lines.append(
            f"| {r['algo']} | {r['env']} | {r['seed']} | {r['final_eval']['mean']:.1f} ± {r['final_eval']['std']:.1f} | "
            f"{'—' if train is None else f'{train:.1f}'} | {r['wall_time_s'] / 60:.1f} | {cpu_m} | {r['hyperparams_source']} |"
        )
    lines += ["", f"Report machine: {platform.platform()}.", ""]
    (out / "RESULTS.md").write_text("\n".join(lines))
    if readme is not None:
        update_readme({"learning-results-table": results}, readme)
    print(f"{len(runs)} runs -> results.csv, RESULTS.md, {len(plots)} plots")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--min-seeds", type=int, default=3, help="seeds per task needed for the IQM aggregate")
    parser.add_argument("--readme", action="store_true", help="also refresh the results table in the README")
    args = parser.parse_args()
    write_report(load_runs(), HERE, args.min_seeds, README if args.readme else None)


if __name__ == "__main__":
    main()
