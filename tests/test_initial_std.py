"""The initial action std of a new policy (``TRPOPlus.INITIAL_ACTION_STD``, round 4 of ``benchmarks/defaults``):
0.5 for Box actions without gSDE, unless the user chose one or the policy class takes none; sb3-contrib's std 1
through the drop-in ``TRPO``."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch as th
from stable_baselines3.common.policies import ActorCriticPolicy

import sb3_trpo_plus
from sb3_trpo_plus import MaskableTRPOPlus, RecurrentTRPOPlus, TRPOPlus
from sb3_trpo_plus.policies import select_initial_action_std

SMALL = {"n_steps": 64, "batch_size": 32, "seed": 0}


def stds(model: TRPOPlus) -> np.ndarray:
    """The policy's initial action std, one per action dimension."""
    return th.exp(model.policy.log_std).detach().numpy()


def test_box_actions_start_from_std_half_and_a_saved_model_keeps_it(tmp_path: Path) -> None:
    model = TRPOPlus("MlpPolicy", "HalfCheetah-v5", **SMALL)
    np.testing.assert_allclose(stds(model), np.full(6, 0.5), rtol=1e-6)
    assert model.policy_kwargs["log_std_init"] == pytest.approx(math.log(0.5))
    model.learn(64)
    model.save(tmp_path / "model.zip")
    loaded = TRPOPlus.load(tmp_path / "model.zip")
    assert loaded.policy_kwargs["log_std_init"] == pytest.approx(math.log(0.5))
    np.testing.assert_array_equal(stds(loaded), stds(model))


def test_the_users_log_std_init_wins() -> None:
    model = TRPOPlus("MlpPolicy", "Pendulum-v1", policy_kwargs={"log_std_init": -1.0}, **SMALL)
    np.testing.assert_allclose(stds(model), [math.exp(-1.0)], rtol=1e-6)


def test_gsde_discrete_actions_and_the_dropin_keep_their_own_std() -> None:
    gsde = TRPOPlus("MlpPolicy", "Pendulum-v1", use_sde=True, **SMALL)
    assert "log_std_init" not in gsde.policy_kwargs  # gSDE's log_std_init means another thing
    discrete = TRPOPlus("MlpPolicy", "CartPole-v1", **SMALL)
    assert "log_std_init" not in discrete.policy_kwargs
    dropin = sb3_trpo_plus.TRPO("MlpPolicy", "HalfCheetah-v5", **SMALL)  # sb3_contrib.TRPO's policies: std 1
    np.testing.assert_array_equal(stds(dropin), np.ones(6, np.float32))
    assert MaskableTRPOPlus.INITIAL_ACTION_STD == TRPOPlus.INITIAL_ACTION_STD  # Discrete actions only: no effect


def test_recurrent_box_actions_start_from_std_half() -> None:
    model = RecurrentTRPOPlus("MlpLstmPolicy", "Pendulum-v1", policy_kwargs={"lstm_hidden_size": 8}, **SMALL)
    np.testing.assert_allclose(stds(model), [0.5], rtol=1e-6)


class NoStdPolicy(ActorCriticPolicy):
    """A user's policy class whose constructor takes no ``log_std_init``."""

    def __init__(
        self, observation_space: Any, action_space: Any, lr_schedule: Any, net_arch: Any = None, use_sde: bool = False
    ) -> None:
        super().__init__(observation_space, action_space, lr_schedule, net_arch=net_arch, use_sde=use_sde)


def test_a_policy_without_log_std_init_keeps_its_std_and_the_user_is_told(capsys: pytest.CaptureFixture[str]) -> None:
    model = TRPOPlus(NoStdPolicy, "Pendulum-v1", verbose=1, **SMALL)
    np.testing.assert_array_equal(stds(model), [1.0])
    assert "NoStdPolicy takes no log_std_init, so its actions start with its own std (not 0.5)" in capsys.readouterr().out


def test_selection_returns_new_kwargs_and_leaves_the_users_dict_alone() -> None:
    from gymnasium import spaces

    box = spaces.Box(-1, 1, (2,))
    given: dict[str, Any] = {"net_arch": [8]}
    chosen, note = select_initial_action_std(0.5, box, False, ActorCriticPolicy, given)
    assert chosen == {"net_arch": [8], "log_std_init": math.log(0.5)}
    assert note == "Box actions start from std 0.5 (log_std_init=-0.6931; policy_kwargs={'log_std_init': 0.0} gives SB3's 1)"
    assert given == {"net_arch": [8]}
    assert select_initial_action_std(None, box, False, ActorCriticPolicy, given) == (given, None)
