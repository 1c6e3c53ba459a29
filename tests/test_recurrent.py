"""RecurrentTRPOPlus: the natural-gradient step over stored LSTM sequences, the critic's LSTM, states in and out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces

pytest.importorskip("sb3_contrib")

import sb3_contrib.ppo_recurrent
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

import sb3_trpo_plus.policy_step as policy_step_module
import sb3_trpo_plus.trpo_plus as trpo_module
from sb3_trpo_plus import RecurrentTRPOPlus, TRPOPlus
from sb3_trpo_plus.natural_gradient import hessian_fvp
from sb3_trpo_plus.recurrent import SequenceInput
from tests.helpers import collect

TINY = {"lstm_hidden_size": 3, "net_arch": {"pi": [], "vf": []}}


class CueEnv(gym.Env):
    """A memory task: the first observation is a cue (+1 or -1), the next ones are 0; the last of ``length`` steps
    pays 1 if its action names the cue. A feed-forward policy sees 0 there and cannot beat 1/2; an LSTM can reach 1."""

    observation_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
    action_space = spaces.Discrete(2)

    def __init__(self, length: int = 5) -> None:
        self.length = length

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.cue, self.t = int(self.np_random.integers(2)), 0
        return np.array([2.0 * self.cue - 1.0], np.float32), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.t += 1
        done = self.t == self.length
        return np.zeros(1, np.float32), float(done and int(action) == self.cue), done, False, {}


def actor_params(model: RecurrentTRPOPlus) -> list[th.nn.Parameter]:
    policy = model.policy
    params = [*policy.lstm_actor.parameters(), *policy.mlp_extractor.policy_net.parameters(), *policy.action_net.parameters()]
    return [*params, policy.log_std] if hasattr(policy, "log_std") else params


def row_kl(old: Any, new: Any) -> th.Tensor:
    """KL(old || new) per row from the torch distributions (summed over action dimensions)."""
    kl = th.distributions.kl_divergence(old.distribution, new.distribution)
    return kl.sum(dim=1) if kl.dim() > 1 else kl


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_lstm_fisher_vector_product_is_the_kl_hessian_over_real_steps(env_id: str) -> None:
    """Gauss-Newton FVP through the LSTM == double-backward Hessian of the KL averaged over the real (unpadded) steps
    of sequences with episode starts inside them, evaluated by sb3-contrib's own get_distribution."""
    model = RecurrentTRPOPlus("MlpLstmPolicy", env_id, n_steps=8, batch_size=8, cg_damping=0.0, policy_kwargs=TINY, seed=0)
    policy = model.policy
    generator = th.Generator().manual_seed(0)
    n_seq, length, lengths = 3, 5, [5, 4, 2]
    obs_dim = int(np.prod(model.observation_space.shape))  # type: ignore[arg-type]
    obs = th.randn(n_seq * length, obs_dim, generator=generator)
    starts = th.zeros(n_seq * length)
    starts[[0, 2, 5, 8, 10]] = 1.0  # episodes start inside sequences 0 and 1 too
    states = tuple(th.randn(1, n_seq, 3, generator=generator) for _ in range(2))
    real = th.tensor([i * length + t for i, n in enumerate(lengths) for t in range(n)])
    policy_input = SequenceInput(obs, states, starts, real)  # type: ignore[arg-type]
    params = actor_params(model)
    n = sum(p.numel() for p in params)

    distribution = model._distribution(policy_input)
    fvp = model._autograd_fisher_vector_product(policy_input, distribution, params)
    gauss_newton = th.stack([fvp(e) for e in th.eye(n)], dim=1)

    def kl_hessian(rows: th.Tensor) -> th.Tensor:
        with th.no_grad():  # policy.get_distribution returns the policy's one action_dist object: keep its torch part
            old = policy.get_distribution(obs, states, starts)[0].distribution
        new = policy.get_distribution(obs, states, starts)[0].distribution
        kl = th.distributions.kl_divergence(old, new)
        hessian = hessian_fvp((kl.sum(dim=1) if kl.dim() > 1 else kl)[rows].mean(), params)
        return th.stack([hessian(e) for e in th.eye(n)], dim=1)

    exact = kl_hessian(real)
    assert exact.abs().max() > 1e-3
    th.testing.assert_close(gauss_newton, exact, rtol=1e-4, atol=1e-6)
    # the padding is not in the mean: over every row the Hessian is another matrix
    assert (kl_hessian(th.arange(n_seq * length)) - gauss_newton).abs().max() > 1e-4
    # and the episode starts inside sequences reset the state: without them it is another matrix
    moved = model._distribution(policy_input._replace(episode_starts=th.zeros_like(starts)))
    assert not th.allclose(moved.distribution.mean, distribution.distribution.mean)


