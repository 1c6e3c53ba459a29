"""Run ONE (algo, env, seed) training of the learning benchmark and record its learning curve.

Usage::

    python -m benchmarks.learning.run --algo sb3_contrib_trpo --env HalfCheetah-v5 --seed 0

The environment stack and the model are built by the RL Zoo's own ``ExperimentManager``
(``rl_zoo3.exp_manager``), exactly as ``python -m rl_zoo3.train --algo trpo --env <env> -conf <yml>
--seed <k> --num-threads 1`` would build them: ``n_envs``, ``normalize`` -> ``VecNormalize`` with its
kwargs and the algorithm's ``gamma``, ``policy_kwargs`` strings evaluated, ``lin_<x>`` schedules,
``frame_stack``, env wrappers, ``n_timesteps``. Only the training loop is ours, so that we can add
a learning-curve callback and a final evaluation.

Hyperparameters:

* ``sb3_contrib_trpo``: ``sb3_contrib.TRPO`` with the entry of the RL Zoo's ``hyperparams/trpo.yml``.
  Its MuJoCo entries are named ``-v4``; they are applied unchanged to the ``-v5`` tasks.
* ``trpo_plus``: ``TRPOPlus`` with the entry of this repository's ``hyperparams/trpo_plus.yml``. If
  that file (or the task's entry) does not exist yet, the Zoo's TRPO entry is used with ``target_kl``
  converted to our units (sb3-contrib averages the KL over action dimensions, TRPOPlus sums it:
  ours = theirs x action_dim for Box actions, default 0.01); the record says which source was used.

Evaluation (on a separate eval env built by the Zoo with ``eval_env=True``: ``VecNormalize`` with
``training=False`` and ``norm_reward=False`` whose observation statistics are a frozen copy of the
training ones, refreshed by ``sync_envs_normalization`` right before each evaluation):

* learning curve: ``--eval-episodes`` (5) deterministic episodes at step 0 and every ``--eval-freq``
  environment steps (default 20k for MuJoCo, 5k for classic control), plus at the end;
* final: ``--final-episodes`` (10) deterministic episodes after training.

The eval env holds ``--eval-envs`` (5) copies stepped together, which makes evaluation several times
cheaper (one batched forward per step); ``evaluate_policy`` gives each copy the same number of episodes.

Outputs (``store.py``): at the end, the run's learning curve is appended to ``data/curves.csv.gz`` and then its
record (everything below, one row) to ``data/runs.csv``, or with ``--tag`` to ``data/sweep_runs.csv``, under an
exclusive file lock, so that two processes may finish runs at once. The row is the "done" marker: a run whose
row exists is skipped unless ``--force`` (which replaces it). A run with a shortened ``--n-timesteps`` and no
``--tag`` goes to ``results_smoke/`` (git-ignored) instead. Nothing is committed here: ``run_queue.py`` and
``sweep.py run`` commit batches of runs (``--commit``).
Scratch files (Zoo log folder, monitor files, the final model) go to ``runs/`` (git-ignored).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.common.provenance import git_state as checkout_state
from benchmarks.common.provenance import machine, versions
from benchmarks.common.zoo import zoo_entries, zoo_file
from benchmarks.learning.store import BENCHMARK_TABLE, DATA_DIR, SMOKE_DIR, SWEEP_TABLE, Store, run_id

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
RUNS_DIR = HERE / "runs"
SWEEPS_DIR = HERE / "sweeps"

CLASSIC = ["CartPole-v1", "Pendulum-v1", "Acrobot-v1", "MountainCarContinuous-v0", "LunarLanderContinuous-v3"]
MUJOCO = ["HalfCheetah-v5", "Hopper-v5", "Walker2d-v5", "Swimmer-v5", "Ant-v5"]
ENVS = CLASSIC + MUJOCO
ALGOS = ["sb3_contrib_trpo", "trpo_plus"]
ZOO_ALGO_NAME = {"sb3_contrib_trpo": "trpo", "trpo_plus": "trpo_plus"}
SEEDS = [0, 1, 2, 3, 4]  # MuJoCo: 1M steps, ~4-25 CPU minutes a run (see seeds_for)
CLASSIC_SEEDS = list(range(10))  # classic control: ~1-2 CPU minutes a run, so 10 seeds (see seeds_for)


def seeds_for(env_id: str) -> list[int]:
    """The benchmark's seeds for a task: 0-9 for classic control, 0-4 for MuJoCo.

    Classic control got 10 seeds (both algorithms) after seeds 0-2 turned out to be a poor sample on
    Pendulum-v1: the best possible score on their final start states is about -180, against about -140
    on random starts (``pendulum_optimum.py``), so 3 seeds there measure the starts' draw more than the learner.
    MuJoCo went from seeds 0-2 to 0-4 (both algorithms, every task) on 2026-11-24, decided before any run on
    seeds 3-4, so that no task's claim rests on 3 seeds alone (HalfCheetah-v5's outcomes are bimodal).
    """
    return CLASSIC_SEEDS if env_id in CLASSIC else SEEDS


def default_eval_freq(env_id: str) -> int:
    """Environment steps between two learning-curve evaluations."""
    return 20_000 if env_id in MUJOCO else 5_000


def store_for(data_dir: Path, tag: str = "") -> Store:
    """Where a run's record goes: the sweep table for a sweep (``tag``), else the benchmark's."""
    return Store(data_dir, SWEEP_TABLE if tag else BENCHMARK_TABLE)


def scratch_dir(algo: str, env_id: str, seed: int, tag: str = "") -> Path:
    """Where a run's scratch files go (Zoo log folder, saved model): ``runs/`` or, for a sweep, ``runs/sweeps/<tag>/``."""
    base = RUNS_DIR / "sweeps" / tag if tag else RUNS_DIR
    return base / algo / env_id / f"seed{seed}"


