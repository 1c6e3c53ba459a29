"""Wrappers that hyperparameter entries name: the same observations as the environment argument they stand for."""

from __future__ import annotations

import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("mujoco")

from sb3_trpo_plus import TRPOPlus
from sb3_trpo_plus.wrappers import DropContactForces


@pytest.mark.parametrize(("env_id", "size"), [("Ant-v5", 27), ("Humanoid-v5", 270)])
def test_drop_contact_forces_matches_env_argument(env_id: str, size: int) -> None:
    wrapped = DropContactForces(gym.make(env_id))
    reference = gym.make(env_id, include_cfrc_ext_in_observation=False)
    assert wrapped.observation_space == reference.observation_space
    assert wrapped.observation_space.shape == (size,)
    obs, _ = wrapped.reset(seed=5)
    expected, _ = reference.reset(seed=5)
    np.testing.assert_array_equal(obs, expected)
    wrapped.action_space.seed(5)
    contact_seen = False
    for _ in range(100):
        action = wrapped.action_space.sample()
        obs, reward, terminated, truncated, _ = wrapped.step(action)
        expected, expected_reward, *_ = reference.step(action)
        np.testing.assert_array_equal(obs, expected)
        assert reward == expected_reward
        contact_seen |= bool(np.any(wrapped.unwrapped.data.cfrc_ext))  # type: ignore[attr-defined]
        if terminated or truncated:
            break
    assert contact_seen  # the dropped entries were not all zero: the wrapper removed real information


@pytest.mark.parametrize(("env_id", "kwargs"), [("Ant-v5", {"include_cfrc_ext_in_observation": False}), ("Pendulum-v1", {})])
def test_drop_contact_forces_rejects_env_without_them(env_id: str, kwargs: dict) -> None:
    with pytest.raises(ValueError, match=f"DropContactForces: env '{env_id}' .*include_cfrc_ext_in_observation"):
        DropContactForces(gym.make(env_id, **kwargs))


@pytest.mark.slow
def test_zoo_entry_with_wrapper_trains_and_evaluates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``env_wrapper:`` reaches the Zoo's evaluation env too (a YAML ``env_kwargs`` does not, in rl_zoo3 2.9.2)."""
    pytest.importorskip("rl_zoo3")
    import rl_zoo3.train

    conf = tmp_path / "ant.yml"
    conf.write_text(
        "Ant-v5:\n  n_timesteps: 128\n  policy: MlpPolicy\n  normalize: true\n  n_steps: 64\n  batch_size: 64\n"
        "  env_wrapper: sb3_trpo_plus.wrappers.DropContactForces\n"
    )
    argv = ["--algo", "trpo_plus", "--env", "Ant-v5", "-f", str(tmp_path), "-conf", str(conf), "--seed", "1"]
    argv += ["--num-threads", "1", "--eval-freq", "64", "--eval-episodes", "1", "--n-eval-envs", "1"]
    monkeypatch.setattr(sys, "argv", ["train.py", *argv])
    rl_zoo3.train.train()
    run = tmp_path / "trpo_plus" / "Ant-v5_1"
    evaluations = np.load(run / "evaluations.npz")
    assert evaluations["results"].shape == (2, 1)  # evaluated at 64 and 128 steps, on the wrapped env
    model = TRPOPlus.load(run / "Ant-v5.zip")
    assert model.observation_space.shape == (27,)
