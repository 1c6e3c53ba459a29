"""Side-by-side benchmark of the policy families: RecurrentTRPOPlus vs RecurrentPPO, MaskableTRPOPlus vs MaskablePPO.

Protocol (fixed before any run; the same for both algorithms of a task):

- Tasks (:data:`TASKS`): ``CartPoleNoVel-v1``, ``PendulumNoVel-v1``, ``MountainCarContinuousNoVel-v0`` (rl_zoo3's
  velocity-masked envs) with the RL Zoo's ``ppo_lstm`` entry for RecurrentPPO (rl_zoo3 2.9.2) and the shipped
  ``trpo_plus_lstm`` entry for RecurrentTRPOPlus (same env stack: ``n_envs``, ``normalize``, ``gamma``,
  ``gae_lambda``, ``policy_kwargs``, budget); ``InvalidActionEnvDiscrete`` (dim 40, 30 actions invalid per state)
  and ``InvalidActionEnvMultiDiscrete`` (dims [5, 5, 5], 9 invalid) from sb3-contrib (the ids of
  ``sb3_trpo_plus.zoo.MASKED_ENVS``), 50k steps, one env, MaskablePPO with its defaults (the Zoo has no
  ``ppo_mask`` entry) and MaskableTRPOPlus with the shipped ``trpo_plus_mask`` entry.
- Issue 41's tasks (:data:`DERIVED_TASKS`): the other ``ppo_lstm.yml`` tasks with a ``trpo_plus_lstm`` entry derived
  by ``LSTM_ENTRIES.md``'s rule, against RecurrentPPO with its ``ppo_lstm`` entry (for ``LunarLander*NoVel-v3`` the
  ``-v2`` entry); their queue is in ``LSTM_ENTRIES.md``. ``CarRacing-v3`` is not here (its Zoo stack has wrappers and
  a frame stack this script does not build): the Zoo runs it.
- Benchmark seeds 0-4 (never used for tuning); every run to its full budget (no early stopping), one torch thread.
  The budget is the entry's ``n_timesteps``, at most :data:`BUDGET_CAP` (1M): a task whose entry has more is run to
  1M and marked so in ``RESULTS.md``.
- Final score: mean return of 10 deterministic episodes on a separate eval env (its ``VecNormalize`` statistics a
  frozen copy of the training ones; masked tasks evaluated with masks, ``sb3_contrib``'s ``evaluate_policy``).
- Learning curve: mean return of the last 20 training episodes at every rollout's end.
- Side check (``--mlp``): TRPOPlus with a feed-forward ``MlpPolicy`` (``trpo_plus_mlp``) on ``CartPoleNoVel-v1`` with
  the ``trpo_plus_lstm`` entry's settings minus the LSTM, to show what memory adds; reported on its own line.

Comparison rule, per task, on the final scores of the seeds both algorithms finished:
``beats`` if TRPO's mean is higher and Welch's two-sided t-test gives p < 0.05; ``falls short`` if lower with
p < 0.05; ``matches`` otherwise (no difference detectable with these seeds). The aim is ``matches`` or ``beats`` on
every task. Wall time and process CPU time per run are reported beside the returns (the CPU is shared: wall times are
inflated and noisy).

Rows are appended to ``results.csv`` (one per run; a (task, algo, seed) already there is skipped, so the script
resumes; ``--rerun-trpo`` runs TRPOPlus's again after its entry changed, and the report reads each seed's last
row), curves to ``curves.jsonl.gz`` (one gzip member per run). ``--report`` writes ``RESULTS.md``.

Usage: ``OMP_NUM_THREADS=1 nice -n 19 python -m benchmarks.families.run --tasks CartPoleNoVel-v1 --seeds 0 1 2 3 4``
(without ``--tasks``: the first five tasks, not issue 41's). A tuning candidate (tuning seeds 100-199, its own table):
``python -m benchmarks.families.run --tasks PendulumNoVel-v1 --seeds 100 101 --label ns256 --set n_steps=256 --table
benchmarks/families/tuning.csv``.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import math
import platform
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common.provenance import provenance
from benchmarks.common.stats import welch_p
from benchmarks.common.table import append_row
from benchmarks.common.zoo import zoo_entries
from benchmarks.families.lstm_rule import ppo_lstm_entry

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results.csv"
CURVES = HERE / "curves.jsonl.gz"
REPORT = HERE / "RESULTS.md"
EVAL_EPISODES = 10
#: the most steps a run takes (the entries of larger budgets are cut to it; ``RESULTS.md`` marks them)
BUDGET_CAP = 1_000_000


def _lstm_kwargs(hidden: int, **extra: Any) -> dict[str, Any]:
    from torch import nn

    return {"ortho_init": False, "activation_fn": nn.ReLU, "lstm_hidden_size": hidden, "enable_critic_lstm": True,
            "net_arch": {"pi": [64], "vf": [64]}, **extra}  # fmt: skip


def _zoo_entry(algo: str, env_id: str) -> dict[str, Any]:
    """The Zoo's (``ppo_lstm``; for a ``-v3`` successor its ``-v2`` entry) or the shipped (``trpo_plus_lstm``,
    ``trpo_plus_mask``) hyperparameter entry."""
    if algo == "ppo_lstm":
        return ppo_lstm_entry(env_id)
    return dict(zoo_entries(algo)[env_id])


def _budget(entry: dict[str, Any]) -> int:
    """The steps of a run: the entry's ``n_timesteps``, at most :data:`BUDGET_CAP`."""
    return min(int(entry["n_timesteps"]), BUDGET_CAP)


