"""Tier 2: what one ``train()`` call does to a real SB3 policy (direction, trust region, revert)."""

from __future__ import annotations

import gymnasium as gym
import pytest
import torch as th
from stable_baselines3.common.envs import IdentityEnv, IdentityEnvMultiBinary, IdentityEnvMultiDiscrete
from stable_baselines3.common.utils import LinearSchedule
from torch.nn.utils import parameters_to_vector

import sb3_trpo_plus.policy_step as policy_step_module
from sb3_trpo_plus import TRPOPlus
from sb3_trpo_plus.fisher import fisher_for, joint_kl
from sb3_trpo_plus.natural_gradient import gauss_newton_fvp
from tests.helpers import SharedLinearExtractor, batch, collect


def actor_parameters(model: TRPOPlus) -> list[th.nn.Parameter]:
    policy = model.policy
    params = list(policy.mlp_extractor.policy_net.parameters()) + list(policy.action_net.parameters())
    if hasattr(policy, "log_std"):
        params.append(policy.log_std)
    return params


def surrogate_and_kl(model: TRPOPlus, old, obs, actions, old_log_prob, advantages) -> tuple[float, float]:
    with th.no_grad():
        new = model._distribution(obs)
        ratio = th.exp(new.log_prob(actions) - old_log_prob)
        return float((advantages * ratio).mean()), float(joint_kl(old, new).mean())


ENVS = {
    "pendulum": (lambda: gym.make("Pendulum-v1"), {}),
    "cartpole": (lambda: gym.make("CartPole-v1"), {}),
    "identity_discrete": (lambda: IdentityEnv(4), {}),
    "multidiscrete": (lambda: IdentityEnvMultiDiscrete(3), {}),
    "multibinary": (lambda: IdentityEnvMultiBinary(3), {}),
    "pendulum_gsde": (lambda: gym.make("Pendulum-v1"), {"use_sde": True}),
    "pendulum_fisher_sub_sampling": (lambda: gym.make("Pendulum-v1"), {"fisher_sub_sampling": 4}),
}


@pytest.mark.parametrize("case", sorted(ENVS))
@pytest.mark.parametrize("target_kl", [0.001, 0.05])
def test_update_stays_in_trust_region_and_improves(case: str, target_kl: float) -> None:
    make_env, kwargs = ENVS[case]
    model = TRPOPlus(
        "MlpPolicy", make_env(), n_steps=256, batch_size=64, target_kl=target_kl, n_critic_updates=1, seed=3, **kwargs
    )
    collect(model)
    obs, actions, old_log_prob, advantages = batch(model)
    with th.no_grad():
        old = model._distribution(obs)
    surrogate_before, _ = surrogate_and_kl(model, old, obs, actions, old_log_prob, advantages)
    before = parameters_to_vector(actor_parameters(model)).detach().clone()

    model.train()

    after = parameters_to_vector(model.policy.parameters())
    assert th.isfinite(after).all()
    surrogate_after, kl = surrogate_and_kl(model, old, obs, actions, old_log_prob, advantages)
    assert kl <= target_kl * (1 + 1e-5)
    assert surrogate_after >= surrogate_before
    logged = model.logger.name_to_value
    for key in (
        "train/policy_objective",
        "train/value_loss",
        "train/kl_divergence_loss",
        "train/explained_variance",
        "train/is_line_search_success",
        "train/kl",
        "train/trust_region_kl",
        "train/entropy",
        "train/cg_iterations",
        "train/cg_residual",
        "train/line_search_steps",
        "train/step_fraction",
        "train/expected_improvement",
        "train/actual_improvement",
    ):
        assert key in logged, key
    # Every case of this setting (seed 3, 256 steps) takes a step: a failed search would leave the actor where it
    # was and pass the KL and surrogate checks above vacuously, so it fails the test instead.
    assert logged["train/is_line_search_success"] == 1.0
    assert 1 <= logged["train/line_search_steps"] <= model.line_search_max_iter
    assert not th.equal(before, parameters_to_vector(actor_parameters(model)))
    assert 0.0 < kl <= target_kl * (1 + 1e-5)
    assert surrogate_after > surrogate_before
    assert logged["train/kl"] == pytest.approx(kl, rel=1e-4, abs=1e-7)
    assert logged["train/trust_region_kl"] == logged["train/kl"] <= logged["train/target_kl"]  # the key that says it
    assert logged["train/actual_improvement"] == pytest.approx(surrogate_after - surrogate_before, abs=1e-5)
    assert 0 < logged["train/step_fraction"] <= 1
    assert 1 <= logged["train/cg_iterations"] <= model.cg_max_steps


