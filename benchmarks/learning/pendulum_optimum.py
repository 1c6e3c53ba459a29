"""What could any policy score on the exact start states of a Pendulum-v1 run's final evaluation?

Usage::

    python -m benchmarks.learning.pendulum_optimum results/{sb3_contrib_trpo,trpo_plus}/Pendulum-v1/seed{0..9}

A run's final score is the mean return of 10 deterministic episodes on an eval env that ``run.py`` seeds
with the run's seed, after the learning-curve evaluations. Pendulum-v1 episodes always last 200 steps and
its dynamics use no randomness, so which start states the final episodes get does not depend on the
policy: this script replays the run's evaluation schedule (as many curve evaluations as its learning curve
has rows, then the final one) on an env built the same way, with zero torques, and records the start
state of each counted final episode. When the run's saved model is still in ``runs/`` (``--check``), it
replays the final evaluation with that model too and checks the returns equal the recorded ones.

For each start state it then plans a 200-step torque sequence: dynamic programming over a grid of
(angle, speed) states gives the best return-to-go of every grid state and step, and a controller that acts
greedily on it drives Pendulum-v1's exact dynamics from the start state. Its return is what *some* torque
sequence achieves from that state, a lower bound on the best possible return (the grid makes it slightly
suboptimal: with 128 points per dimension the returns are within ~2.5 of those with 256). Prints the
planner's mean over fresh random start states, then, per run, the recorded final score and the planner's
mean on the same 10 start states. Results: ``sweeps/pendulum_optimum.md``.

With ``--gamma G`` below 1 the planner is instead the policy optimal for the discounted problem a learner
with that ``gamma`` solves (value iteration on the same grid), still scored by the undiscounted 200-step
return: how much a discount factor alone costs, whatever the learner.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.learning.store import find_run

G, M, L, DT, MAX_SPEED, MAX_TORQUE = 10.0, 1.0, 1.0, 0.05, 8.0, 2.0  # gymnasium's Pendulum-v1 defaults


def step(theta: np.ndarray, speed: np.ndarray, torque: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pendulum-v1's ``step`` on arrays: (new angle, new speed, reward)."""
    torque = np.clip(torque, -MAX_TORQUE, MAX_TORQUE)
    angle = (theta + np.pi) % (2 * np.pi) - np.pi
    reward = -(angle**2 + 0.1 * speed**2 + 0.001 * torque**2)
    speed = np.clip(speed + (3 * G / (2 * L) * np.sin(theta) + 3.0 / (M * L**2) * torque) * DT, -MAX_SPEED, MAX_SPEED)
    return theta + speed * DT, speed, reward


def check_dynamics(env: Any, n: int = 200) -> None:
    """Stop unless :func:`step` matches the installed gymnasium's Pendulum-v1 on random states and torques."""
    rng = np.random.default_rng(0)
    for _ in range(n):
        env.reset(seed=int(rng.integers(1 << 31)))
        theta, speed = (float(x) for x in env.state)
        torque = rng.uniform(-3, 3)  # beyond the bounds too: both clip
        _, reward, *_ = env.step(np.array([torque], dtype=np.float32))
        mine = step(np.array(theta), np.array(speed), np.array(np.float32(torque), dtype=float))
        if not np.allclose(mine, [*env.state, reward], atol=1e-5):
            raise SystemExit(f"step() no longer matches gymnasium's Pendulum-v1: {mine} vs {env.state}, {reward}")


Corners = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _corners(shape: tuple[int, ...], theta: np.ndarray, speed: np.ndarray) -> Corners:
    """Bilinear interpolation on an (angle, speed) grid of this shape: the corners' indices and the weights."""
    n_theta, n_speed = shape
    x = np.remainder(theta + np.pi, 2 * np.pi) / (2 * np.pi) * n_theta  # the angle wraps around
    i0 = np.floor(x).astype(np.int64)
    wx = x - i0
    i0 %= n_theta
    y = (speed + MAX_SPEED) / (2 * MAX_SPEED) * (n_speed - 1)
    j0 = np.clip(np.floor(y).astype(np.int64), 0, n_speed - 2)
    wy = y - j0
    return i0, (i0 + 1) % n_theta, j0, j0 + 1, wx, wy


def _blend(values: np.ndarray, corners: Corners) -> np.ndarray:
    i0, i1, j0, j1, wx, wy = corners
    return (1 - wx) * ((1 - wy) * values[i0, j0] + wy * values[i0, j1]) + wx * (
        (1 - wy) * values[i1, j0] + wy * values[i1, j1]
    )


