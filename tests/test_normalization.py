"""Normalization inside the policy: observation statistics in the features extractor, the critic on a PopArt return
scale, ``target_kl="auto"``; the switch back to the old update, the env stacks that normalize already, bad input."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.envs import IdentityEnvMultiBinary, IdentityEnvMultiDiscrete
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.running_mean_std import RunningMeanStd
from stable_baselines3.common.torch_layers import FlattenExtractor, NatureCNN
from stable_baselines3.common.vec_env import VecNormalize
from torch.nn.utils import parameters_to_vector

from sb3_trpo_plus import TRPOPlus
from sb3_trpo_plus.normalization import (
    NormalizedCombinedExtractor,
    NormalizedFlattenExtractor,
    ObservationNormalizer,
    observation_normalizers,
)
from sb3_trpo_plus.statistics import merge_higher_moments
from sb3_trpo_plus.validation import NonFiniteObservationError
from tests.helpers import collect
from tests.test_faults import NonFiniteEnv

DATA = Path(__file__).parent / "data"
OFF = {"normalize_observations": False, "normalize_values": False}


def statistics(model: TRPOPlus) -> list[tuple[np.ndarray, np.ndarray, float]]:
    return [(n.mean.numpy().copy(), n.var.numpy().copy(), float(n.count)) for n in observation_normalizers(model.policy)]


class ScaledReward(gym.Wrapper):
    def __init__(self, env: gym.Env, scale: float):
        super().__init__(env)
        self.scale = scale

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, self.scale * reward, terminated, truncated, info


class BigUnits(gym.ObservationWrapper):
    """Pendulum in other units: observations offset by 500 and scaled by 100."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.observation_space = spaces.Box(-np.inf, np.inf, env.observation_space.shape, np.float32)

    def observation(self, observation):
        return (500.0 + 100.0 * observation).astype(np.float32)


def test_default_mlp_policy_normalizes_and_saves_the_statistics_in_the_policy(tmp_path: Path) -> None:
    model = TRPOPlus("MlpPolicy", BigUnits(gym.make("Pendulum-v1")), n_steps=128, batch_size=64, seed=0)
    assert type(model.policy.features_extractor) is NormalizedFlattenExtractor
    assert model.policy_kwargs["features_extractor_class"] is NormalizedFlattenExtractor
    model.learn(256)
    (mean, var, count), *_ = statistics(model)
    assert count == pytest.approx(128 + 1e-4)  # the first rollout only: the second is taken in at the next rollout
    assert np.all(np.abs(mean - 500.0) < 150.0) and np.all(var > 1.0)
    keys = model.policy.state_dict().keys()
    assert {"features_extractor.normalizer.mean", "features_extractor.normalizer.var"} <= keys
    model.save(tmp_path / "model.zip")
    loaded = TRPOPlus.load(tmp_path / "model.zip")  # no env, no second file
    obs = np.stack([500.0 + 100.0 * model.observation_space.sample().clip(-1, 1) for _ in range(32)]).astype(np.float32)
    np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], model.predict(obs, deterministic=True)[0])
    np.testing.assert_array_equal(loaded.policy.predict(obs, deterministic=True)[0], model.predict(obs, deterministic=True)[0])
    assert statistics(loaded)[0][2] == count
    assert loaded.value_normalizer is not None and loaded.value_normalizer.count == model.value_normalizer.count