def test_line_search_succeeds_on_a_plain_problem() -> None:
    """The natural-gradient step is not vacuous: on CartPole the first updates are accepted and move the actor."""
    model = TRPOPlus("MlpPolicy", "CartPole-v1", n_steps=512, n_critic_updates=1, seed=0)
    collect(model)
    before = parameters_to_vector(actor_parameters(model)).detach().clone()
    model.train()
    assert model.logger.name_to_value["train/is_line_search_success"] == 1.0
    assert model.logger.name_to_value["train/kl"] > 0.0
    assert not th.equal(before, parameters_to_vector(actor_parameters(model)))


def test_step_matches_dense_damped_natural_gradient() -> None:
    """On a tiny policy with CG run to convergence, the step taken is (F + lambda I)^-1 g, in direction."""
    damping = 0.1
    model = TRPOPlus(
        "MlpPolicy",
        "Pendulum-v1",
        n_steps=128,
        n_critic_updates=0,
        cg_max_steps=200,
        cg_damping=damping,
        cg_residual_tol=0.0,
        target_kl=1e-4,
        policy_kwargs={"net_arch": {"pi": [6], "vf": [6]}},
        seed=1,
    )
    collect(model)
    obs, actions, old_log_prob, advantages = batch(model)
    params = actor_parameters(model)
    distribution = model._distribution(obs)
    surrogate = (advantages * th.exp(distribution.log_prob(actions) - old_log_prob)).mean()
    g = th.cat([x.reshape(-1) for x in th.autograd.grad(surrogate, params, retain_graph=True)]).double()
    fisher = fisher_for(model.policy.action_dist)
    assert fisher is not None
    eta = fisher.parameters(distribution)
    eta_old = tuple(e.detach() for e in eta)
    fvp = gauss_newton_fvp(eta, params, lambda u: fisher.metric(eta_old, u))
    n = g.numel()
    dense_f = th.stack([fvp(e) for e in th.eye(n, device=model.device)], dim=1).double()
    damped = dense_f + damping * th.eye(n, dtype=th.float64, device=model.device)
    expected = th.linalg.solve(damped, g)

    before = parameters_to_vector(params).detach().clone()
    model.train()
    assert model.logger.name_to_value["train/is_line_search_success"] == 1.0
    step = (parameters_to_vector(params).detach() - before).double()
    cosine = float(step @ expected / (step.norm() * expected.norm()))
    assert cosine > 0.999
    # and the step length is the trust-region one: 1/2 s^T (F + lambda I) s = target_kl at the full step
    fraction = model.logger.name_to_value["train/step_fraction"]
    quadratic_kl = (
        0.5 * float(step @ (dense_f + damping * th.eye(n, dtype=th.float64, device=model.device)) @ step) / fraction**2
    )
    assert quadratic_kl == pytest.approx(1e-4, rel=1e-3)


