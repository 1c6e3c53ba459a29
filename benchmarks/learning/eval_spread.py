"""How much of a run's final score is the draw of its 10 evaluation episodes?

Usage::

    python -m benchmarks.learning.eval_spread results/trpo_plus/Pendulum-v1/seed0
    python -m benchmarks.learning.eval_spread <run id> ... --episodes 200 --seed 12345

For each finished run (named by its ``run`` id in ``data/runs.csv`` or ``data/sweep_runs.csv``), loads the
final model the run saved in ``runs/`` (with its ``VecNormalize`` statistics when the task normalizes, frozen)
and evaluates it deterministically on ``--episodes`` fresh episodes (start states from ``--seed``). Prints the
run's recorded final score, the policy's mean over the fresh episodes, and the 5th-95th percentile of the mean
of 10 episodes drawn from them: the range a 10-episode score of the *same policy* spans by the luck of the
start states. With ``--flipped`` (planar MuJoCo walkers such as HalfCheetah, whose ``qpos[2]`` is the torso's
pitch), it also gives the fraction of steps the torso spends upside down (|pitch| > 90 degrees): HalfCheetah's
well-known poor local optimum is running on its back."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.learning.run import scratch_dir
from benchmarks.learning.store import find_run


def saved_model(result: dict) -> tuple[Path, Path | None]:
    """The run's final model and VecNormalize statistics, as ``manager.save_trained_model`` wrote them."""
    zoo = scratch_dir(result["algo"], result["env"], result["seed"], result.get("tag") or "") / "zoo"
    models = sorted(zoo.glob(f"*/{result['env']}_*/{result['env']}.zip"), key=lambda p: p.stat().st_mtime)
    if not models:
        raise SystemExit(f"no saved model under {zoo} (runs/ is scratch space: was it cleaned?)")
    model = models[-1]
    stats = model.parent / result["env"] / "vecnormalize.pkl"
    return model, stats if stats.exists() else None


def run_env(result: dict, n_envs: int, seed: int, stats: Path | None = None, frozen: bool = True) -> Any:
    """The run's env stack as the Zoo built it: its entry's wrapper (e.g. Ant-v5's DropContactForces) and
    env_kwargs, then, with ``stats``, its VecNormalize statistics; ``frozen`` (for evaluation): not updated,
    and the rewards left raw."""
    import rl_zoo3.import_envs  # noqa: F401
    from rl_zoo3.utils import get_wrapper_class
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    hyperparams = result.get("hyperparams") or {}
    env = make_vec_env(
        result["env"],
        n_envs=n_envs,
        seed=seed,
        wrapper_class=get_wrapper_class(hyperparams),
        env_kwargs=hyperparams.get("env_kwargs"),
    )
    if stats is None:
        return env
    normalized = VecNormalize.load(str(stats), env)
    if frozen:
        normalized.training, normalized.norm_reward = False, False
    return normalized


def algo_class(algo: str) -> Any:
    """The class that trains a benchmark ``algo`` (``run.py --algo``), to load its saved models."""
    if algo == "sb3_contrib_trpo":
        from sb3_contrib import TRPO

        return TRPO
    from sb3_trpo_plus import TRPOPlus

    return TRPOPlus


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="ids of finished runs (results/<algo>/<env>/seed<k>, sweeps/...)")
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--seed", type=int, default=12345, help="seed of the fresh evaluation episodes")
    parser.add_argument("--flipped", action="store_true", help="also: fraction of steps with the torso upside down")
    args = parser.parse_args()

    import torch as th
    from stable_baselines3.common.evaluation import evaluate_policy

    th.set_num_threads(1)
    rng = np.random.default_rng(0)
    extra = " upside down (% of steps) |" if args.flipped else ""
    print("| run | recorded final (10 ep.) | mean of fresh episodes | 10-episode mean, 5th-95th percentile |" + extra)
    print("|---|---|---|---|" + ("---|" if args.flipped else ""))
    for name in args.runs:
        result = find_run(name)
        model_path, stats_path = saved_model(result)
        env = run_env(result, n_envs=1, seed=args.seed, stats=stats_path)
        base = env.unwrapped  # the DummyVecEnv under VecNormalize
        if args.flipped and not hasattr(base.envs[0].unwrapped, "data"):
            raise SystemExit(f"--flipped needs a MuJoCo task (its torso pitch in data.qpos[2]); {result['env']} is not")
        pitch_over: list[bool] = []

        def watch(locals_: dict, globals_: dict, base=base, pitch_over=pitch_over) -> None:
            pitch_over.append(bool(abs(base.envs[0].unwrapped.data.qpos[2]) > np.pi / 2))

        model = algo_class(result["algo"]).load(model_path, env=env, device="cpu")
        episode_returns, _ = evaluate_policy(
            model,
            env,
            n_eval_episodes=args.episodes,
            deterministic=True,
            return_episode_rewards=True,
            callback=watch if args.flipped else None,
        )
        returns = np.asarray(episode_returns, dtype=float)
        tens = rng.choice(returns, size=(10_000, 10)).mean(axis=1)
        low, high = np.percentile(tens, [5, 95])
        print(
            f"| {result['run']} | {result['final_eval']['mean']:.1f} | {returns.mean():.1f} ({args.episodes} ep.) | "
            f"{low:.1f} to {high:.1f} |" + (f" {100 * np.mean(pitch_over):.0f} |" if args.flipped else ""),
            flush=True,
        )
        env.close()


if __name__ == "__main__":
    main()