class RecordBatch:
    """Wraps ``_policy_batch`` to keep the batch ``train()`` stepped on."""

    def __init__(self, model: RecurrentTRPOPlus) -> None:
        self.original, self.batch = model._policy_batch, None

    def __call__(self, rollout: Any) -> Any:
        self.batch = self.original(rollout)
        return self.batch


UPDATE_CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "cartpole": ("CartPole-v1", {}),
    "pendulum": ("Pendulum-v1", {}),
    "pendulum_gsde": ("Pendulum-v1", {"use_sde": True, "sde_sample_freq": 4}),
    "cartpole_sub_sampling": ("CartPole-v1", {"sub_sampling_factor": 2, "fisher_sub_sampling": 3}),
}


@pytest.mark.parametrize("case", sorted(UPDATE_CASES))
@pytest.mark.parametrize("target_kl", [0.001, 0.05])
def test_update_stays_in_trust_region_and_improves(case: str, target_kl: float, monkeypatch: pytest.MonkeyPatch) -> None:
    env_id, extra = UPDATE_CASES[case]
    env = make_vec_env(env_id, n_envs=2, seed=0)
    kwargs = {"n_steps": 128, "batch_size": 64, "n_critic_updates": 1, "target_kl": target_kl, "seed": 2, **extra}
    model = RecurrentTRPOPlus("MlpLstmPolicy", env, policy_kwargs={"lstm_hidden_size": 8}, **kwargs)
    collect(model)
    record = RecordBatch(model)
    monkeypatch.setattr(model, "_policy_batch", record)
    with th.no_grad():
        snapshot = {name: param.clone() for name, param in model.policy.named_parameters()}
    model.train()
    policy_input, actions, old_log_prob, advantages = record.batch  # type: ignore[misc]
    # padded sequences; the real rows (every k-th with sub-sampling)
    assert len(policy_input.rows) == 256 // model.sub_sampling_factor and len(policy_input.episode_starts) > 256
    advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)

    def surrogate(distribution: Any) -> float:
        return float((advantages * th.exp(distribution.log_prob(actions) - old_log_prob)).mean())

    with th.no_grad():
        new = model._distribution(policy_input)
        after = {name: param.clone() for name, param in model.policy.named_parameters()}
        for name, param in model.policy.named_parameters():
            param.copy_(snapshot[name])
        old = model._distribution(policy_input)
    assert th.allclose(old.log_prob(actions), old_log_prob, atol=1e-5)  # the stored states rebuild the rollout
    kl = float(row_kl(old, new).mean())
    assert kl <= target_kl * (1 + 1e-5)
    assert surrogate(new) >= surrogate(old)
    assert model.logger.name_to_value["train/is_line_search_success"] == 1.0
    assert model.logger.name_to_value["train/kl"] == pytest.approx(kl, rel=1e-4, abs=1e-7)
    assert not th.equal(after["lstm_actor.weight_hh_l0"], snapshot["lstm_actor.weight_hh_l0"])