@pytest.mark.parametrize("shared_extractor", [False, True])
def test_forced_line_search_failure_restores_actor_bit_for_bit(
    monkeypatch: pytest.MonkeyPatch, shared_extractor: bool
) -> None:
    policy_kwargs = {"features_extractor_class": SharedLinearExtractor} if shared_extractor else {}
    model = TRPOPlus("MlpPolicy", "Pendulum-v1", n_steps=128, n_critic_updates=2, policy_kwargs=policy_kwargs, seed=0)
    collect(model)
    before = {name: param.detach().clone() for name, param in model.policy.named_parameters()}
    # Every candidate now looks infinitely far from the old policy: the search must reject them all.
    monkeypatch.setattr(policy_step_module, "joint_kl", lambda old, new: th.full((len(new.distribution.loc),), float("inf")))
    model.train()
    assert model.logger.name_to_value["train/is_line_search_success"] == 0.0
    assert model.logger.name_to_value["train/line_search_steps"] == model.line_search_max_iter
    assert model.logger.name_to_value["train/step_fraction"] == 0.0
    moved = {name for name, param in model.policy.named_parameters() if not th.equal(param, before[name])}
    # the critic was fitted, and nothing the action distribution depends on moved (shared extractor included)
    assert moved
    assert all(name.startswith(("value_net", "mlp_extractor.value_net")) for name in moved), moved


def test_target_kl_schedule_sets_each_update_radius() -> None:
    """A schedule gives the radius at the current progress: the KL reached stays within it, and at 0 the actor stays."""
    schedule = LinearSchedule(0.05, 0.0, 1.0)
    model = TRPOPlus("MlpPolicy", "Pendulum-v1", n_steps=256, n_critic_updates=1, target_kl=schedule, seed=0)
    collect(model)
    obs, actions, old_log_prob, advantages = batch(model)
    with th.no_grad():
        old = model._distribution(obs)
    model._current_progress_remaining = 0.2
    model.train()
    logged = model.logger.name_to_value
    assert logged["train/target_kl"] == pytest.approx(0.01)
    assert logged["train/is_line_search_success"] == 1.0
    _, kl = surrogate_and_kl(model, old, obs, actions, old_log_prob, advantages)
    assert 0.0 < kl <= 0.01 * (1 + 1e-5)
    assert logged["train/kl"] == pytest.approx(kl, rel=1e-4)

    # at the end of training (and a little past it, as the last rollout overshoots) the region is empty
    for remaining in (0.0, -0.002):
        model._current_progress_remaining = remaining
        before = {name: param.detach().clone() for name, param in model.policy.named_parameters()}
        model.train()
        assert model.logger.name_to_value["train/target_kl"] == 0.0
        assert model.logger.name_to_value["train/is_line_search_success"] == 0.0
        moved = {name for name, param in model.policy.named_parameters() if not th.equal(param, before[name])}
        assert moved and all(name.startswith(("value_net", "mlp_extractor.value_net")) for name in moved), moved


def test_constant_target_kl_schedule_is_the_float() -> None:
    """``target_kl=lambda _: x`` trains bit for bit like ``target_kl=x``."""

    def train(target_kl) -> th.Tensor:
        model = TRPOPlus("MlpPolicy", "Pendulum-v1", n_steps=64, batch_size=32, target_kl=target_kl, seed=1)
        model.learn(192)
        return parameters_to_vector(model.policy.parameters()).detach()

    assert th.equal(train(0.02), train(lambda _: 0.02))


def test_non_finite_target_kl_schedule_names_the_argument() -> None:
    model = TRPOPlus("MlpPolicy", "Pendulum-v1", n_steps=64, batch_size=64, target_kl=lambda _: float("nan"), seed=0)
    with pytest.raises(ValueError, match=r"Invalid target_kl: its schedule returned nan"):
        model.learn(64)