def interpolate(values: np.ndarray, theta: np.ndarray, speed: np.ndarray) -> np.ndarray:
    """``values`` (on the grid of :func:`optimal_values`) at the given states."""
    return _blend(values, _corners(values.shape, theta, speed))


def _transitions(n_theta: int, n_speed: int, n_torques: int) -> tuple[np.ndarray, Corners]:
    """Every (angle, speed) grid state under every torque: the reward, and where it lands (as interpolation corners)."""
    theta = -np.pi + 2 * np.pi * np.arange(n_theta) / n_theta
    speed = np.linspace(-MAX_SPEED, MAX_SPEED, n_speed)
    grid = np.meshgrid(theta, speed, np.linspace(-MAX_TORQUE, MAX_TORQUE, n_torques), indexing="ij")
    next_theta, next_speed, reward = step(*grid)
    return reward, _corners((n_theta, n_speed), next_theta, next_speed)


def optimal_values(n_theta: int, n_speed: int, n_torques: int, steps: int = 200) -> list[np.ndarray]:
    """Dynamic programming on an (angle, speed) grid: ``values[t]`` = best return with ``steps - t`` steps left."""
    reward, corners = _transitions(n_theta, n_speed, n_torques)  # the same every step: computed once
    values = [np.zeros((n_theta, n_speed))]
    for _ in range(steps):
        values.append((reward + _blend(values[-1], corners)).max(axis=2))
    return values[::-1]


def discounted_values(n_theta: int, n_speed: int, n_torques: int, gamma: float, tol: float = 1e-4) -> np.ndarray:
    """Value iteration on the same grid for the discounted, endless problem a learner with this ``gamma`` solves.

    Iterates until no grid value moves by more than ``tol`` (the error left is then at most
    ``tol * gamma / (1 - gamma)``).
    """
    reward, corners = _transitions(n_theta, n_speed, n_torques)
    values = np.zeros((n_theta, n_speed))
    while True:
        new = (reward + gamma * _blend(values, corners)).max(axis=2)
        if np.abs(new - values).max() < tol:
            return new
        values = new


def plan(starts: np.ndarray, values: list[np.ndarray], n_torques: int, gamma: float = 1.0) -> np.ndarray:
    """Act greedily on the dynamic-programming values with the true dynamics from each start state.

    Each step picks, among ``n_torques`` torques, the one with the best reward plus ``gamma`` times the
    interpolated value of the next state, then steps Pendulum-v1's exact dynamics: the return is achieved
    by a real torque sequence, so it is a lower bound on the best possible return from that start state.
    With the values of :func:`discounted_values` (the same array every step) and their ``gamma``, it is the
    policy optimal for that discount, scored by Pendulum-v1's undiscounted 200-step return.
    """
    torques = np.linspace(-MAX_TORQUE, MAX_TORQUE, n_torques)
    theta, speed = starts[:, 0].copy(), starts[:, 1].copy()
    total = np.zeros(len(starts))
    for t in range(len(values) - 1):
        next_theta, next_speed, reward = step(theta[:, None], speed[:, None], torques[None, :])
        best = torques[np.argmax(reward + gamma * interpolate(values[t + 1], next_theta, next_speed), axis=1)]
        theta, speed, reward = step(theta, speed, best)
        total += reward
    return total