@pytest.mark.parametrize("critic", ["own_lstm", "shared_lstm"])
def test_forced_line_search_failure_restores_actor_bit_for_bit(critic: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The critic's regression moves the critic only, through its own LSTM or the shared one (left as it is)."""
    lstm = {"enable_critic_lstm": critic == "own_lstm", "shared_lstm": critic == "shared_lstm", "lstm_hidden_size": 8}
    model = RecurrentTRPOPlus(
        "MlpLstmPolicy", "Pendulum-v1", n_steps=64, batch_size=32, n_critic_updates=2, policy_kwargs=lstm
    )
    collect(model)
    before = {name: param.detach().clone() for name, param in model.policy.named_parameters()}
    monkeypatch.setattr(policy_step_module, "joint_kl", lambda old, new: th.full((len(new.distribution.loc),), th.inf))
    model.train()
    assert model.logger.name_to_value["train/is_line_search_success"] == 0.0
    assert np.isfinite(model.logger.name_to_value["train/value_loss"])
    moved = {name for name, param in model.policy.named_parameters() if not th.equal(param, before[name])}
    critic_prefixes = ("value_net", "mlp_extractor.value_net", "lstm_critic")
    assert moved and all(name.startswith(critic_prefixes) for name in moved), moved
    assert any(name.startswith("lstm_critic") for name in moved) == (critic == "own_lstm")


@pytest.mark.slow
def test_recurrent_agent_remembers_where_mlp_cannot() -> None:
    make = lambda: CueEnv(length=5)  # noqa: E731
    kwargs: dict[str, Any] = {"n_steps": 64, "batch_size": 64, "target_kl": 0.05, "seed": 0}
    recurrent = RecurrentTRPOPlus(
        "MlpLstmPolicy", make_vec_env(make, n_envs=4, seed=0), policy_kwargs={"lstm_hidden_size": 16}, **kwargs
    ).learn(3072)
    mlp = TRPOPlus("MlpPolicy", make_vec_env(make, n_envs=4, seed=0), **kwargs).learn(3072)
    eval_env = make_vec_env(make, n_envs=1, seed=1)
    recurrent_return, _ = evaluate_policy(recurrent, eval_env, n_eval_episodes=50, deterministic=True, warn=False)
    mlp_return, _ = evaluate_policy(mlp, eval_env, n_eval_episodes=50, deterministic=True, warn=False)
    assert recurrent_return == 1.0
    assert mlp_return < 0.75


def test_save_load_identical_actions_with_lstm_states(tmp_path: Path) -> None:
    env = make_vec_env(lambda: CueEnv(length=5), n_envs=2, seed=0)
    model = RecurrentTRPOPlus("MlpLstmPolicy", env, n_steps=32, batch_size=32, policy_kwargs={"lstm_hidden_size": 8}, seed=0)
    model.learn(128)
    model.save(tmp_path / "model.zip")
    loaded = RecurrentTRPOPlus.load(tmp_path / "model.zip", env=env)
    obs = env.reset()
    states: Any = None
    loaded_states: Any = None
    starts = np.ones(2, dtype=bool)
    for _ in range(12):
        actions, states = model.predict(obs, state=states, episode_start=starts, deterministic=True)
        loaded_actions, loaded_states = loaded.predict(obs, state=loaded_states, episode_start=starts, deterministic=True)
        np.testing.assert_array_equal(actions, loaded_actions)
        np.testing.assert_array_equal(states[0], loaded_states[0])
        obs, _, starts, _ = env.step(actions)
    assert np.abs(states[0]).max() > 0  # the state is carried
    loaded.learn(64)  # and trains on


def test_bad_input_is_named() -> None:
    with pytest.raises(ValueError, match="RecurrentTRPOPlus needs a policy of the RecurrentActorCriticPolicy family"):
        RecurrentTRPOPlus(trpo_module.MlpPolicy, "CartPole-v1")
    with pytest.raises(ValueError, match="MlpPolicy"):
        RecurrentTRPOPlus("MlpPolicy", "CartPole-v1")
    model = RecurrentTRPOPlus("MlpLstmPolicy", "CartPole-v1", n_steps=16, batch_size=16, policy_kwargs={"lstm_hidden_size": 4})
    obs = np.zeros((2, 4), dtype=np.float32)
    with pytest.raises(ValueError, match=r"Invalid state.*\(1, n_envs, 4\)"):
        model.predict(obs, state=(np.zeros((1, 2, 5)), np.zeros((1, 2, 5))))
    _, state = model.predict(obs)
    assert state is not None and state[0].shape == (1, 2, 4)


def test_dict_observations_use_the_dict_buffer() -> None:
    from sb3_contrib.common.recurrent.buffers import RecurrentDictRolloutBuffer
    from stable_baselines3.common.envs import SimpleMultiObsEnv

    model = RecurrentTRPOPlus(
        "MultiInputLstmPolicy",
        SimpleMultiObsEnv(random_start=True),
        n_steps=64,
        batch_size=32,
        policy_kwargs={"lstm_hidden_size": 8},
    ).learn(128)
    assert isinstance(model.rollout_buffer, RecurrentDictRolloutBuffer)
    assert model.logger.name_to_value["train/is_line_search_success"] == 1.0


def minibatches(model: RecurrentTRPOPlus, batch_size: int) -> list[Any]:
    """The critic's sequence minibatches of a collected rollout, as ``train()`` takes them."""
    collect(model)
    return list(model.rollout_buffer.get(batch_size))


def test_lstm_along_sequences_computes_what_process_sequence_does() -> None:
    """The one-call LSTM (fast_paths.lstm_along_sequences) equals sb3-contrib's step-by-step ``_process_sequence`` on
    the buffer's minibatches, whose episodes start at first steps only; a start later in a sequence declines."""
    from sb3_trpo_plus.fast_paths import lstm_along_sequences

    model = RecurrentTRPOPlus("MlpLstmPolicy", CueEnv(), n_steps=64, batch_size=16, seed=0, policy_kwargs=TINY)
    policy = model.policy
    served = 0
    for data in minibatches(model, 16):
        features = policy.extract_features(data.observations, policy.vf_features_extractor)
        states = (data.lstm_states.vf[0], data.lstm_states.vf[1])
        expected, _ = policy._process_sequence(features, states, data.episode_starts, policy.lstm_critic)
        assert bool(data.episode_starts.any())  # the step-by-step branch of _process_sequence
        output = lstm_along_sequences(policy.lstm_critic, features, states, data.episode_starts)
        assert output is not None
        th.testing.assert_close(output, expected, rtol=1e-6, atol=1e-6)
        served += 1
        starts = data.episode_starts.reshape(states[0].shape[1], -1).clone()
        if starts.shape[1] > 1:
            starts[0, 1] = 1.0  # an episode starting mid-sequence: the loop's reset is needed
            assert lstm_along_sequences(policy.lstm_critic, features, states, starts.flatten()) is None
    assert served >= 4


class OwnSequencePolicy(sb3_contrib.ppo_recurrent.MlpLstmPolicy):
    """A user's recurrent policy with its own ``_process_sequence`` (counted), which TRPOPlus must call."""

    calls = 0

    @staticmethod
    def _process_sequence(features: Any, lstm_states: Any, episode_starts: Any, lstm: Any) -> Any:
        OwnSequencePolicy.calls += 1
        return sb3_contrib.ppo_recurrent.MlpLstmPolicy._process_sequence(features, lstm_states, episode_starts, lstm)


@pytest.mark.parametrize("fast", [True, False])
def test_a_policy_with_its_own_process_sequence_is_called(fast: bool) -> None:
    OwnSequencePolicy.calls = 0
    model = RecurrentTRPOPlus(
        OwnSequencePolicy, CueEnv(), n_steps=32, batch_size=16, seed=0, fast_paths=fast, policy_kwargs=TINY
    )
    model.learn(32)
    collected = 32 * 2  # the rollout calls it for the actor and the critic at each step
    assert OwnSequencePolicy.calls > collected + 2  # and train() for the policy step and every critic minibatch


def test_fast_and_generic_sequences_train_alike() -> None:
    """``fast_paths=True`` (one LSTM call per minibatch) and ``False`` (sb3-contrib's loop) end two updates with the
    same parameters up to float rounding (the gradients are summed in another order)."""
    trained = []
    for fast in (True, False):
        model = RecurrentTRPOPlus(
            "MlpLstmPolicy", CueEnv(), n_steps=64, batch_size=16, seed=0, fast_paths=fast, policy_kwargs=TINY
        )
        model.learn(128)
        trained.append([p.detach().clone() for p in model.policy.parameters()])
    for fast, generic in zip(*trained, strict=True):
        th.testing.assert_close(fast, generic, rtol=1e-4, atol=1e-5)