@pytest.mark.parametrize("env_id", ["Pendulum-v1", "CartPole-v1"])
def test_entropy_bonus_alone_raises_entropy_and_zero_is_plain_trpo(env_id: str) -> None:
    """With equal advantages the surrogate is flat: ent_coef=0 takes no step, ent_coef>0 climbs the entropy."""
    entropies = {}
    for ent_coef in (0.0, 0.1):
        model = TRPOPlus("MlpPolicy", env_id, n_steps=256, n_critic_updates=0, ent_coef=ent_coef, seed=0)
        if env_id == "CartPole-v1":  # start away from the uniform policy, where the entropy is at its maximum
            with th.no_grad():
                model.policy.action_net.bias.copy_(th.tensor([1.5, -1.5]))
        collect(model)
        model.rollout_buffer.advantages[:] = 1.0  # normalized to 0: no signal from the returns
        obs = batch(model)[0]
        with th.no_grad():
            before = model._distribution(obs).entropy().mean().item()
        params_before = parameters_to_vector(actor_parameters(model)).detach().clone()
        model.train()
        with th.no_grad():
            entropies[ent_coef] = model._distribution(obs).entropy().mean().item() - before
        moved = not th.equal(params_before, parameters_to_vector(actor_parameters(model)))
        assert moved == (ent_coef > 0.0)
        if ent_coef > 0.0:
            assert model.logger.name_to_value["train/is_line_search_success"] == 1.0
            assert 0.0 < model.logger.name_to_value["train/kl"] <= model.logger.name_to_value["train/target_kl"]
    assert entropies[0.0] == 0.0
    assert entropies[0.1] > 1e-3


def test_entropy_bonus_without_closed_form_entropy_uses_log_prob_estimate() -> None:
    """gSDE with squashed actions has no closed-form entropy: the bonus is -log pi(a|s), and the step is taken."""
    model = TRPOPlus(
        "MlpPolicy",
        "Pendulum-v1",
        n_steps=256,
        n_critic_updates=0,
        use_sde=True,
        ent_coef=0.1,
        policy_kwargs={"squash_output": True},
        seed=0,
    )
    collect(model)
    model.rollout_buffer.advantages[:] = 1.0
    obs, actions, _, _ = batch(model)
    assert model._distribution(obs).entropy() is None
    with th.no_grad():
        before = -model._distribution(obs).log_prob(actions).mean().item()
    model.train()
    assert model.logger.name_to_value["train/is_line_search_success"] == 1.0
    with th.no_grad():
        assert -model._distribution(obs).log_prob(actions).mean().item() > before


def test_sub_sampling_factor_uses_every_kth_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    model = TRPOPlus("MlpPolicy", "Pendulum-v1", n_steps=120, n_critic_updates=0, sub_sampling_factor=4, seed=0)
    collect(model)
    seen = []
    original = model._policy_step

    def spy(obs, actions, old_log_prob, advantages, **kwargs):
        seen.append(len(obs))
        return original(obs, actions, old_log_prob, advantages, **kwargs)

    monkeypatch.setattr(model, "_policy_step", spy)
    model.train()
    assert seen == [30]


def test_default_adam_is_fused_and_user_choice_is_kept() -> None:
    model = TRPOPlus("MlpPolicy", "Pendulum-v1", n_steps=64)
    assert model.policy.optimizer.param_groups[0]["fused"] is True
    chosen = TRPOPlus("MlpPolicy", "Pendulum-v1", n_steps=64, policy_kwargs={"optimizer_kwargs": {"foreach": True}})
    assert chosen.policy.optimizer.param_groups[0]["foreach"] is True
    assert not chosen.policy.optimizer.param_groups[0]["fused"]


def test_auto_damping_is_sb3_contribs_default_in_the_joint_unit() -> None:
    """``cg_damping="auto"`` damps with 0.1 times the action dimensions (sb3-contrib's 0.1 in TRPOPlus's unit): on
    Reacher-v5 (2 dimensions) its updates are those of ``cg_damping=0.2``, bit for bit."""
    params = []
    for damping in ("auto", 0.2):
        model = TRPOPlus("MlpPolicy", "Reacher-v5", n_steps=128, batch_size=64, cg_damping=damping, seed=0)
        assert model._fisher_damping() == pytest.approx(0.2)
        model.learn(256)
        params.append(th.cat([p.detach().flatten() for p in model.policy.parameters()]))
    assert th.equal(params[0], params[1])
    assert TRPOPlus("MlpPolicy", "CartPole-v1", n_steps=64, cg_damping="auto")._fisher_damping() == pytest.approx(0.1)
    with pytest.raises(ValueError, match=r"Invalid cg_damping='high': expected 'auto' or a number >= 0"):
        TRPOPlus("MlpPolicy", "CartPole-v1", cg_damping="high")