def test_statistics_change_between_updates_only_and_log_probs_stay_exact() -> None:
    """Each rollout's stored log-probabilities and values are those of the policy its update starts from; the
    statistics take in a rollout (all of its observations, RunningMeanStd's way) when the next one starts."""
    seen: list[dict] = []

    class Check(BaseCallback):
        def _on_rollout_end(self) -> None:
            buffer = self.model.rollout_buffer
            obs = th.as_tensor(buffer.swap_and_flatten(buffer.observations))
            actions = th.as_tensor(buffer.swap_and_flatten(buffer.actions))
            with th.no_grad():
                values, log_prob, _ = self.model.policy.evaluate_actions(obs, actions)
            seen.append(
                {
                    "log_prob": float((log_prob - th.as_tensor(buffer.log_probs).T.flatten()).abs().max()),
                    "values": float((values.flatten() - th.as_tensor(buffer.values).T.flatten()).abs().max()),
                    "obs": buffer.observations.reshape(-1, 3).copy(),
                    "stats": statistics(self.model)[0],
                }
            )

        def _on_step(self) -> bool:
            return True

    model = TRPOPlus("MlpPolicy", BigUnits(gym.make("Pendulum-v1")), n_steps=128, batch_size=64, seed=1)
    model.learn(3 * 128, callback=Check())
    expected = RunningMeanStd(shape=(3,))
    for k, entry in enumerate(seen):
        assert entry["log_prob"] < 1e-5 and entry["values"] < 1e-3, k
        np.testing.assert_allclose(entry["stats"][0], expected.mean, rtol=1e-6)
        np.testing.assert_allclose(entry["stats"][1], expected.var, rtol=1e-5)
        expected.update(entry["obs"].astype(np.float64))


def test_nan_observation_is_reported_and_statistics_stay() -> None:
    model = TRPOPlus("MlpPolicy", NonFiniteEnv("observation", {150}), n_steps=64, batch_size=32, seed=0)
    model.learn(128)
    before = statistics(model)
    with pytest.raises(NonFiniteObservationError, match=r"non-finite .* observation"):
        model.learn(64, reset_num_timesteps=False)  # the rollout starts: statistics take in rollout 2; step 150: NaN
    after = statistics(model)
    assert after[0][2] == before[0][2] + 64  # the clean rollout, nothing of the broken one
    assert all(np.isfinite(mean).all() and np.isfinite(var).all() for mean, var, _ in after)


def test_infinite_observation_is_reported_as_without_normalization() -> None:
    normalizer = ObservationNormalizer(2)
    out = normalizer(th.tensor([[np.inf, 1.0], [-np.inf, 50.0], [np.nan, 0.0]]))
    assert th.isnan(out[:, 0]).all() and out[0, 1] == 1.0 and out[1, 1] == 10.0  # clipped only when finite


def test_non_finite_rows_never_enter_and_constant_features_stay_finite() -> None:
    clean = np.array([[1.0, 5.0], [3.0, 5.0], [2.0, 5.0]])
    dirty = np.vstack([clean, [[np.nan, 5.0], [np.inf, 1.0]]])
    a, b = ObservationNormalizer(2), ObservationNormalizer(2)
    a.update(clean)
    b.update(dirty)
    assert th.equal(a.mean, b.mean) and th.equal(a.var, b.var) and float(a.count) == float(b.count)
    assert float(a.var[1]) < 1e-3  # the constant feature: none but RunningMeanStd's prior
    out = a(th.tensor([[2.0, 5.0], [2.0, 5.5]]))
    assert th.isfinite(out).all() and abs(float(out[0, 1])) < 0.01 and out[1, 1] == 10.0  # clipped, as VecNormalize


def test_popart_statistics_preserve_the_policys_values() -> None:
    """Updating the return statistics never changes a value the policy outputs (n_critic_updates=0: only the
    statistics and the head's round trip through normalized coordinates)."""
    model = TRPOPlus("MlpPolicy", ScaledReward(gym.make("Pendulum-v1"), 100.0), n_steps=128, n_critic_updates=0, seed=0)
    obs = th.as_tensor(np.stack([model.observation_space.sample() for _ in range(64)]))
    collect(model)
    with th.no_grad():
        before = model.policy.predict_values(obs)
    model.train()
    with th.no_grad():
        after = model.policy.predict_values(obs)
    assert abs(float(model.value_normalizer.mean)) > 100.0  # the statistics moved far from (0, 1)
    assert th.allclose(after, before, rtol=1e-5, atol=1e-5)


