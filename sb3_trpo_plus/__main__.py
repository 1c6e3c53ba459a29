"""Train TRPOPlus from the command line: ``python -m sb3_trpo_plus --env Pendulum-v1``.

Trains with a progress bar, saves the model, and prints its deterministic evaluation next to that of the
untrained policy. For tuned hyperparameters on many tasks, use the RL Zoo (``--algo trpo_plus``).
"""

from __future__ import annotations

import argparse
import ast
import time
from typing import Any

import torch as th
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

from sb3_trpo_plus.trpo_plus import TRPOPlus

#: env id -> (timesteps, n_envs, hyperparameters): the RL Zoo's TRPO settings for these tasks
PRESETS: dict[str, tuple[int, int, dict[str, Any]]] = {
    "Pendulum-v1": (
        100_000,
        2,
        {"n_steps": 1024, "gamma": 0.9, "n_critic_updates": 15, "use_sde": True, "sde_sample_freq": 4},
    ),
    "CartPole-v1": (
        100_000,
        2,
        {"n_steps": 512, "batch_size": 512, "cg_damping": 1e-3, "gae_lambda": 0.98, "n_critic_updates": 20},
    ),
}


def parse_hyperparams(items: list[str]) -> dict[str, Any]:
    """``["target_kl=0.02", "use_sde=True"]`` -> ``{"target_kl": 0.02, "use_sde": True}``."""
    result: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"error: --hyperparams expects key=value pairs, got {item!r}")
        try:
            result[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            result[key] = value
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sb3_trpo_plus", description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="Pendulum-v1", help="Gymnasium env id (default: Pendulum-v1)")
    parser.add_argument("--timesteps", type=int, default=None, help="training steps (default: per-env preset, or 100000)")
    parser.add_argument("--n-envs", type=int, default=None, help="parallel envs (default: per-env preset, or 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--save-path", default=None, help="where to save the model (default: trpo_plus_<env>.zip)")
    parser.add_argument("--hyperparams", nargs="*", default=[], metavar="KEY=VALUE", help="TRPOPlus arguments")
    parser.add_argument("--no-progress-bar", action="store_true")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (default 1: fastest for small MLPs, and on shared machines)"
    )
    args = parser.parse_args(argv)
    th.set_num_threads(args.threads)

    timesteps, n_envs, hyperparams = PRESETS.get(args.env, (100_000, 1, {}))
    timesteps = args.timesteps if args.timesteps is not None else timesteps
    n_envs = args.n_envs if args.n_envs is not None else n_envs
    hyperparams = {**hyperparams, **parse_hyperparams(args.hyperparams)}
    save_path = args.save_path or f"trpo_plus_{args.env}.zip"

    env = make_vec_env(args.env, n_envs=n_envs, seed=args.seed)
    eval_env = make_vec_env(args.env, n_envs=1, seed=args.seed + 1000)
    model = TRPOPlus("MlpPolicy", env, seed=args.seed, **hyperparams)
    before_mean, before_std = evaluate_policy(model, eval_env, n_eval_episodes=args.eval_episodes, deterministic=True)

    print(f"Training TRPOPlus on {args.env} for {timesteps} steps ({n_envs} envs, {hyperparams or 'defaults'})")
    start = time.perf_counter()
    model.learn(timesteps, progress_bar=not args.no_progress_bar)
    elapsed = time.perf_counter() - start
    model.save(save_path)

    after_mean, after_std = evaluate_policy(model, eval_env, n_eval_episodes=args.eval_episodes, deterministic=True)
    print(f"\nTrained in {elapsed:.0f} s ({timesteps / elapsed:.0f} steps/s); model saved to {save_path}")
    print(f"Mean return over {args.eval_episodes} episodes (deterministic policy):")
    print(f"  untrained: {before_mean:9.1f} +/- {before_std:.1f}")
    print(f"  trained:   {after_mean:9.1f} +/- {after_std:.1f}")
    print(f'Load it with: TRPOPlus.load("{save_path}")')


if __name__ == "__main__":
    main()
