"""Model files saved by a released state of the package, and what they did: later versions must load them and act
as they did (issue 44, item 5: "model files saved by earlier versions load and act as before").

Each case is a short run of one family with the defaults of its time (observation normalization and the PopArt
critic on), saved as ``tests/data/<name>.zip`` beside ``<name>.npz``: observations, the deterministic actions and the
values the model gave for them, and its return statistics. ``tests/test_saved_models.py`` loads each file and
compares. Files of a new version are added (under a new name), never rewritten::

    python -m tests.saved_models --write TAG      # e.g. TAG = the short commit
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th

DATA = Path(__file__).resolve().parent / "data"


def _masked_cartpole() -> gym.Env:
    from sb3_contrib.common.wrappers import ActionMasker

    return ActionMasker(gym.make("CartPole-v1"), lambda env: np.array([True, True]))


#: family -> (algorithm class name, policy, env factory, constructor arguments)
CASES: dict[str, tuple[str, str, Callable[[], gym.Env], dict[str, Any]]] = {
    "plain": ("TRPOPlus", "MlpPolicy", lambda: gym.make("Pendulum-v1"), {}),
    "masked": ("MaskableTRPOPlus", "MlpPolicy", _masked_cartpole, {}),
    "recurrent": (
        "RecurrentTRPOPlus",
        "MlpLstmPolicy",
        lambda: gym.make("Pendulum-v1"),
        {"policy_kwargs": {"lstm_hidden_size": 16}},
    ),
}


def algorithm(name: str) -> type:
    import sb3_trpo_plus

    return getattr(sb3_trpo_plus, name)  # type: ignore[no-any-return]


def observations(env: gym.Env, count: int = 16) -> np.ndarray:
    """Observations from a fixed random walk of ``env``."""
    obs, _ = env.reset(seed=123)
    env.action_space.seed(123)
    collected = []
    for _ in range(count):
        collected.append(obs)
        obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            obs, _ = env.reset()
    return np.asarray(collected, dtype=np.float32)


def behaviour(model: Any, obs: np.ndarray) -> dict[str, np.ndarray]:
    """What a model does on ``obs``: deterministic actions (one batch; the recurrent family from a fresh state) and
    the critic's values."""
    recurrent = hasattr(model.policy, "lstm_actor")
    starts = {"episode_start": np.ones(len(obs), dtype=bool)} if recurrent else {}
    actions, _ = model.predict(obs, deterministic=True, **starts)
    with th.no_grad():
        tensor = th.as_tensor(obs)
        if recurrent:
            lstm = model.policy.lstm_critic or model.policy.lstm_actor
            zeros = th.zeros(lstm.num_layers, len(obs), lstm.hidden_size)
            values = model.policy.predict_values(tensor, (zeros, zeros), th.ones(len(obs)))
        else:
            values = model.policy.predict_values(tensor)
    return {"actions": np.asarray(actions), "values": values.numpy()}


def write(tag: str) -> None:
    for family, (algo, policy, make_env, kwargs) in CASES.items():
        name = f"{family}_{tag}"
        model = algorithm(algo)(policy, make_env(), n_steps=256, batch_size=64, seed=0, **kwargs)
        model.learn(512)
        model.save(DATA / f"{name}.zip")
        obs = observations(make_env())
        np.savez(DATA / f"{name}.npz", obs=obs, **behaviour(model, obs))
        print(f"wrote {name}.zip and {name}.npz")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", metavar="TAG", required=True, help="save the cases as <family>_<TAG>")
    args = parser.parse_args()
    th.set_num_threads(1)
    write(args.write)


if __name__ == "__main__":
    main()