class _Recorder:
    """A stand-in model for ``evaluate_policy``: zero torques (or a real model's), recording episode starts."""

    def __init__(self, env: Any, n_episodes: int, model: Any = None) -> None:
        n_envs = env.num_envs
        self.env, self.model = env, model
        self.targets = [(n_episodes + i) // n_envs for i in range(n_envs)]  # as evaluate_policy counts them
        self.starts: list[list[np.ndarray]] = [[] for _ in range(n_envs)]

    def predict(self, obs: np.ndarray, state: Any = None, episode_start: Any = None, deterministic: bool = True) -> Any:
        for i, first in enumerate(episode_start):
            if first and len(self.starts[i]) < self.targets[i]:
                self.starts[i].append(np.array(self.env.envs[i].unwrapped.state, dtype=float))
        if self.model is not None:
            return self.model.predict(obs, state=state, episode_start=episode_start, deterministic=deterministic)
        return np.zeros((len(obs), 1), dtype=np.float32), None


def final_start_states(
    result: dict, curve_rows: int, model: Any = None, stats: Path | None = None
) -> tuple[np.ndarray, list[float]]:
    """Replay ``run.py``'s evaluations for this run: the final episodes' start states (and returns).

    ``stats``: the run's VecNormalize statistics, which ``model`` needs to see its observations as in training.
    """
    from stable_baselines3.common.evaluation import evaluate_policy

    from benchmarks.learning.eval_spread import run_env

    # as the Zoo's create_envs; VecNormalize (frozen) changes the observations only, not the episodes' starts
    env = run_env(result, n_envs=result["n_eval_envs"], seed=result["seed"], stats=stats if model is not None else None)
    dummy = _Recorder(env, result["curve_eval_episodes"])
    for _ in range(curve_rows):
        evaluate_policy(dummy, env, n_eval_episodes=result["curve_eval_episodes"], deterministic=True)  # type: ignore[arg-type]
    recorder = _Recorder(env, result["final_eval"]["n_episodes"], model)
    returns, _ = evaluate_policy(
        recorder,  # type: ignore[arg-type]
        env,
        n_eval_episodes=result["final_eval"]["n_episodes"],
        deterministic=True,
        return_episode_rewards=True,
    )
    env.close()
    # evaluate_policy lists episodes as they end; all of them last 200 steps, so round by round, env by env
    rounds = max(recorder.targets)
    ordered = [starts[r] for r in range(rounds) for starts in recorder.starts if r < len(starts)]
    return np.array(ordered), [float(r) for r in returns]  # type: ignore[union-attr]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="ids of finished Pendulum-v1 runs (results/<algo>/Pendulum-v1/seed<k>)")
    parser.add_argument(
        "--check", action="store_true", help="replay the final evaluation with the saved model too, where it is kept"
    )
    parser.add_argument("--grid", type=int, default=256, help="grid points per dimension (angle, speed)")
    parser.add_argument("--torques", type=int, default=41, help="torque levels of the dynamic programming")
    parser.add_argument("--fresh", type=int, default=1000, help="also: the planner's mean over this many random starts")
    parser.add_argument(
        "--gamma",
        type=float,
        default=1.0,
        help="1 (default): the best 200-step return; below 1: the return of the policy optimal for this discount",
    )
    args = parser.parse_args()
    if not 0 < args.gamma <= 1:
        parser.error(f"--gamma must be in (0, 1], got {args.gamma}")

    from gymnasium.envs.classic_control.pendulum import PendulumEnv

    check_dynamics(PendulumEnv())
    if args.gamma < 1:
        values = [discounted_values(args.grid, args.grid + 1, args.torques, args.gamma)] * 201
    else:
        values = optimal_values(args.grid, args.grid + 1, args.torques)
    if args.fresh:
        env, fresh = PendulumEnv(), []
        for k in range(args.fresh):
            env.reset(seed=12345 + k)
            fresh.append(np.array(env.state, dtype=float))
        fresh_mean = plan(np.array(fresh), values, 401, args.gamma).mean()
        print(f"planner's mean over {args.fresh} random start states: {fresh_mean:.1f}\n")

    print("| run | recorded final (10 ep.) | planner on the same start states | each start: recorded / planner |")
    print("|---|---|---|---|")
    for ref in args.runs:
        result = find_run(ref)
        path = result["run"]
        if result["env"] != "Pendulum-v1":
            raise SystemExit(f"{path}: a {result['env']} run; this script replays Pendulum-v1 only")
        curve_rows = len(result["curve"])
        model, stats = None, None
        if args.check:
            from benchmarks.learning.eval_spread import algo_class, saved_model

            try:
                model_path, stats = saved_model(result)
                model = algo_class(result["algo"]).load(model_path, device="cpu")
            except SystemExit as missing:  # runs/ is scratch space: check what is still there
                print(f"(not checked: {missing})")
        starts, returns = final_start_states(result, curve_rows, model, stats)
        recorded = result["final_eval"]["returns"]
        if model is not None and not np.allclose(returns, recorded, atol=1e-3):
            raise SystemExit(f"{path}: the replay does not reproduce the recorded final ({returns} vs {recorded})")
        planned = plan(starts, values, 401, args.gamma)
        pairs = ", ".join(f"{r:.0f}/{p:.0f}" for r, p in zip(recorded, planned, strict=True))
        print(
            f"| {path} | {np.mean(recorded):.1f} | {planned.mean():.1f} | {pairs} |"
            + (" replay reproduces the recorded returns |" if model is not None else ""),
            flush=True,
        )


if __name__ == "__main__":
    main()
