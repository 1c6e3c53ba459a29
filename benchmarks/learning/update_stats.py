"""What do a finished run's last updates look like? Continue its saved model for a few updates and print them.

Usage::

    python -m benchmarks.learning.update_stats sweeps/ant-nocfrc-pi256/trpo_plus/Ant-v5/seed100
    python -m benchmarks.learning.update_stats <run id> --updates 6 --set cg_damping=0.08

Loads a TRPOPlus run's final model and VecNormalize statistics (as ``eval_spread.py`` does: the run's env stack,
with its entry's wrapper), trains it on for ``--updates`` more updates on ``n_envs`` fresh envs, and prints
each update's diagnostics from the logger's ``train/`` keys: the KL reached against the trust region, the line
search's steps and step fraction, the critic's explained variance and the policy's std. ``--set`` changes
arguments of the loaded model first (e.g. ``cg_damping``), to see what they would do to the same policy's
updates. Nothing is saved.
"""

from __future__ import annotations

import argparse

from benchmarks.learning.eval_spread import run_env, saved_model
from benchmarks.learning.run import parse_overrides
from benchmarks.learning.store import find_run

KEYS = [
    "train/kl",
    "train/target_kl",
    "train/line_search_steps",
    "train/step_fraction",
    "train/explained_variance",
    "train/std",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="id of a finished TRPOPlus run (results/trpo_plus/<env>/seed<k>, sweeps/...)")
    parser.add_argument("--updates", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0, help="seed of the fresh training envs")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="arguments to change after loading")
    args = parser.parse_args()

    import torch as th
    from stable_baselines3.common.logger import Logger

    from sb3_trpo_plus import TRPOPlus

    th.set_num_threads(1)
    result = find_run(args.run)
    if result["algo"] != "trpo_plus":
        raise SystemExit(f"{args.run}: a {result['algo']} run; this script continues TRPOPlus runs only")
    model_path, stats_path = saved_model(result)
    env = run_env(result, n_envs=result["n_envs"], seed=args.seed, stats=stats_path, frozen=False)  # training goes on
    model = TRPOPlus.load(model_path, env=env, device="cpu", **parse_overrides(args.set))
    model.set_logger(Logger(folder=None, output_formats=[]))
    rows: list[dict[str, float]] = []
    train = model.train

    def train_and_record() -> None:  # the logger is dumped before each update: read its train/ keys right after it
        train()
        rows.append({key: float(model.logger.name_to_value[key]) for key in KEYS if key in model.logger.name_to_value})

    model.train = train_and_record  # type: ignore[method-assign]
    model.learn(args.updates * model.n_steps * model.n_envs, reset_num_timesteps=False)
    print(f"{args.run} ({model_path.name}; {', '.join(args.set) or 'as trained'}): {len(rows)} updates")
    print("| " + " | ".join(key.removeprefix("train/") for key in KEYS) + " |")
    print("|" + "---|" * len(KEYS))
    for row in rows:
        print("| " + " | ".join(f"{row[key]:.4g}" if key in row else "" for key in KEYS) + " |")


if __name__ == "__main__":
    main()
