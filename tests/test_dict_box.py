"""A Dict observation with one vector key and the same env flattened to a Box are the same problem: TRPOPlus must
train the same policy on both, as SB3's ``tests/test_dict_env.py::test_consistency`` requires of every algorithm
(``MultiInputPolicy`` on the Dict against ``MlpPolicy`` on ``FlattenObservation`` of it, 128 steps)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.torch_layers import CombinedExtractor
from torch.nn.utils import parameters_to_vector

from sb3_trpo_plus import TRPOPlus, fast_paths
from sb3_trpo_plus.fast_paths import rollout as fast_rollout
from sb3_trpo_plus.normalization import observation_normalizers


class VectorDictEnv(gym.Env):
    """Observations drawn from a Dict space with vector keys only (SB3's ``DummyDictEnv(vec_only=True)`` with
    ``"vec"``); the reward is 0 as there, or, with ``rewarded``, the product of the first coordinates of the
    observation and the action (something to learn under any critic)."""

    def __init__(self, keys: tuple[str, ...] = ("vec",), rewarded: bool = False):
        super().__init__()
        self.action_space = spaces.Box(low=-1, high=1, shape=(2,), dtype=np.float32)
        self.observation_space = spaces.Dict({key: spaces.Box(low=-1, high=1, shape=(2,), dtype=np.float32) for key in keys})
        self.rewarded = rewarded
        self._obs: dict[str, np.ndarray] = {}

    def _draw(self) -> dict[str, np.ndarray]:
        self._obs = self.observation_space.sample()
        return self._obs

    def step(self, action: np.ndarray) -> tuple[dict[str, np.ndarray], float, bool, bool, dict]:
        reward = float(self._obs["vec"][0] * action[0]) if self.rewarded else 0.0
        return self._draw(), reward, False, False, {}

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict[str, np.ndarray], dict]:
        if seed is not None:
            self.observation_space.seed(seed)
        return self._draw(), {}


def consistency_runs(rewarded: bool, steps: int = 128, **kwargs: Any) -> list[tuple[TRPOPlus, np.ndarray, np.ndarray]]:
    """SB3's ``test_consistency`` for TRPOPlus: one env seen as a Dict and, through ``FlattenObservation``, as a Box,
    ``gamma=0.5, seed=1, n_steps=64, net_arch=[8, 8]`` (and ``batch_size=64``, the rollout's size: TRPOPlus's default
    128 makes the same one minibatch, with a warning); each model built, asked for its deterministic action on the
    env's first observation, trained for ``steps`` steps and asked again, the Dict's first (in this order: each
    model's seed sets torch's global random stream). Returns ``(model, action before, action after)`` for each."""
    inner = VectorDictEnv(rewarded=rewarded)
    inner.observation_space.seed(10)
    dict_env = gym.wrappers.TimeLimit(inner, 100)
    box_env = gym.wrappers.FlattenObservation(dict_env)
    obs, _ = dict_env.reset()
    arguments = dict(gamma=0.5, seed=1, n_steps=64, batch_size=64, policy_kwargs={"net_arch": [8, 8]}, **kwargs)
    runs = []
    for policy, env, seen in (("MultiInputPolicy", dict_env, obs), ("MlpPolicy", box_env, obs["vec"])):
        model = TRPOPlus(policy, env, **arguments)
        before = model.predict(seen, deterministic=True)[0]
        if steps:
            model.learn(total_timesteps=steps)
        runs.append((model, before, model.predict(seen, deterministic=True)[0]))
    return runs


@pytest.mark.parametrize("normalize_observations", ["auto", False])
@pytest.mark.parametrize(
    ("rewarded", "normalize_values"),
    # SB3's env (reward 0) with SB3's initial value head, which makes advantages to learn from; a rewarded env with
    # the defaults (with reward 0 the PopArt critic's head starts at zero: no advantages, nothing learnt)
    [(False, False), (True, "auto")],
    ids=["sb3_env", "rewarded_env"],
)
def test_one_key_dict_trains_as_its_box(rewarded: bool, normalize_values: Any, normalize_observations: Any) -> None:
    """SB3's ``test_consistency``, more strictly: the same actions before and after learning, and the same
    parameters, bit for bit (the two runs take the same paths, so the same arithmetic), not only ``np.allclose``."""
    (dict_model, dict_before, dict_after), (box_model, box_before, box_after) = consistency_runs(
        rewarded, normalize_values=normalize_values, normalize_observations=normalize_observations
    )
    np.testing.assert_array_equal(dict_before, box_before)
    assert not np.array_equal(dict_after, dict_before), "the policy did not learn: the comparison would be vacuous"
    np.testing.assert_array_equal(dict_after, box_after)
    vectors = [parameters_to_vector(model.policy.parameters()).detach() for model in (dict_model, box_model)]
    th.testing.assert_close(*vectors, rtol=0, atol=0)


@pytest.mark.parametrize("normalize_observations", ["auto", False])
def test_fast_paths_serve_a_one_key_dict_as_its_box(normalize_observations: Any) -> None:
    """The plan of a one-key Dict reads its key and computes the Box's features, and the NumPy rollout forward serves
    it; a Dict with two vector keys keeps the policy's own extractor, as does a subclass of SB3's extractor."""
    runs = consistency_runs(False, steps=0, normalize_observations=normalize_observations, device="cpu")
    (dict_model, _, _), (box_model, _, _) = runs
    dict_plan, box_plan = fast_paths.plan(dict_model.policy), fast_paths.plan(box_model.policy)
    assert dict_plan is not None and box_plan is not None
    assert (dict_plan.features, dict_plan.key) == (box_plan.features, "vec")
    assert box_plan.features is not None and box_plan.key is None
    forward = fast_paths.rollout_forward(dict_plan)
    assert getattr(forward, "takes_numpy", False)

    class OwnCombined(CombinedExtractor):
        pass

    def planned(keys: tuple[str, ...] = ("vec",), **kwargs: Any) -> fast_paths.Plan:
        model = TRPOPlus("MultiInputPolicy", VectorDictEnv(keys=keys), n_steps=64, batch_size=64, device="cpu", **kwargs)
        plan = fast_paths.plan(model.policy)
        assert plan is not None
        return plan

    separate = planned(normalize_observations=normalize_observations, policy_kwargs={"share_features_extractor": False})
    # separate normalizers are called as they are (as for a Box); separate flattens are the same one function
    assert (separate.features, separate.key) == ((None, None) if normalize_observations == "auto" else ("flatten", "vec"))
    two_keys = planned(keys=("vec", "other"), normalize_observations=normalize_observations)
    subclass = planned(normalize_observations=False, policy_kwargs={"features_extractor_class": OwnCombined})
    for plan in (two_keys, subclass):
        assert plan.features is None and plan.key is None
        assert fast_rollout._feature_map(plan) is None and fast_rollout._numpy_feature_map(plan) is None


@pytest.mark.parametrize("use_numpy", [True, False], ids=["numpy", "torch"])
def test_one_key_dict_rollout_forward_is_the_box_forward(use_numpy: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """The NumPy and the torch rollout forwards of a one-key Dict give the Box model's actions, values and
    log-probabilities on the same observations and random stream, and SB3's values, with observation statistics
    that are not the identity map."""
    monkeypatch.setattr(fast_paths, "NUMPY", use_numpy)
    (dict_model, _, _), (box_model, _, _) = consistency_runs(False, steps=0, device="cpu")
    generator = np.random.default_rng(0)
    raw = generator.uniform(-3, 3, size=(16, 2)).astype(np.float32)
    assert th.equal(parameters_to_vector(dict_model.policy.parameters()), parameters_to_vector(box_model.policy.parameters()))
    normalizers = [*observation_normalizers(dict_model.policy), *observation_normalizers(box_model.policy)]
    assert len(normalizers) == 2
    for normalizer in normalizers:
        normalizer.update(raw * 2.0 + 1.0)  # the same statistics in both
    outputs = []
    for model, obs in ((dict_model, {"vec": raw}), (box_model, raw)):
        plan = fast_paths.plan(model.policy)
        assert plan is not None
        forward = fast_paths.rollout_forward(plan)
        assert not isinstance(forward, fast_paths.Declined)
        assert getattr(forward, "takes_numpy", False) is use_numpy
        obs_tensor = model.policy.obs_to_tensor(obs)[0]
        th.manual_seed(3)
        outputs.append(forward(obs if use_numpy else obs_tensor))  # type: ignore[arg-type]
        with th.no_grad():
            assert th.allclose(outputs[-1][1], model.policy.predict_values(obs_tensor), atol=1e-5)
    for dict_output, box_output in zip(*outputs, strict=True):
        assert th.equal(dict_output, box_output)