def _constructor_args(entry: dict[str, Any], overrides: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split a Zoo entry, with ``overrides`` of its keys (a tuning candidate's), into env settings and constructor
    arguments (``lin_`` schedules and policy_kwargs parsed)."""
    from rl_zoo3.utils import linear_schedule
    from torch import nn  # noqa: F401  (policy_kwargs strings name nn.ReLU)

    entry = {**entry, **(overrides or {})}

    env_keys = ("n_envs", "normalize", "n_timesteps")
    unbuilt = [key for key in ("env_wrapper", "frame_stack", "vec_env_wrapper", "env_kwargs") if key in entry]
    if unbuilt or isinstance(entry.get("normalize"), str):
        raise ValueError(f"run.py builds no {unbuilt or 'normalize kwargs'}: run this task with python -m rl_zoo3.train")
    env = {key: entry.pop(key) for key in env_keys if key in entry}
    for key, value in list(entry.items()):
        if isinstance(value, str) and value.startswith("lin_"):
            entry[key] = linear_schedule(float(value[4:]))
    if isinstance(entry.get("policy_kwargs"), str):
        entry["policy_kwargs"] = eval(entry["policy_kwargs"])  # the Zoo's own format: a Python dict expression
    return env, entry


def _recurrent_run(
    algo: str, env_id: str, seed: int, overrides: dict[str, Any] | None = None
) -> tuple[Any, Any, int, Callable[[Any], tuple[float, float]]]:
    import rl_zoo3.import_envs  # noqa: F401  (registers the NoVel envs)
    from sb3_contrib import RecurrentPPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.vec_env import VecNormalize

    from sb3_trpo_plus import RecurrentTRPOPlus

    entry = _zoo_entry("trpo_plus_lstm" if algo == "trpo_plus_mlp" else algo, env_id)
    env_settings, kwargs = _constructor_args(entry, overrides)
    if algo == "trpo_plus_mlp":  # the same settings without the LSTM
        kwargs["policy"] = "MlpPolicy"
        for key in ("lstm_hidden_size", "enable_critic_lstm", "shared_lstm", "n_lstm_layers"):
            kwargs.get("policy_kwargs", {}).pop(key, None)
    env = make_vec_env(env_id, n_envs=int(env_settings.get("n_envs", 1)), seed=seed)
    normalize = env_settings.get("normalize", False)
    if normalize:
        env = VecNormalize(env, gamma=kwargs.get("gamma", 0.99))
    from sb3_trpo_plus import TRPOPlus

    cls = {"trpo_plus_lstm": RecurrentTRPOPlus, "ppo_lstm": RecurrentPPO, "trpo_plus_mlp": TRPOPlus}[algo]
    policy = kwargs.pop("policy")
    model = cls(policy, env, seed=seed, device="cpu", **kwargs)

    def evaluate(model: Any) -> tuple[float, float]:
        eval_env = make_vec_env(env_id, n_envs=1, seed=seed + 10_000)
        if normalize:
            eval_env = VecNormalize(eval_env, training=False, norm_reward=False, gamma=kwargs.get("gamma", 0.99))
            eval_env.obs_rms = model.get_env().obs_rms.copy()
        mean, std = evaluate_policy(model, eval_env, n_eval_episodes=EVAL_EPISODES, deterministic=True, warn=False)
        return float(mean), float(std)  # type: ignore[arg-type]  # a float each without return_episode_rewards

    return model, env, _budget(env_settings), evaluate


def _masked_run(
    algo: str, env_id: str, seed: int, overrides: dict[str, Any] | None = None
) -> tuple[Any, Any, int, Callable[[Any], tuple[float, float]]]:
    from sb3_contrib import MaskablePPO
    from sb3_contrib.common.maskable.evaluation import evaluate_policy
    from stable_baselines3.common.env_util import make_vec_env

    from sb3_trpo_plus import MaskableTRPOPlus
    from sb3_trpo_plus.zoo import register_masked_envs

    register_masked_envs()
    env = make_vec_env(env_id, n_envs=1, seed=seed)
    env_settings, kwargs = _constructor_args(_zoo_entry("trpo_plus_mask", env_id), overrides)
    if algo == "trpo_plus_mask":
        model: Any = MaskableTRPOPlus(kwargs.pop("policy"), env, seed=seed, device="cpu", **kwargs)
    else:
        model = MaskablePPO("MlpPolicy", env, seed=seed, device="cpu")

    def evaluate(model: Any) -> tuple[float, float]:
        eval_env = make_vec_env(env_id, n_envs=1, seed=seed + 10_000)
        mean, std = evaluate_policy(model, eval_env, n_eval_episodes=EVAL_EPISODES, deterministic=True, warn=False)
        return float(mean), float(std)  # type: ignore[arg-type]  # a float each without return_episode_rewards

    return model, env, _budget(env_settings), evaluate


#: task -> (TRPO algo, PPO algo, builder)
TASKS: dict[str, tuple[str, str, Callable[..., Any]]] = {
    "CartPoleNoVel-v1": ("trpo_plus_lstm", "ppo_lstm", _recurrent_run),
    "InvalidActionEnvDiscrete-v0": ("trpo_plus_mask", "ppo_mask", _masked_run),
    "InvalidActionEnvMultiDiscrete-v0": ("trpo_plus_mask", "ppo_mask", _masked_run),
    "PendulumNoVel-v1": ("trpo_plus_lstm", "ppo_lstm", _recurrent_run),
    "MountainCarContinuousNoVel-v0": ("trpo_plus_lstm", "ppo_lstm", _recurrent_run),
}
FIRST_TASKS = tuple(TASKS)
#: issue 41's tasks: trpo_plus_lstm entries derived by LSTM_ENTRIES.md's rule (CarRacing-v3 aside: the Zoo runs it)
DERIVED_TASKS = (
    "Acrobot-v1",
    "MountainCarNoVel-v0",
    "LunarLanderNoVel-v3",
    "LunarLanderContinuousNoVel-v3",
    "BipedalWalker-v3",
    "BipedalWalkerHardcore-v3",
    "Swimmer-v4",
    "Hopper-v4",
    "HalfCheetah-v4",
    "Walker2d-v4",
    "Ant-v4",
    "Humanoid-v4",
)
TASKS.update(dict.fromkeys(DERIVED_TASKS, ("trpo_plus_lstm", "ppo_lstm", _recurrent_run)))


def _done(table: Path = RESULTS) -> set[tuple[str, str, int]]:
    if not table.exists():
        return set()
    with open(table) as file:
        return {(row["task"], row["algo"], int(row["seed"])) for row in csv.DictReader(file)}


def run_one(
    task: str, algo: str, seed: int, overrides: dict[str, Any] | None = None, label: str | None = None, table: Path = RESULTS
) -> dict[str, Any]:
    """One run to the entry's budget (with ``overrides`` of its keys: a tuning candidate, recorded as
    ``algo:label`` in ``table``), its final score and learning curve recorded."""
    import torch as th
    from stable_baselines3.common.callbacks import BaseCallback

    th.set_num_threads(1)
    builder = TASKS[task][2]
    model, _, budget, evaluate = builder(algo, task, seed, overrides)
    curve: list[tuple[int, float]] = []

    class Curve(BaseCallback):
        def _on_step(self) -> bool:
            return True

        def _on_rollout_end(self) -> None:
            episodes = list(self.model.ep_info_buffer or [])[-20:]
            if episodes:
                curve.append((self.num_timesteps, float(np.mean([info["r"] for info in episodes]))))

    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    wall, cpu = time.perf_counter(), time.process_time()
    model.learn(budget, callback=Curve())
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    mean, std = evaluate(model)
    name = f"{algo}:{label}" if label else algo
    row = {"task": task, "algo": name, "seed": seed, "timesteps": model.num_timesteps, "final_return": round(mean, 3),
           "final_return_std": round(std, 3), "eval_episodes": EVAL_EPISODES, "wall_s": round(wall, 1),
           "cpu_s": round(cpu, 1), "started_utc": started, "commit": provenance().code_rev}  # fmt: skip
    append_row(table, row)
    if table == RESULTS:
        with gzip.open(CURVES, "at") as file:
            file.write(json.dumps({"task": task, "algo": algo, "seed": seed, "curve": curve}) + "\n")
    return row


def _curve_means() -> dict[tuple[str, str, int], float]:
    """Mean of each run's learning curve (last one recorded per task, algo and seed)."""
    means: dict[tuple[str, str, int], float] = {}
    if CURVES.exists():
        with gzip.open(CURVES, "rt") as file:
            for line in file:
                run = json.loads(line)
                if run["curve"]:
                    means[(run["task"], run["algo"], int(run["seed"]))] = float(np.mean([r for _, r in run["curve"]]))
    return means


def _speed_section() -> list[str]:
    """The recurrent family's speed beside RecurrentPPO's, side by side (``speed.py``), where ``speed.csv`` exists:
    the wall times of the table above were taken at other times, on a shared machine."""
    import pandas as pd

    from benchmarks.families.speed import TABLE, summary

    if not TABLE.exists():
        return []
    table = summary(pd.read_csv(TABLE))
    lines = [
        "",
        "Speed, side by side (`python -m benchmarks.families.speed`: `learn` alternating in one process, one thread, "
        "each with its entry): CPU seconds per 1,000 steps, median over the repeats.",
        "",
        "| task | RecurrentPPO | RecurrentTRPOPlus | ratio |",
        "|---|---|---|---|",
    ]
    for task, row in table.iterrows():
        cpu = row["cpu_s_per_1k"]
        lines.append(f"| {task} | {cpu['ppo_lstm']:.3f} | {cpu['trpo_plus_lstm']:.3f} | {cpu['ratio']:.2f} |")
    return lines


def report() -> None:
    with open(RESULTS) as file:
        rows = list(csv.DictReader(file))

    def cell(values: list[float]) -> str:
        return f"{np.mean(values):.1f} ± {np.std(values, ddof=1) if len(values) > 1 else 0:.1f} ({len(values)})"

    lines = [
        "# Policy families: TRPOPlus variants against the PPO variants",
        "",
        f"Generated by `python -m benchmarks.families.run --report` from {len(rows)} runs in `results.csv`; protocol and "
        "comparison rule in the docstring of `run.py` (benchmark seeds 0-4, final score = mean return of 10 "
        "deterministic episodes; Welch's t-test, p < 0.05). Cells: mean ± sample std (seeds).",
        "",
        f"Machine: {platform.processor() or platform.machine()}, shared CPU (wall times inflated).",
        "",
        "| task | steps | PPO variant | TRPOPlus variant | Welch p | verdict | wall / CPU per run (min), PPO; TRPO |",
        "|---|---|---|---|---|---|---|",
    ]
    curves = _curve_means()
    speed = [
        "",
        "Learning speed (descriptive, not part of the rule): mean training return over the whole run (the area under "
        "the learning curve divided by its length; higher means it learned sooner), mean ± std over the same seeds.",
        "",
        "| task | PPO variant | TRPOPlus variant |",
        "|---|---|---|",
    ]
    for task, (trpo, ppo, _) in TASKS.items():
        by = {algo: {int(r["seed"]): r for r in rows if r["task"] == task and r["algo"] == algo} for algo in (trpo, ppo)}
        seeds = sorted(set(by[trpo]) & set(by[ppo]))
        if not seeds:
            continue
        score = {algo: [float(by[algo][s]["final_return"]) for s in seeds] for algo in (trpo, ppo)}

        def cost(runs: dict[int, dict[str, str]], seeds: list[int]) -> str:
            wall = np.mean([float(runs[s]["wall_s"]) for s in seeds]) / 60
            cpu = np.mean([float(runs[s]["cpu_s"]) for s in seeds]) / 60
            return f"{wall:.1f} / {cpu:.1f}"

        p = welch_p(score[trpo], score[ppo])  # two-sided
        diff = np.mean(score[trpo]) - np.mean(score[ppo])
        verdict = "matches" if p >= 0.05 else ("beats" if diff > 0 else "falls short")
        verdict = "too few seeds" if math.isnan(p) else verdict
        steps = f"{int(by[trpo][seeds[0]]['timesteps']):,}"
        zoo_budget = int(_zoo_entry(trpo, task)["n_timesteps"])
        steps += f" (cap; Zoo {zoo_budget:.0e})" if zoo_budget > BUDGET_CAP else ""
        lines.append(
            f"| {task} | {steps} | {cell(score[ppo])} | {cell(score[trpo])} | {p:.3f} | {verdict} | "
            f"{cost(by[ppo], seeds)}; {cost(by[trpo], seeds)} |"
        )
        area = {algo: [curves[(task, algo, s)] for s in seeds if (task, algo, s) in curves] for algo in (trpo, ppo)}
        if area[trpo] and area[ppo]:
            speed.append(f"| {task} | {cell(area[ppo])} | {cell(area[trpo])} |")
    lines += speed
    mlp = [float(r["final_return"]) for r in rows if r["algo"] == "trpo_plus_mlp"]
    if mlp:
        lines += ["", f"Side check, CartPoleNoVel-v1 without memory (TRPOPlus, MlpPolicy, same settings): {cell(mlp)}."]
    lines += ["", f"Runs recorded: {len(rows)}.", *_speed_section()]
    REPORT.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", nargs="+", default=list(FIRST_TASKS), choices=list(TASKS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--report", action="store_true", help="only write RESULTS.md from results.csv")
    parser.add_argument("--mlp", action="store_true", help="only the side check: trpo_plus_mlp on CartPoleNoVel-v1")
    parser.add_argument(
        "--label", help="a tuning candidate: only the TRPOPlus variant runs, recorded in --table as algo:label"
    )
    parser.add_argument("--set", action="append", default=[], metavar="KEY=JSON", help="a key of the entry changed")
    parser.add_argument("--table", type=Path, default=RESULTS, help="where the rows go (tuning: tuning.csv)")
    parser.add_argument(
        "--rerun-trpo",
        action="store_true",
        help="run the TRPOPlus variant again where it has rows (a changed entry; the report reads each seed's last row)",
    )
    args = parser.parse_args()
    if args.label:
        overrides = {key: json.loads(value) for key, value in (item.split("=", 1) for item in args.set)}
        done = _done(args.table)
        for task in args.tasks:
            for seed in args.seeds:
                if (task, f"{TASKS[task][0]}:{args.label}", seed) not in done:
                    print(json.dumps(run_one(task, TASKS[task][0], seed, overrides, args.label, args.table)), flush=True)
        return
    if args.report:
        report()
        return
    done = _done()
    if args.mlp:
        for seed in args.seeds:
            if ("CartPoleNoVel-v1", "trpo_plus_mlp", seed) not in done:
                print(json.dumps(run_one("CartPoleNoVel-v1", "trpo_plus_mlp", seed)), flush=True)
        report()
        return
    for task in args.tasks:
        trpo, ppo, _ = TASKS[task]
        for seed in args.seeds:
            for algo in (trpo, ppo):  # interleaved: whatever finishes, both algorithms have the same seeds
                if (task, algo, seed) in done and not (args.rerun_trpo and algo == trpo):
                    continue
                row = run_one(task, algo, seed)
                print(json.dumps(row), flush=True)
    report()


if __name__ == "__main__":
    main()
