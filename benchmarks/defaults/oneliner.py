"""The one-liner benchmark: ``ALGO("MlpPolicy", gym.make(ENV), seed=S, **config).learn(N)`` with no wrapper and
no YAML, then 10 deterministic episodes; one row per run appended to ``runs.csv`` (tidy, under a file lock:
:func:`benchmarks.common.append_row`).

Configurations (``--config``):

* ``new``: TRPOPlus with its defaults as the code stands (observation and value normalization, ``target_kl="auto"``,
  Box actions from std 0.5 since round 4; the ``code_rev`` column says which code);
* ``today``: TRPOPlus's defaults before normalization (``normalize_observations=False, normalize_values=False,
  target_kl=0.01``, and the damping and std before round 4: :data:`BEFORE_ROUND4`);
* ``norm``: normalization on, ``target_kl=0.01`` (a screening candidate; :data:`BEFORE_ROUND4`);
* ``lin``: the radius shrinking linearly from the ``"auto"`` value to 0 over the run (round 2; :data:`BEFORE_ROUND4`);
* ``sb3_contrib``: ``sb3_contrib.TRPO`` with its defaults;
* ``sb3_ppo``: Stable-Baselines3's ``PPO`` with its defaults (what most users run; a peer of issue 44's confirmation).

Usage::

    python -m benchmarks.defaults.oneliner --config new --env HalfCheetah-v5 --seed 0 --steps 1000000

A diagnosis variant (DIAGNOSIS.md) is a configuration with constructor arguments or env arguments changed, under a
label of its own, in its own table::

    python -m benchmarks.defaults.oneliner --config new --label nocfrc --env Ant-v5 --seed 100 --steps 500000 \
        --env-kwargs '{"include_cfrc_ext_in_observation": false}' --table benchmarks/defaults/diagnosis.csv
    python -m benchmarks.defaults.oneliner --config new --label gamma999 --set gamma=0.999 ...

Seeds 0-9 are benchmark seeds, 100-199 tuning seeds (see RULE.md). One torch thread.
"""

from __future__ import annotations

import argparse
import csv
import functools
import inspect
import json
import math
import time
from pathlib import Path
from typing import Any

from stable_baselines3.common.callbacks import BaseCallback

from benchmarks.common.provenance import provenance
from benchmarks.common.table import append_row, header

HERE = Path(__file__).resolve().parent
TABLE = HERE / "runs.csv"
#: HalfCheetah runs: how much of the evaluation episode and of each tenth of training the cheetah spent on its back
MODES = HERE / "modes.csv"

#: the defaults round 4 screened (the damping, kept) and changed (the initial std, 1 before): the configurations of
#: the rounds before it and round 4's candidates pin them, so that they run as they were measured on any later code
BEFORE_ROUND4: dict[str, Any] = {"cg_damping": 0.1, "policy_kwargs": {"log_std_init": 0.0}}

CONFIGS: dict[str, tuple[str, dict[str, Any]]] = {
    "new": ("trpo_plus", {}),
    "today": (
        "trpo_plus",
        {"normalize_observations": False, "normalize_values": False, "target_kl": 0.01, **BEFORE_ROUND4},
    ),
    "norm": ("trpo_plus", {"normalize_observations": True, "normalize_values": True, "target_kl": 0.01, **BEFORE_ROUND4}),
    "lin": ("trpo_plus", {"target_kl": "lin_auto", **BEFORE_ROUND4}),
    "sb3_contrib": ("sb3_contrib", {}),
    "sb3_ppo": ("sb3_ppo", {}),
}


