"""MaskableTRPOPlus: the masked natural-gradient step (Fisher, KL, trust region), masks in and out, learning."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch as th

pytest.importorskip("sb3_contrib")

from sb3_contrib.common.envs import (
    InvalidActionEnvDiscrete,
    InvalidActionEnvMultiBinary,
    InvalidActionEnvMultiDiscrete,
)
from sb3_contrib.common.maskable.evaluation import evaluate_policy
from sb3_contrib.common.maskable.utils import get_action_masks
from stable_baselines3.common.env_util import make_vec_env
from torch.nn.utils import parameters_to_vector

import sb3_trpo_plus.policy_step as policy_step_module
import sb3_trpo_plus.trpo_plus as trpo_module
from sb3_trpo_plus import MaskableTRPOPlus
from sb3_trpo_plus.fisher import CategoricalFisher
from sb3_trpo_plus.maskable import MaskedInput
from sb3_trpo_plus.natural_gradient import hessian_fvp
from tests.helpers import collect

SMALL = {"net_arch": {"pi": [5], "vf": [5]}}


def actor_params(model: MaskableTRPOPlus) -> list[th.nn.Parameter]:
    policy = model.policy
    return [*policy.mlp_extractor.policy_net.parameters(), *policy.action_net.parameters()]


def masked_batch(model: MaskableTRPOPlus, n: int, rng: np.random.Generator) -> tuple[th.Tensor, th.Tensor]:
    """Random observations and masks; in the first third of the states, one valid action per sub-space."""
    model.observation_space.seed(int(rng.integers(1000)))
    obs = th.as_tensor(np.stack([model.observation_space.sample() for _ in range(n)]))
    space = model.action_space
    dims = [int(space.n)] if isinstance(space, gym.spaces.Discrete) else [int(d) for d in space.nvec]  # type: ignore[attr-defined]
    blocks = []
    for dim in dims:
        mask = rng.random((n, dim)) < 0.6
        mask[np.arange(n), rng.integers(0, dim, size=n)] = True  # at least one valid action
        forced = np.zeros((n, dim), dtype=bool)
        forced[np.arange(n), rng.integers(0, dim, size=n)] = True
        mask[: n // 3] = forced[: n // 3]  # exactly one valid action
        blocks.append(mask)
    return obs, th.as_tensor(np.concatenate(blocks, axis=1))


def reference_kl(model: MaskableTRPOPlus, obs: th.Tensor, masks: th.Tensor, old_logits: th.Tensor) -> th.Tensor:
    """KL(old || new) of the masked distribution, summed over sub-spaces, written from the policy's raw logits."""
    policy = model.policy
    features = policy.extract_features(obs, policy.pi_features_extractor)  # type: ignore[call-arg]
    logits = policy.action_net(policy.mlp_extractor.forward_actor(features))
    space = model.action_space
    dims = [int(space.n)] if isinstance(space, gym.spaces.Discrete) else [int(d) for d in space.nvec]  # type: ignore[attr-defined]
    kl = th.zeros(len(obs), dtype=logits.dtype)
    for new, old, mask in zip(th.split(logits, dims, 1), th.split(old_logits, dims, 1), th.split(masks, dims, 1), strict=True):
        log_new = th.log_softmax(new.masked_fill(~mask, -th.inf), dim=1)
        log_old = th.log_softmax(old.masked_fill(~mask, -th.inf), dim=1)
        kl = kl + th.where(mask, log_old.exp() * (log_old - log_new), 0.0).sum(dim=1)
    return kl