def test_critic_fits_any_reward_scale() -> None:
    """With the default learning rate, the critic explains the returns at reward scale 0.01 and at 1000 (the
    normalized problem is the same up to the data); on the returns' own scale it explains nothing at 1000.
    (Explained variance of each rollout by the values predicted when it was collected, mean of updates 5-8.)"""
    explained = {}

    class Log(BaseCallback):
        def _on_rollout_start(self) -> None:
            values.append(self.model.logger.name_to_value.get("train/explained_variance", float("nan")))

        def _on_step(self) -> bool:
            return True

    for scale, normalize_values in ((0.01, True), (1000.0, True), (1000.0, False)):
        values: list[float] = []
        env = ScaledReward(gym.make("Pendulum-v1"), scale)
        model = TRPOPlus("MlpPolicy", env, n_steps=512, seed=0, normalize_values=normalize_values)
        model.learn(9 * 512, callback=Log())
        explained[(scale, normalize_values)] = float(np.mean(values[5:9]))
    assert explained[(0.01, True)] > 0.3 and explained[(1000.0, True)] > 0.3, explained
    assert explained[(1000.0, False)] < 0.1, explained


def test_vec_normalize_stack_gets_the_old_update_and_is_told_once(capsys: pytest.CaptureFixture) -> None:
    params = {}
    for kwargs in ({"verbose": 1}, OFF):
        venv = VecNormalize(make_vec_env("Pendulum-v1", n_envs=2, seed=0))
        model = TRPOPlus("MlpPolicy", venv, n_steps=64, batch_size=64, seed=0, target_kl=0.01, **kwargs)
        assert type(model.policy.features_extractor) is FlattenExtractor and model.value_normalizer is None
        model.learn(256)
        params[bool(kwargs.get("verbose"))] = parameters_to_vector(model.policy.parameters()).detach()
    assert th.equal(params[True], params[False])
    out = capsys.readouterr().out
    assert out.count("the env stack's VecNormalize normalizes the observations") == 1
    assert out.count("the critic fits the returns on their own scale, as the env stack has a VecNormalize") == 1


def test_the_switch_gives_the_old_defaults_policy_and_extractor() -> None:
    model = TRPOPlus("MlpPolicy", "Pendulum-v1", seed=0, **OFF)
    assert type(model.policy.features_extractor) is FlattenExtractor and model.value_normalizer is None
    assert "features_extractor_class" not in model.policy_kwargs


def test_image_observations_are_never_normalized() -> None:
    from stable_baselines3.common.envs import FakeImageEnv

    model = TRPOPlus("CnnPolicy", FakeImageEnv(screen_height=36, screen_width=36), n_steps=32, batch_size=32)
    assert type(model.policy.features_extractor) is NatureCNN and not observation_normalizers(model.policy)
    with pytest.raises(ValueError, match=r"normalize_observations=True: image observations are never normalized"):
        TRPOPlus("CnnPolicy", FakeImageEnv(screen_height=36, screen_width=36), normalize_observations=True)


def test_dict_observations_normalize_the_vector_entries_only() -> None:
    from stable_baselines3.common.envs import SimpleMultiObsEnv

    model = TRPOPlus("MultiInputPolicy", SimpleMultiObsEnv(random_start=False), n_steps=64, batch_size=64, seed=0)
    extractor = model.policy.features_extractor
    assert type(extractor) is NormalizedCombinedExtractor
    assert type(extractor.extractors["vec"]) is NormalizedFlattenExtractor and type(extractor.extractors["img"]) is NatureCNN
    model.learn(128)
    model.learn(64, reset_num_timesteps=False)
    (normalizer,) = observation_normalizers(model.policy)
    assert normalizer.key == "vec" and float(normalizer.count) == pytest.approx(128 + 1e-4)


