"""Train TRPOPlus from the command line: ``python -m sb3_trpo_plus --env Pendulum-v1``; export a saved model to ONNX
with ``python -m sb3_trpo_plus export MODEL.zip POLICY.onnx`` (see :mod:`sb3_trpo_plus.export`).

Trains with a progress bar, saves the model, and prints its deterministic evaluation next to that of the
untrained policy. For tuned hyperparameters on many tasks, use the RL Zoo (``--algo trpo_plus``).
"""

from __future__ import annotations

import argparse
import ast
import difflib
import importlib
import inspect
import sys
import time
from typing import Any, NamedTuple

import torch as th
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from sb3_trpo_plus.trpo_plus import TRPOPlus


class Preset(NamedTuple):
    """Training settings of one env: steps, parallel envs, TRPOPlus arguments, and whether rewards are normalized."""

    timesteps: int
    n_envs: int
    hyperparams: dict[str, Any]
    normalize_reward: bool = False


#: env id -> settings. CartPole-v1: the RL Zoo's TRPO entry. Pendulum-v1: the entry of hyperparams/trpo_plus.yml
#: with rewards normalized but not observations (the YAML normalizes both, which scored about the same: see
#: benchmarks/learning/TUNING.md), so that the saved model acts on raw observations and needs no statistics.
PRESETS: dict[str, Preset] = {
    "Pendulum-v1": Preset(
        100_000,
        2,
        {"n_steps": 1024, "gamma": 0.98, "n_critic_updates": 15, "use_sde": True, "sde_sample_freq": 4},
        normalize_reward=True,
    ),
    "CartPole-v1": Preset(
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


#: TRPOPlus arguments that ``--hyperparams`` may set (the command line sets the policy, env and seed itself).
CLI_SET_ARGUMENTS = frozenset({"self", "policy", "env", "seed", "_init_setup_model"})


def check_hyperparam_names(hyperparams: dict[str, Any]) -> str | None:
    """
    Say what is wrong with the names of ``--hyperparams``, or return ``None`` when every name is a TRPOPlus argument.

    :param hyperparams: the parsed ``--hyperparams``
    :return: an error message naming the first bad key (with the closest known names), or ``None``
    """
    known = sorted(set(inspect.signature(TRPOPlus.__init__).parameters) - CLI_SET_ARGUMENTS)
    for key in hyperparams:
        if key in CLI_SET_ARGUMENTS:
            return f"--hyperparams: {key!r} is set by the command line itself (use --env, --seed)"
        if key not in known:
            close = difflib.get_close_matches(key, known, n=3)
            hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else "."
            return f"--hyperparams: unknown TRPOPlus argument {key!r}{hint} Known: {', '.join(known)}"
    return None


class Command(NamedTuple):
    """A subcommand: ``python -m sb3_trpo_plus NAME ...`` runs ``main(argv) -> int`` of ``module``."""

    summary: str
    module: str


#: name -> subcommand; ``--help`` lists each of them (and ``python -m sb3_trpo_plus NAME --help`` its own options)
COMMANDS: dict[str, Command] = {
    "export": Command(
        "export a saved model's policy to ONNX (observation statistics included) and check it against predict",
        "sb3_trpo_plus.export",
    ),
}


def _commands_help() -> str:
    """The ``--help`` epilog that lists :data:`COMMANDS`."""
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {command.summary}" for name, command in COMMANDS.items()]
    title = "commands (python -m sb3_trpo_plus COMMAND --help for a command's options):"
    return "\n".join([title, *lines, "", "Without a command, python -m sb3_trpo_plus trains with the options above."])


def main(argv: list[str] | None = None) -> TRPOPlus:
    """Train, save and evaluate as the command line says; returns the trained model."""
    parser = argparse.ArgumentParser(
        prog="python -m sb3_trpo_plus",
        description=__doc__.splitlines()[0],
        epilog=_commands_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--env", default="Pendulum-v1", help="Gymnasium env id (default: Pendulum-v1)")
    parser.add_argument("--timesteps", type=int, default=None, help="training steps (default: per-env preset, or 100000)")
    parser.add_argument("--n-envs", type=int, default=None, help="parallel envs (default: per-env preset, or 1)")
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of training (the evaluation env uses seed + 1000; default: 0)"
    )
    parser.add_argument(
        "--eval-episodes",
        type=int,
        default=10,
        help="deterministic episodes evaluated before and after training (default: 10)",
    )
    parser.add_argument("--save-path", default=None, help="where to save the model (default: trpo_plus_<env>.zip)")
    parser.add_argument("--hyperparams", nargs="*", default=[], metavar="KEY=VALUE", help="TRPOPlus arguments")
    parser.add_argument(
        "--normalize-reward",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="train on rewards scaled by VecNormalize (observations stay raw; default: per-env preset, or off)",
    )
    parser.add_argument("--no-progress-bar", action="store_true")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (default 1: fastest for small MLPs, and on shared machines)"
    )
    args = parser.parse_args(argv)
    th.set_num_threads(args.threads)

    preset = PRESETS.get(args.env, Preset(100_000, 1, {}))
    timesteps = args.timesteps if args.timesteps is not None else preset.timesteps
    n_envs = args.n_envs if args.n_envs is not None else preset.n_envs
    normalize_reward = args.normalize_reward if args.normalize_reward is not None else preset.normalize_reward
    custom = parse_hyperparams(args.hyperparams)
    problem = check_hyperparam_names(custom)
    if problem is not None:
        parser.error(problem)
    hyperparams = {**preset.hyperparams, **custom}
    save_path = args.save_path or f"trpo_plus_{args.env}.zip"

    env: VecEnv = make_vec_env(args.env, n_envs=n_envs, seed=args.seed)
    if normalize_reward:  # training rewards only: the policy sees raw observations, and so does any user of it
        env = VecNormalize(env, norm_obs=False, norm_reward=True, gamma=hyperparams.get("gamma", 0.99))
    eval_env = make_vec_env(args.env, n_envs=1, seed=args.seed + 1000)
    try:
        model = TRPOPlus("MlpPolicy", env, seed=args.seed, **hyperparams)
    except ValueError as error:  # an argument out of range: TRPOPlus's message names it
        env.close()
        eval_env.close()
        parser.error(str(error))
    before_mean, before_std = evaluate_policy(model, eval_env, n_eval_episodes=args.eval_episodes, deterministic=True)

    rewards = ", rewards normalized" if normalize_reward else ""
    print(f"Training TRPOPlus on {args.env} for {timesteps} steps ({n_envs} envs{rewards}, {hyperparams or 'defaults'})")
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
    print(
        f"Export it to ONNX (the export extra: pip install 'sb3-trpo-plus[export]') with: "
        f"python -m sb3_trpo_plus export {save_path} policy.onnx --env {args.env}"
    )
    return model


def run(argv: list[str]) -> int:
    """``python -m sb3_trpo_plus [COMMAND] ...``: a command of :data:`COMMANDS`, or training (:func:`main`).

    :param argv: the arguments after ``python -m sb3_trpo_plus``
    :return: the exit status
    """
    command = COMMANDS.get(argv[0]) if argv else None
    if command is not None:  # e.g. python -m sb3_trpo_plus export MODEL.zip POLICY.onnx
        return int(importlib.import_module(command.module).main(argv[1:]))
    main(argv)
    return 0


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