@pytest.mark.parametrize("env", [InvalidActionEnvDiscrete(dim=4), InvalidActionEnvMultiDiscrete(dims=[3, 4])])
def test_masked_fisher_vector_product_is_the_kl_hessian(env: gym.Env) -> None:
    """Gauss-Newton FVP with the masked categorical Fisher == double-backward Hessian of the masked KL;
    states with a forced action add nothing."""
    model = MaskableTRPOPlus("MlpPolicy", env, n_steps=16, batch_size=16, cg_damping=0.0, policy_kwargs=SMALL, seed=0)
    assert isinstance(model._action_fisher(), CategoricalFisher)  # the Gauss-Newton path, not the double backward
    obs, masks = masked_batch(model, 30, np.random.default_rng(0))
    params = actor_params(model)
    n = sum(p.numel() for p in params)

    def dense(batch_obs: th.Tensor, batch_masks: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        policy_input = MaskedInput(batch_obs, batch_masks)
        distribution = model._distribution(policy_input)
        fvp = model._autograd_fisher_vector_product(policy_input, distribution, params)
        gauss_newton = th.stack([fvp(e) for e in th.eye(n)], dim=1)
        with th.no_grad():
            features = model.policy.extract_features(batch_obs, model.policy.pi_features_extractor)  # type: ignore[call-arg]
            old_logits = model.policy.action_net(model.policy.mlp_extractor.forward_actor(features))
        kl = reference_kl(model, batch_obs, batch_masks, old_logits)
        hessian = hessian_fvp(kl.mean(), params)
        exact = th.stack([hessian(e) for e in th.eye(n)], dim=1)
        return gauss_newton, exact

    gauss_newton, exact = dense(obs, masks)
    assert th.isfinite(gauss_newton).all()
    assert exact.abs().max() > 1e-3
    th.testing.assert_close(gauss_newton, exact, rtol=1e-4, atol=1e-6)
    # Without the masks the Fisher is another matrix: the masks do reach it.
    unmasked, _ = dense(obs, th.ones_like(masks))
    assert (unmasked - gauss_newton).abs().max() > 1e-3

    # States whose every sub-space is forced: no Fisher, no gradient, no KL, and finite entropy.
    forced = slice(0, 10)
    forced_fisher, forced_exact = dense(obs[forced], masks[forced])
    assert forced_fisher.abs().max() == 0.0 and forced_exact.abs().max() == 0.0
    distribution = model._distribution(MaskedInput(obs[forced], masks[forced]))
    actions = distribution.get_actions(deterministic=True)
    grads = th.autograd.grad(distribution.log_prob(actions).sum(), params, allow_unused=True)
    assert all(g is None or g.abs().max() == 0.0 for g in grads)
    assert th.isfinite(distribution.entropy()).all() and distribution.entropy().abs().max() == 0.0
    with th.no_grad():
        other = model._distribution(MaskedInput(obs[forced], masks[forced]))
        for param in params:
            param.add_(0.5)
        moved = model._distribution(MaskedInput(obs[forced], masks[forced]))
    assert trpo_module.joint_kl(other, moved).abs().max() == 0.0


ENVS = {
    "discrete": lambda: InvalidActionEnvDiscrete(dim=10, n_invalid_actions=6),
    "multidiscrete": lambda: InvalidActionEnvMultiDiscrete(dims=[3, 4], n_invalid_actions=3),
    "multibinary": lambda: InvalidActionEnvMultiBinary(dims=3, n_invalid_actions=2),
}


@pytest.mark.parametrize("case", sorted(ENVS))
@pytest.mark.parametrize("target_kl", [0.001, 0.05])
def test_update_stays_in_trust_region_and_improves(case: str, target_kl: float) -> None:
    model = MaskableTRPOPlus("MlpPolicy", ENVS[case](), n_steps=256, target_kl=target_kl, n_critic_updates=1, seed=3)
    collect(model)
    rollout = next(model.rollout_buffer.get(batch_size=None))
    obs, masks = rollout.observations, rollout.action_masks
    assert not masks.all()  # some actions are invalid
    actions = rollout.actions.long().flatten() if case == "discrete" else rollout.actions
    advantages = (rollout.advantages - rollout.advantages.mean()) / (rollout.advantages.std() + 1e-8)

    def surrogate_and_kl(old):  # type: ignore[no-untyped-def]
        with th.no_grad():
            new = model.policy.get_distribution(obs, action_masks=masks)
            ratio = th.exp(new.log_prob(actions) - rollout.old_log_prob)
            kl = trpo_module.joint_kl(old, new).mean() if old is not None else th.tensor(0.0)
            return float((advantages * ratio).mean()), float(kl)

    with th.no_grad():
        old = model._distribution(MaskedInput(obs, masks))
    surrogate_before, _ = surrogate_and_kl(None)
    model.train()
    surrogate_after, kl = surrogate_and_kl(old)
    assert kl <= target_kl * (1 + 1e-5)
    assert surrogate_after >= surrogate_before
    assert model.logger.name_to_value["train/is_line_search_success"] == 1.0
    assert model.logger.name_to_value["train/kl"] == pytest.approx(kl, rel=1e-4, abs=1e-7)
    assert np.isfinite(model.logger.name_to_value["train/entropy"])
    # sb3-contrib's figure: KL(new || old), summed over sub-spaces, averaged over MultiBinary dimensions
    with th.no_grad():
        reverse = trpo_module.joint_kl(model.policy.get_distribution(obs, action_masks=masks), old)
    per_dimension = reverse / (3 if case == "multibinary" else 1)
    assert model.logger.name_to_value["train/kl_divergence_loss"] == pytest.approx(float(per_dimension.mean()), rel=1e-5)


def test_update_uses_the_masked_gauss_newton_fisher(monkeypatch: pytest.MonkeyPatch) -> None:
    """The family goes through the autograd Gauss-Newton product with the categorical Fisher, not a fast path."""
    calls = []
    original = MaskableTRPOPlus._autograd_fisher_vector_product

    def spy(self, obs, distribution, params):  # type: ignore[no-untyped-def]
        calls.append(obs)
        return original(self, obs, distribution, params)

    monkeypatch.setattr(MaskableTRPOPlus, "_autograd_fisher_vector_product", spy)
    monkeypatch.setattr(trpo_module, "hessian_fvp", None)  # the double-backward fallback is not used
    model = MaskableTRPOPlus("MlpPolicy", ENVS["discrete"](), n_steps=128, n_critic_updates=1, seed=0)
    collect(model)
    model.train()
    assert len(calls) == 1 and isinstance(calls[0], MaskedInput) and calls[0].action_masks is not None


def test_all_states_forced_means_no_step() -> None:
    """Every state has a single valid action: zero gradient, no step, the actor unchanged."""
    model = MaskableTRPOPlus("MlpPolicy", InvalidActionEnvDiscrete(dim=5, n_invalid_actions=4), n_steps=64, seed=0)
    collect(model)
    before = parameters_to_vector(actor_params(model)).detach().clone()
    model.train()
    assert th.equal(before, parameters_to_vector(actor_params(model)))
    assert model.logger.name_to_value["train/kl"] == 0.0


def test_forced_line_search_failure_restores_actor_bit_for_bit(monkeypatch: pytest.MonkeyPatch) -> None:
    model = MaskableTRPOPlus("MlpPolicy", ENVS["multidiscrete"](), n_steps=128, n_critic_updates=2, seed=0)
    collect(model)
    before = {name: param.detach().clone() for name, param in model.policy.named_parameters()}
    monkeypatch.setattr(policy_step_module, "joint_kl", lambda old, new: th.full((len(new.distributions[0].logits),), th.inf))
    model.train()
    assert model.logger.name_to_value["train/is_line_search_success"] == 0.0
    moved = {name for name, param in model.policy.named_parameters() if not th.equal(param, before[name])}
    assert moved and all(name.startswith(("value_net", "mlp_extractor.value_net")) for name in moved), moved


LEARNING_ENVS = {  # env, budget
    "discrete": (lambda: InvalidActionEnvDiscrete(dim=20, n_invalid_actions=15), 4000),
    "multidiscrete": (lambda: InvalidActionEnvMultiDiscrete(dims=[4, 4, 4], n_invalid_actions=7), 8000),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(LEARNING_ENVS))
def test_masked_agent_learns_faster_than_unmasked(case: str) -> None:
    """On sb3-contrib's InvalidActionEnv(Multi)Discrete the masked agent reaches the optimum (100) within a budget
    where the same agent trained without masks has not; sb3-contrib's evaluate_policy runs it with masks."""
    make, budget = LEARNING_ENVS[case]
    kwargs = {"n_steps": 500, "batch_size": 100, "seed": 0}
    masked = MaskableTRPOPlus("MlpPolicy", make_vec_env(make, n_envs=1, seed=0), **kwargs).learn(budget)
    unmasked = MaskableTRPOPlus("MlpPolicy", make_vec_env(make, n_envs=1, seed=0), **kwargs).learn(budget, use_masking=False)
    eval_env = make_vec_env(make, n_envs=1, seed=1)
    masked_return, _ = evaluate_policy(masked, eval_env, n_eval_episodes=3, deterministic=True, warn=False)
    unmasked_return, _ = evaluate_policy(unmasked, eval_env, n_eval_episodes=3, deterministic=True, warn=False)
    training_return = lambda model: np.mean([info["r"] for info in model.ep_info_buffer])  # noqa: E731
    assert masked_return == 100.0
    assert training_return(masked) > training_return(unmasked) + 10
    assert unmasked_return < 100.0


def test_save_load_keeps_masking(tmp_path: Path) -> None:
    env = ENVS["multidiscrete"]()
    model = MaskableTRPOPlus("MlpPolicy", env, n_steps=128, seed=0).learn(256)
    model.save(tmp_path / "model.zip")
    loaded = MaskableTRPOPlus.load(tmp_path / "model.zip", env=env)
    assert type(loaded.policy) is type(model.policy)
    rng = np.random.default_rng(0)
    obs = np.stack([env.observation_space.sample() for _ in range(50)])
    masks = np.ones((50, 7), dtype=bool)
    masks[np.arange(50), rng.integers(0, 3, 50)] = False
    masks[:, 3:] = rng.random((50, 4)) < 0.5
    masks[np.arange(50), 3 + rng.integers(0, 4, 50)] = True
    actions, _ = model.predict(obs, action_masks=masks, deterministic=True)
    loaded_actions, _ = loaded.predict(obs, action_masks=masks, deterministic=True)
    np.testing.assert_array_equal(actions, loaded_actions)
    sampled, _ = loaded.predict(obs, action_masks=masks)
    assert masks[np.arange(50), sampled[:, 0]].all() and masks[np.arange(50), 3 + sampled[:, 1]].all()
    loaded.learn(128)  # and trains on, with masks from the env


class NoMasks(gym.Wrapper):
    """Hides nothing, adds nothing: an env without ``action_masks()``."""


class BadMasks(gym.Wrapper):
    def action_masks(self) -> list[bool]:
        return [True, True]


def test_bad_input_is_named() -> None:
    with pytest.raises(ValueError, match="does not support action masking"):
        MaskableTRPOPlus("MlpPolicy", gym.make("CartPole-v1"), n_steps=64, batch_size=64).learn(64)
    MaskableTRPOPlus("MlpPolicy", gym.make("CartPole-v1"), n_steps=64, batch_size=64).learn(64, use_masking=False)
    with pytest.raises(ValueError, match=r"Invalid action_masks of shape \(1, 2\).*shape \(1, 10\)"):
        MaskableTRPOPlus("MlpPolicy", BadMasks(ENVS["discrete"]()), n_steps=64, batch_size=64).learn(64)
    model = MaskableTRPOPlus("MlpPolicy", ENVS["discrete"](), n_steps=64)
    with pytest.raises(ValueError, match=r"Invalid action_masks of shape \(3, 9\).*shape \(3, 10\)"):
        model.predict(np.zeros(3, dtype=np.int64), action_masks=np.ones((3, 9), dtype=bool))
    actions, _ = model.predict(np.zeros(3, dtype=np.int64), action_masks=np.eye(10, dtype=bool)[[2, 5, 7]])
    np.testing.assert_array_equal(actions, [2, 5, 7])
    with pytest.raises(ValueError, match="MaskableTRPOPlus supports Discrete, MultiDiscrete, MultiBinary"):
        MaskableTRPOPlus("MlpPolicy", "Pendulum-v1")
    with pytest.raises(ValueError, match="gSDE"):
        MaskableTRPOPlus("MlpPolicy", ENVS["discrete"](), use_sde=True)
    with pytest.raises(ValueError, match="MaskableActorCriticPolicy family"):
        MaskableTRPOPlus(trpo_module.MlpPolicy, ENVS["discrete"]())
    vec_env = make_vec_env(ENVS["discrete"], n_envs=2)
    assert get_action_masks(vec_env).shape == (2, 10)


def test_dict_observations_use_the_dict_buffer() -> None:
    from sb3_contrib.common.maskable.buffers import MaskableDictRolloutBuffer
    from sb3_contrib.common.wrappers import ActionMasker
    from stable_baselines3.common.envs import SimpleMultiObsEnv

    env = ActionMasker(SimpleMultiObsEnv(random_start=True), lambda env: np.array([True, True, False, True]))
    model = MaskableTRPOPlus("MultiInputPolicy", env, n_steps=64, batch_size=32, seed=0).learn(128)
    assert isinstance(model.rollout_buffer, MaskableDictRolloutBuffer)
    assert model.logger.name_to_value["train/is_line_search_success"] == 1.0
    assert not (model.rollout_buffer.actions == 2).any()  # the masked action was never taken


def test_learn_without_masks_is_not_saved(tmp_path: Path) -> None:
    """``learn(use_masking=False)`` is that call's choice: a saved and loaded model collects with masks again."""
    model = MaskableTRPOPlus("MlpPolicy", InvalidActionEnvDiscrete(dim=5, n_invalid_actions=2), n_steps=32, seed=0)
    model.learn(32, use_masking=False)
    assert model._use_masking is False
    model.save(tmp_path / "model")
    assert MaskableTRPOPlus.load(tmp_path / "model")._use_masking is True