class OwnValues(ActorCriticPolicy):
    def predict_values(self, obs):  # type: ignore[no-untyped-def]
        return super().predict_values(obs) + 1.0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"normalize_observations": "yes"}, r"Invalid normalize_observations='yes': expected True, False or 'auto'"),
        ({"normalize_values": 1.5}, r"Invalid normalize_values=1.5: expected True, False or 'auto'"),
        ({"target_kl": "big"}, r"Invalid target_kl='big': expected 'auto', a number > 0 or a schedule"),
        (
            {"normalize_observations": True, "policy_kwargs": {"features_extractor_class": NatureCNN}},
            r"normalize_observations=True: policy_kwargs chooses features_extractor_class=NatureCNN",
        ),
    ],
)
def test_bad_settings_name_the_argument(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TRPOPlus("MlpPolicy", "Pendulum-v1", **kwargs)


def test_values_not_from_value_net_are_not_rescaled(capsys: pytest.CaptureFixture) -> None:
    model = TRPOPlus(OwnValues, "Pendulum-v1", n_steps=64, verbose=1)
    assert model.value_normalizer is None  # "auto" declines, and says why
    assert "OwnValues's values are not the output of its value_net Linear layer" in capsys.readouterr().out
    with pytest.raises(ValueError, match=r"Invalid normalize_values=True: OwnValues's values are not the output"):
        TRPOPlus(OwnValues, "Pendulum-v1", normalize_values=True)


@pytest.mark.parametrize(
    "env, radius", [(lambda: IdentityEnvMultiBinary(3), 0.03), (lambda: IdentityEnvMultiDiscrete(3), 0.01)]
)
def test_auto_target_kl_is_sb3_contribs_default(env, radius: float) -> None:  # type: ignore[no-untyped-def]
    assert TRPOPlus("MlpPolicy", env(), n_steps=64)._current_target_kl() == pytest.approx(radius)


def test_model_saved_before_normalization_loads_and_acts_as_before() -> None:
    """A file saved by TRPOPlus before normalization existed (ffd9cac): same actions and values, no statistics."""
    expected = np.load(DATA / "trpo_plus_ffd9cac_pendulum.npz")
    model = TRPOPlus.load(DATA / "trpo_plus_ffd9cac_pendulum.zip", env=gym.make("Pendulum-v1"))
    assert not observation_normalizers(model.policy) and model.target_kl == 0.01
    np.testing.assert_array_equal(model.predict(expected["obs"], deterministic=True)[0], expected["actions"])
    with th.no_grad():
        values = model.policy.predict_values(th.as_tensor(expected["obs"])).numpy()
    np.testing.assert_array_equal(values, expected["values"])
    model.learn(128, reset_num_timesteps=False)  # and trains on


@pytest.mark.parametrize("family", ["MaskableTRPOPlus", "RecurrentTRPOPlus"])
def test_families_normalize_box_observations(family: str, tmp_path: Path) -> None:
    import sb3_trpo_plus

    algo = getattr(sb3_trpo_plus, family)
    if family == "MaskableTRPOPlus":
        from sb3_contrib.common.wrappers import ActionMasker

        env = ActionMasker(BigUnits(gym.make("CartPole-v1")), lambda env: np.ones(2, dtype=bool))
        model = algo("MlpPolicy", env, n_steps=64, batch_size=64, seed=0)
    else:
        env = BigUnits(gym.make("Pendulum-v1"))
        model = algo("MlpLstmPolicy", env, n_steps=64, batch_size=64, seed=0, policy_kwargs={"lstm_hidden_size": 8})
    assert type(model.policy.features_extractor) is NormalizedFlattenExtractor and model.value_normalizer is not None
    model.learn(128)
    model.learn(64, reset_num_timesteps=False)
    assert statistics(model)[0][2] == pytest.approx(128 + 1e-4) and model.value_normalizer.count > 128
    model.save(tmp_path / "family.zip")
    loaded = algo.load(tmp_path / "family.zip")
    obs = np.stack([env.observation_space.sample().clip(0, 600) for _ in range(8)]).astype(np.float32)
    np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], model.predict(obs, deterministic=True)[0])


def actor_after_updates(scale: float, updates: int = 3) -> th.Tensor:
    """The actor's parameters after ``updates`` updates on Hopper-v5 with its rewards times ``scale``."""
    model = TRPOPlus("MlpPolicy", ScaledReward(gym.make("Hopper-v5"), scale), n_steps=256, batch_size=64, seed=3)
    assert not model.policy.value_net.weight.any() and not model.policy.value_net.bias.any()  # starts at zero
    model.learn(updates * 256)
    actor = [param for name, param in model.policy.named_parameters() if "value" not in name]
    return th.cat([param.detach().flatten() for param in actor])


def test_rewards_in_any_units_make_the_same_updates() -> None:
    """Rewards times 100 or times 0.01 give the actor the same updates as the rewards themselves, from the first
    update on (the value head starts at zero, the critic fits on the PopArt scale, advantages are normalized): after
    three updates the actor's parameters agree to float rounding (measured: 3e-6 and 4e-6 at most; SB3's initial
    value head, kept before this, left them 0.15 and 0.21 apart)."""
    reference = actor_after_updates(1.0)
    for scale in (100.0, 0.01):
        assert (actor_after_updates(scale) - reference).abs().max() < 1e-4, scale