def _zoo_entry_name(env_id: str, entries: dict[str, Any]) -> str | None:
    """The hyperparameter entry for ``env_id``: itself, else its -v4 twin for a MuJoCo -v5 task."""
    if env_id in entries:
        return env_id
    if env_id.endswith("-v5") and env_id.replace("-v5", "-v4") in entries:
        return env_id.replace("-v5", "-v4")
    return None


def _action_dim(env_id: str) -> int:
    import gymnasium as gym
    from gymnasium import spaces

    env = gym.make(env_id)
    try:
        space = env.action_space
        return int(space.shape[0]) if isinstance(space, spaces.Box) else 1
    finally:
        env.close()


def resolve_hyperparams(algo: str, env_id: str) -> tuple[dict[str, Any], str]:
    """The raw (unprocessed, Zoo-format) hyperparameter entry for ``algo`` on ``env_id`` and its source."""
    import rl_zoo3

    if algo == "trpo_plus":
        with contextlib.suppress(FileNotFoundError):
            plus = zoo_entries("trpo_plus")
            name = _zoo_entry_name(env_id, plus)
            if name is not None:
                return dict(plus[name]), f"hyperparams/trpo_plus.yml [{name}]"
    zoo = zoo_entries("trpo")
    name = _zoo_entry_name(env_id, zoo)
    if name is None:
        raise ValueError(f"no entry for {env_id} in {zoo_file('trpo')}")
    entry = dict(zoo[name])
    source = f"rl_zoo3 {rl_zoo3.__version__} hyperparams/trpo.yml [{name}]"
    if algo == "trpo_plus":
        dim = _action_dim(env_id)
        theirs = float(entry.get("target_kl", 0.01))
        entry["target_kl"] = theirs * dim
        source = (
            f"FALLBACK (hyperparams/trpo_plus.yml absent or without {env_id}): {source}, "
            f"target_kl converted {theirs} x action_dim {dim} = {entry['target_kl']}"
        )
    return entry, source


def git_state() -> dict[str, Any]:
    """The commit of the code this process imports and whether its package tree has uncommitted changes."""
    commit, dirty = checkout_state()
    return {"commit": commit, "sb3_trpo_plus_dirty": dirty}


def jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return repr(value)