def run(
    config: str,
    env_id: str,
    seed: int,
    steps: int,
    episodes: int = 10,
    label: str | None = None,
    overrides: dict[str, Any] | None = None,
    env_kwargs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """
    One run of ``config`` (with ``overrides`` of its constructor arguments, and ``env_kwargs`` for ``gym.make``),
    recorded under ``label`` (``config`` by default); the row has an ``env_kwargs`` column only when they are given.
    """
    import gymnasium as gym
    import numpy as np
    import torch as th
    from stable_baselines3.common.evaluation import evaluate_policy

    th.set_num_threads(1)
    library, kwargs = CONFIGS[config]
    kwargs = merged_arguments(kwargs, overrides or {})
    make = functools.partial(gym.make, env_id, **(env_kwargs or {}))
    algo_class: type[Any]
    if library == "sb3_contrib":
        from sb3_contrib import TRPO as algo_class
    elif library == "sb3_ppo":
        from stable_baselines3 import PPO as algo_class
    else:
        from sb3_trpo_plus import TRPOPlus as algo_class
    accepted = inspect.signature(algo_class).parameters
    ignored = sorted(key for key in kwargs if key not in accepted)  # an older TRPOPlus without the argument
    kwargs = {key: value for key, value in kwargs.items() if key in accepted}

    build = dict(kwargs)
    if build.get("target_kl") == "lin_auto":  # round 2's candidate: the "auto" radius shrinking linearly to 0
        from stable_baselines3.common.utils import LinearSchedule

        probe = algo_class("MlpPolicy", make(), seed=seed, **{**build, "target_kl": "auto"})
        build["target_kl"] = LinearSchedule(probe._auto_target_kl(), 0.0, 1.0)
        del probe
    start = time.perf_counter()
    model = algo_class("MlpPolicy", make(), seed=seed, **build)
    posture = Posture() if env_id.startswith("HalfCheetah") else None
    model.learn(steps, callback=posture)
    wall = time.perf_counter() - start
    eval_env = make()
    eval_env.reset(seed=10_000 + seed)
    returns, _ = evaluate_policy(model, eval_env, n_eval_episodes=episodes, deterministic=True, return_episode_rewards=True)
    stamp = provenance()
    row = {
        "config": label or config,
        "env": env_id,
        "seed": seed,
        "steps": steps,
        "final_mean": float(np.mean(returns)),
        "final_std": float(np.std(returns)),
        "final_returns": json.dumps([round(float(r), 3) for r in returns]),  # type: ignore[union-attr]
        "wall_time_s": round(wall, 1),
        "kwargs": json.dumps(kwargs, sort_keys=True),
        "ignored_kwargs": json.dumps(ignored),
        "code_rev": stamp.code_rev if library == "trpo_plus" else "",
        "torch_threads": th.get_num_threads(),
        "machine": stamp.machine_summary,
    }
    if env_kwargs is not None:
        row["env_kwargs"] = json.dumps(env_kwargs, sort_keys=True)
    if posture is not None:  # HalfCheetah: is the low mode a cheetah on its back (DIAGNOSIS.md, 23:08 UTC)?
        append_row(
            MODES,
            {
                "config": row["config"],
                "env": env_id,
                "seed": seed,
                "steps": steps,
                "final_mean": row["final_mean"],
                "final_upside_down": upside_down_fraction(model, make(), 20_000 + seed),
                "training_upside_down": json.dumps(posture.fractions()),
                "code_rev": row["code_rev"],
            },
        )
    return row


def merged_arguments(arguments: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``arguments`` with ``overrides`` replacing them, key by key inside ``policy_kwargs`` too."""
    merged = {**arguments, **overrides}
    if "policy_kwargs" in arguments and "policy_kwargs" in overrides:
        merged["policy_kwargs"] = {**arguments["policy_kwargs"], **overrides["policy_kwargs"]}
    return merged


def upside_down(env: Any) -> bool:
    """Whether a HalfCheetah's torso is upside down (its pitch, ``qpos[2]``, more than 90 degrees from upright)."""
    return math.cos(float(env.unwrapped.data.qpos[2])) < 0.0


def upside_down_fraction(model: Any, env: Any, seed: int) -> float:
    """The fraction of one deterministic episode's steps that a HalfCheetah spends on its back."""
    obs, _ = env.reset(seed=seed)
    flipped = steps = 0
    done = False
    while not done:
        action, _ = model.predict(obs, deterministic=True)
        obs, _, terminated, truncated, _ = env.step(action)
        flipped, steps, done = flipped + upside_down(env), steps + 1, terminated or truncated
    return round(flipped / steps, 4)


class Posture(BaseCallback):
    """The fraction of training steps a HalfCheetah spends on its back, per tenth of the run."""

    def __init__(self) -> None:
        super().__init__()
        self.flipped: list[int] = []

    def _on_step(self) -> bool:
        self.flipped.append(int(upside_down(self.training_env.envs[0])))  # type: ignore[attr-defined]
        return True

    def fractions(self) -> list[float]:
        import numpy as np

        return [round(float(part.mean()), 3) for part in np.array_split(np.asarray(self.flipped, float), 10) if part.size]


def _override(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with VALUE in JSON (a bare word is a string): one constructor argument."""
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def recorded(table: Path, config: str, env_id: str, steps: int) -> set[int]:
    """The seeds whose run of ``config`` (its label) on ``env_id`` for ``steps`` is in ``table``."""
    if not table.exists():
        return set()
    with table.open() as file:
        rows = csv.DictReader(file)
        return {int(r["seed"]) for r in rows if (r["config"], r["env"], int(r["steps"])) == (config, env_id, steps)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", choices=sorted(CONFIGS), required=True)
    parser.add_argument("--env", required=True)
    parser.add_argument("--seed", type=int, nargs="+", required=True)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--table", type=Path, default=TABLE)
    parser.add_argument("--label", help="the config column's value (a diagnosis variant's name)")
    parser.add_argument(
        "--set",
        type=_override,
        action="append",
        default=[],
        metavar="KEY=JSON",
        help="a constructor argument over the config's",
    )
    parser.add_argument("--env-kwargs", type=json.loads, default=None, help="gym.make's keyword arguments, as JSON")
    parser.add_argument(
        "--skip-done", action="store_true", help="skip a seed whose run (config or label, env, steps) is in the table"
    )
    args = parser.parse_args()
    if args.env_kwargs is None and "env_kwargs" in (header(args.table) or []):
        args.env_kwargs = {}  # the diagnosis table records them on every row
    done = recorded(args.table, args.label or args.config, args.env, args.steps) if args.skip_done else set()
    for seed in args.seed:
        if seed in done:
            continue
        row = run(
            args.config, args.env, seed, args.steps, label=args.label, overrides=dict(args.set), env_kwargs=args.env_kwargs
        )
        append_row(args.table, row)
        print(
            f"{row['config']} {row['env']} seed {seed}: {row['final_mean']:.1f} +- {row['final_std']:.1f} "
            f"({row['wall_time_s']:.0f} s)",
            flush=True,
        )


if __name__ == "__main__":
    main()