def test_a_value_head_on_the_returns_own_scale_keeps_sb3s_initialization() -> None:
    model = TRPOPlus("MlpPolicy", "Pendulum-v1", n_steps=64, normalize_values=False, seed=0)
    assert model.policy.value_net.weight.abs().sum() > 0


def test_higher_moments_merge_as_if_computed_at_once() -> None:
    """Pébay's pairwise formulas: merging a second batch gives the third and fourth central moments of both."""
    rng = np.random.default_rng(0)
    first, second = rng.standard_exponential((500, 3)), 2.0 * rng.standard_exponential((300, 3)) + 1.0

    def moments(x: np.ndarray) -> tuple[np.ndarray, ...]:
        centred = x - x.mean(axis=0)
        return x.mean(axis=0), (centred**2).mean(axis=0), (centred**3).mean(axis=0), (centred**4).mean(axis=0)

    mean, var, third, fourth = moments(first)
    merged = merge_higher_moments(len(first), mean, var, third, fourth, second)
    expected = moments(np.concatenate([first, second]))[2:]
    np.testing.assert_allclose(merged, expected, rtol=1e-10)


def sparse_and_gaussian(n: int, seed: int = 0) -> np.ndarray:
    """Two features: a Gaussian one, and a sparse one (zero except on 1% of the rows, where it is about 5)."""
    rng = np.random.default_rng(seed)
    sparse = np.where(rng.random(n) < 0.01, 5.0 + rng.normal(size=n), 0.0)
    return np.stack([rng.normal(size=n), sparse], axis=1)


def test_heavy_tails_shrink_sparse_features_only_and_keep_units_invariant() -> None:
    data = sparse_and_gaussian(20_000)
    plain, shrunk = ObservationNormalizer(2), ObservationNormalizer(2, heavy_tails=True)
    for normalizer in (plain, shrunk):
        normalizer.update(data)
    spikes = th.as_tensor(data[data[:, 1] > 0], dtype=th.float32)
    with th.no_grad():
        assert plain(spikes)[:, 1].abs().mean() > 8.0  # about 1/sqrt(0.01): near the clip
        assert shrunk(spikes)[:, 1].abs().mean() < 2.5  # of order 1
        ratio = shrunk.std() / plain.std()
    assert ratio[0] == pytest.approx(1.0, abs=0.02)  # the Gaussian feature: as without it
    assert ratio[1] > 4.0
    scaled = ObservationNormalizer(2, heavy_tails=True)
    scaled.update(data * np.array([1000.0, 0.1]))  # other units for each feature (variances well above epsilon)
    with th.no_grad():
        same = scaled(spikes * th.tensor([1000.0, 0.1]))
        th.testing.assert_close(same, shrunk(spikes), rtol=1e-4, atol=1e-4)


def test_heavy_tails_learn_on_the_fast_paths_as_on_the_generic_ones_and_save(tmp_path: Path) -> None:
    """A policy with the option: the fast paths read the same divisor, its moments are saved and loaded."""
    kwargs = {"policy_kwargs": {"features_extractor_kwargs": {"heavy_tails": True}}, "n_steps": 128, "seed": 0}
    models = {fast: TRPOPlus("MlpPolicy", "Pendulum-v1", fast_paths=fast, **kwargs).learn(384) for fast in (True, False)}
    assert models[True]._fast_paths_plan() is not None  # the fast paths serve it
    normalizer = observation_normalizers(models[True].policy)[0]
    assert normalizer.heavy_tails and float(normalizer.count) == pytest.approx(256 + 1e-4)
    vectors = [parameters_to_vector(model.policy.parameters()).detach() for model in models.values()]
    th.testing.assert_close(vectors[0], vectors[1], rtol=1e-4, atol=1e-4)
    models[True].save(tmp_path / "tails.zip")
    loaded = TRPOPlus.load(tmp_path / "tails.zip")
    th.testing.assert_close(observation_normalizers(loaded.policy)[0].fourth, normalizer.fourth)