def run(args: argparse.Namespace) -> dict[str, Any] | None:
    store = store_for(args.data_dir, args.tag)
    name = run_id(args.algo, args.env, args.seed, args.tag)
    if name in store.done() and not args.force:
        print(f"skip: {name} is in {store.runs_path}")
        return None
    git_at_start = git_state()  # the code this process imports; the checkout may move on during the run

    import numpy as np
    import torch as th

    th.set_num_threads(1)

    import rl_zoo3.import_envs  # noqa: F401  (registers the Zoo's extra envs, as rl_zoo3.train does)
    import yaml
    from rl_zoo3.exp_manager import ExperimentManager
    from rl_zoo3.utils import ALGOS as ZOO_ALGOS
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.utils import set_random_seed
    from stable_baselines3.common.vec_env import VecEnv, sync_envs_normalization

    zoo_algo = ZOO_ALGO_NAME[args.algo]
    if zoo_algo not in ZOO_ALGOS:
        from sb3_trpo_plus import TRPOPlus

        ZOO_ALGOS[zoo_algo] = TRPOPlus

    entry, source = resolve_hyperparams(args.algo, args.env)
    overrides = parse_overrides(args.set)
    if overrides:
        entry.update(overrides)
        source += f" with --set {overrides}"
    scratch = scratch_dir(args.algo, args.env, args.seed, args.tag)
    scratch.mkdir(parents=True, exist_ok=True)
    os.chdir(scratch)  # MuJoCo writes MUJOCO_LOG.TXT to the working directory: keep it out of the checkout
    conf_path = scratch / "hyperparams.yml"
    conf_path.write_text(yaml.safe_dump({args.env: entry}, sort_keys=True))
    command = shlex.join([sys.executable, "-m", "benchmarks.learning.run", *sys.argv[1:]])
    print(f"== {args.algo} {args.env} seed {args.seed}\nhyperparameters from {source}: {entry}", flush=True)

    # What rl_zoo3.train does before building the ExperimentManager.
    set_random_seed(args.seed)
    zoo_args = argparse.Namespace(
        algo=zoo_algo, env=args.env, seed=args.seed, conf_file=str(conf_path), num_threads=1, n_timesteps=args.n_timesteps
    )
    manager = ExperimentManager(
        zoo_args,
        zoo_algo,
        args.env,
        str(scratch / "zoo"),
        n_timesteps=args.n_timesteps,
        eval_freq=-1,  # the Zoo's EvalCallback is replaced by ours (same env stack, more records)
        seed=args.seed,
        log_interval=-2,
        verbose=0,
        device="cpu",
        config=str(conf_path),
    )
    setup = manager.setup_experiment()
    assert setup is not None
    model, saved_hyperparams = setup
    train_env = model.get_env()
    assert train_env is not None  # the model was built on the Zoo's training envs
    # Several eval envs step in lock-step (batched policy forward); evaluate_policy splits the episodes
    # evenly between them, so each evaluation still counts exactly n_episodes whole episodes.
    eval_env: VecEnv = manager.create_envs(args.eval_envs, eval_env=True)
    eval_freq = args.eval_freq or default_eval_freq(args.env)

    curve: list[dict[str, Any]] = []
    clock = {"eval": 0.0, "start": time.perf_counter()}

    def evaluate(n_episodes: int) -> tuple[list[float], list[int]]:
        t0 = time.perf_counter()
        sync_envs_normalization(train_env, eval_env)
        returns, lengths = evaluate_policy(
            model, eval_env, n_eval_episodes=n_episodes, deterministic=True, return_episode_rewards=True
        )
        clock["eval"] += time.perf_counter() - t0
        return [float(r) for r in returns], [int(n) for n in lengths]  # type: ignore[union-attr]

    def record(timesteps: int) -> None:
        returns, lengths = evaluate(args.eval_episodes)
        infos = list(model.ep_info_buffer or [])
        row = {
            "timesteps": timesteps,
            "eval_mean": float(np.mean(returns)),
            "eval_std": float(np.std(returns)),
            "eval_min": float(np.min(returns)),
            "eval_max": float(np.max(returns)),
            "eval_mean_length": float(np.mean(lengths)),
            "train_ep_return_mean": float(np.mean([i["r"] for i in infos])) if infos else float("nan"),
            "train_time_s": time.perf_counter() - clock["start"] - clock["eval"],
        }
        curve.append(row)
        print(
            f"t={timesteps:>8d} eval {row['eval_mean']:9.2f} ± {row['eval_std']:7.2f} "
            f"train {row['train_ep_return_mean']:9.2f} ({row['train_time_s']:.0f}s)",
            flush=True,
        )

    class CurveCallback(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.next_eval = eval_freq

        def _on_training_start(self) -> None:
            record(0)

        def _on_step(self) -> bool:
            if self.num_timesteps >= self.next_eval:
                record(self.num_timesteps)
                while self.next_eval <= self.num_timesteps:
                    self.next_eval += eval_freq
            return True

    started = dt.datetime.now(dt.timezone.utc)
    load_start = os.getloadavg()[0]
    cpu_start = time.process_time()
    clock["start"] = time.perf_counter()
    model.learn(manager.n_timesteps, callback=[*manager.callbacks, CurveCallback()], log_interval=None)  # type: ignore[arg-type]  # SB3 skips its console dumps on None
    if not curve or curve[-1]["timesteps"] != model.num_timesteps:
        record(model.num_timesteps)
    train_time = time.perf_counter() - clock["start"] - clock["eval"]
    final_returns, final_lengths = evaluate(args.final_episodes)
    wall_time = time.perf_counter() - clock["start"]
    manager.save_trained_model(model)  # scratch copy (model + VecNormalize) for later re-evaluation
    train_env.close()
    eval_env.close()

    infos = list(model.ep_info_buffer or [])
    result = {
        "algo": args.algo,
        "algo_class": f"{type(model).__module__}.{type(model).__name__}",
        "env": args.env,
        "seed": args.seed,
        "final_eval": {
            "n_episodes": args.final_episodes,
            "deterministic": True,
            "mean": float(np.mean(final_returns)),
            "std": float(np.std(final_returns)),
            "returns": final_returns,
            "lengths": final_lengths,
        },
        "train_ep_return_mean_last100": float(np.mean([i["r"] for i in infos])) if infos else None,
        "n_timesteps": int(manager.n_timesteps),
        "timesteps_done": int(model.num_timesteps),
        "n_envs": int(manager.n_envs),
        "eval_freq": eval_freq,
        "curve_eval_episodes": args.eval_episodes,
        "n_eval_envs": args.eval_envs,
        "wall_time_s": wall_time,
        "train_time_s": train_time,
        "eval_time_s": clock["eval"],
        "cpu_time_s": time.process_time() - cpu_start,  # this process only: less sensitive to CPU sharing
        "started_utc": started.isoformat(timespec="seconds"),
        "load_avg_1min_start_end": [load_start, os.getloadavg()[0]],  # the CPU is shared: context for wall times
        "finished_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "hyperparams_source": source,
        "overrides": jsonable(overrides),
        "tag": args.tag,
        "hyperparams": jsonable(dict(saved_hyperparams)),
        "normalize_kwargs": jsonable(manager.normalize_kwargs) if manager.normalize else None,
        "torch_threads": th.get_num_threads(),
        "versions": versions(),
        "git": git_at_start,
        "git_at_end": git_state(),
        "machine": machine(),
        "command": command,
    }
    with store.locked():
        if args.force:
            store.remove({name}, lock=False)
        store.append(result, curve, args.tag, lock=False)  # the curve, then the row: the "done" marker
    print(
        f"done {args.algo} {args.env} seed {args.seed}: final {result['final_eval']['mean']:.2f} "
        f"± {result['final_eval']['std']:.2f}, wall {wall_time:.0f}s -> {name} in {store.runs_path}",
        flush=True,
    )
    return result


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["target_kl=0.1", "policy_kwargs=dict(log_std_init=-1)"]`` -> entry overrides, values read as YAML.

    A value that YAML reads as a string stays a string, as in the Zoo's files (``policy_kwargs`` is evaluated
    by the Zoo).
    """
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--set expects key=value, got {item!r}")
        out[key.strip()] = yaml.safe_load(value)
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--algo", choices=ALGOS, required=True)
    parser.add_argument("--env", required=True, help=f"a gymnasium id, e.g. one of {ENVS}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--n-timesteps",
        type=int,
        default=0,
        help="override the Zoo's budget (without --tag: the record goes to results_smoke/)",
    )
    parser.add_argument("--eval-freq", type=int, default=0, help="steps between curve evaluations (0: per task)")
    parser.add_argument("--eval-episodes", type=int, default=5)
    parser.add_argument("--final-episodes", type=int, default=10)
    parser.add_argument("--eval-envs", type=int, default=5, help="parallel eval envs (divides both episode counts)")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="folder of the record (default data/, or results_smoke/: see --n-timesteps)",
    )
    parser.add_argument("--force", action="store_true", help="rerun even if the run is recorded, and replace its row")
    parser.add_argument(
        "--set", nargs="*", default=[], metavar="KEY=VALUE", help="override entries of the hyperparameters (a sweep)"
    )
    parser.add_argument(
        "--tag", default="", help="sweep variant: the record goes to data/sweep_runs.csv (required with --set)"
    )
    args = parser.parse_args(argv)
    if args.set and not args.tag:
        parser.error("--set changes the hyperparameters: give the variant a --tag (the record goes to data/sweep_runs.csv)")
    if args.data_dir is None:
        args.data_dir = SMOKE_DIR if args.n_timesteps > 0 and not args.tag else DATA_DIR
    args.data_dir = args.data_dir.resolve()
    return args


if __name__ == "__main__":
    run(parse_args())
