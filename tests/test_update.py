"""Tier 2: what one ``train()`` call does to a real SB3 policy (direction, trust region, revert)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3.common.envs import IdentityEnv, IdentityEnvMultiBinary, IdentityEnvMultiDiscrete
from stable_baselines3.common.utils import LinearSchedule, obs_as_tensor
from torch.nn.utils import parameters_to_vector

import sb3_trpo_plus.trpo_plus as trpo_module
from sb3_trpo_plus import TRPOPlus
from sb3_trpo_plus.fisher import fisher_for, joint_kl
from sb3_trpo_plus.natural_gradient import gauss_newton_fvp
from tests.helpers import SharedLinearExtractor


def collect(model: TRPOPlus) -> None:
    """Fill the rollout buffer the way ``learn()`` does, without updating."""
    _, callback = model._setup_learn(model.n_steps * model.n_envs, None)
    callback.on_training_start(locals(), globals())
    assert model.env is not None
    model.collect_rollouts(model.env, callback, model.rollout_buffer, model.n_steps)


def batch(model: TRPOPlus):
    """The whole rollout, as ``train()`` sees it (unshuffled)."""
    buffer = model.rollout_buffer
    obs = obs_as_tensor(buffer.swap_and_flatten(buffer.observations), model.device)
    actions = th.as_tensor(buffer.swap_and_flatten(buffer.actions).astype(np.float32), device=model.device)
    if isinstance(model.action_space, gym.spaces.Discrete):
        actions = actions.long().flatten()
    old_log_prob = th.as_tensor(buffer.swap_and_flatten(buffer.log_probs), device=model.device).flatten()
    advantages = th.as_tensor(buffer.swap_and_flatten(buffer.advantages), device=model.device).flatten()
    if model.normalize_advantage:
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    return obs, actions, old_log_prob, advantages


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
        "train/entropy",
        "train/cg_iterations",
        "train/cg_residual",
        "train/line_search_steps",
        "train/step_fraction",
        "train/expected_improvement",
        "train/actual_improvement",
    ):
        assert key in logged, key
    if logged["train/is_line_search_success"]:
        assert not th.equal(before, parameters_to_vector(actor_parameters(model)))
        assert logged["train/kl"] == pytest.approx(kl, rel=1e-4, abs=1e-7)
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
    dense_f = th.stack([fvp(e) for e in th.eye(n)], dim=1).double()
    expected = th.linalg.solve(dense_f + damping * th.eye(n, dtype=th.float64), g)

    before = parameters_to_vector(params).detach().clone()
    model.train()
    assert model.logger.name_to_value["train/is_line_search_success"] == 1.0
    step = (parameters_to_vector(params).detach() - before).double()
    cosine = float(step @ expected / (step.norm() * expected.norm()))
    assert cosine > 0.999
    # and the step length is the trust-region one: 1/2 s^T (F + lambda I) s = target_kl at the full step
    fraction = model.logger.name_to_value["train/step_fraction"]
    quadratic_kl = 0.5 * float(step @ (dense_f + damping * th.eye(n, dtype=th.float64)) @ step) / fraction**2
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
    monkeypatch.setattr(trpo_module, "joint_kl", lambda old, new: th.full((len(new.distribution.loc),), float("inf")))
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
            assert 0.0 < model.logger.name_to_value["train/kl"] <= model.target_kl
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

    def spy(obs, actions, old_log_prob, advantages):
        seen.append(len(obs))
        return original(obs, actions, old_log_prob, advantages)

    monkeypatch.setattr(model, "_policy_step", spy)
    model.train()
    assert seen == [30]


def test_default_adam_is_fused_and_user_choice_is_kept() -> None:
    model = TRPOPlus("MlpPolicy", "Pendulum-v1", n_steps=64)
    assert model.policy.optimizer.param_groups[0]["fused"] is True
    chosen = TRPOPlus("MlpPolicy", "Pendulum-v1", n_steps=64, policy_kwargs={"optimizer_kwargs": {"foreach": True}})
    assert chosen.policy.optimizer.param_groups[0]["foreach"] is True
    assert not chosen.policy.optimizer.param_groups[0]["fused"]


def fitted_critic(monkeypatch: pytest.MonkeyPatch, path: str) -> TRPOPlus:
    """A model after one critic fit (the actor's step forced to fail) on the given code path."""
    model = TRPOPlus("MlpPolicy", "Pendulum-v1", n_steps=128, batch_size=32, n_critic_updates=3, seed=0)
    collect(model)
    with monkeypatch.context() as patch:
        if path in ("autograd", "autograd_per_minibatch_features"):
            patch.setattr(trpo_module, "plain_adam", lambda optimizer: False)
        if path == "autograd_per_minibatch_features":
            patch.setattr(model, "_critic_features", lambda obs, params: None)
        model.train()
    return model


def test_critic_fast_path_matches_autograd_adam(monkeypatch: pytest.MonkeyPatch) -> None:
    fast = fitted_critic(monkeypatch, "fast")
    generic = fitted_critic(monkeypatch, "autograd")
    per_minibatch = fitted_critic(monkeypatch, "autograd_per_minibatch_features")
    # precomputing the features changes nothing, bit for bit
    assert th.equal(parameters_to_vector(generic.policy.parameters()), parameters_to_vector(per_minibatch.policy.parameters()))
    # the closed-form gradient + functional Adam on a flat vector is the same algorithm, up to rounding
    assert th.allclose(
        parameters_to_vector(fast.policy.parameters()), parameters_to_vector(generic.policy.parameters()), atol=1e-5
    )
    before = TRPOPlus("MlpPolicy", "Pendulum-v1", n_steps=128, seed=0).policy.value_net.weight
    assert not th.allclose(fast.policy.value_net.weight, before)
    # and the optimizer's state is kept where SB3 saves it
    for param in fast.policy.value_net.parameters():
        state = fast.policy.optimizer.state[param]
        generic_param = dict(generic.policy.named_parameters())[
            next(n for n, p in fast.policy.named_parameters() if p is param)
        ]
        generic_state = generic.policy.optimizer.state[generic_param]
        assert float(state["step"]) == float(generic_state["step"]) == 3 * 4
        assert th.allclose(state["exp_avg"], generic_state["exp_avg"], atol=1e-6)
        assert th.allclose(state["exp_avg_sq"], generic_state["exp_avg_sq"], atol=1e-7)


MLP_CASES = ["pendulum", "cartpole", "multidiscrete", "multibinary"]


@pytest.mark.parametrize("case", [*MLP_CASES, "pendulum_gsde"])
def test_mlp_fisher_vector_product_matches_autograd(case: str) -> None:
    make_env, kwargs = ENVS[case]
    model = TRPOPlus("MlpPolicy", make_env(), n_steps=128, seed=0, **kwargs)
    collect(model)
    obs, actions, _old_log_prob, _ = batch(model)
    all_params = list(model.policy.parameters())
    distribution = model._distribution(obs)
    grads = th.autograd.grad(distribution.log_prob(actions).sum(), all_params, retain_graph=True, allow_unused=True)
    actor = [p for p, g in zip(all_params, grads, strict=True) if g is not None]
    mlp = model._mlp_fisher_vector_product(obs, actor)
    if case == "pendulum_gsde":  # gSDE's std depends on the state: the generic path serves it
        assert mlp is None
        return
    assert mlp is not None
    ordered, fast = mlp
    generic = model._autograd_fisher_vector_product(obs, distribution, ordered)
    for seed in range(2):
        v = th.randn(sum(p.numel() for p in ordered), generator=th.Generator().manual_seed(seed))
        expected = generic(v)
        assert (fast(v) - expected).norm() / expected.norm() < 1e-4


def test_mlp_fisher_vector_product_declines_shared_extractor_with_parameters() -> None:
    model = TRPOPlus("MlpPolicy", "Pendulum-v1", n_steps=64, policy_kwargs={"features_extractor_class": SharedLinearExtractor})
    collect(model)
    obs = batch(model)[0]
    actor = [p for p in model.policy.parameters() if not any(p is q for q in model.policy.value_net.parameters())]
    actor = [p for p in actor if not any(p is q for q in model.policy.mlp_extractor.value_net.parameters())]
    assert model._mlp_fisher_vector_product(obs, actor) is None


@pytest.mark.parametrize("env_id", ["Pendulum-v1", "CartPole-v1"])
def test_fast_rollout_forward_matches_sb3_policy(env_id: str) -> None:
    model = TRPOPlus("MlpPolicy", env_id, n_steps=64, seed=0)
    perturb = th.Generator().manual_seed(0)
    with th.no_grad():
        for param in model.policy.parameters():
            param.add_(0.1 * th.randn(param.shape, generator=perturb))
    obs = th.as_tensor(np.stack([model.observation_space.sample() for _ in range(4000)]))
    with model._fast_rollout_forward():
        assert "forward" in vars(model.policy)  # the closed form is in use
        actions, values, log_prob = model.policy(obs)
        deterministic, _, _ = model.policy(obs, deterministic=True)
    assert "forward" not in vars(model.policy)  # and SB3's forward is back
    with th.no_grad():
        distribution = model.policy.get_distribution(obs)
        expected_values = model.policy.predict_values(obs)
        flat_actions = actions if actions.dim() > 1 else actions.unsqueeze(1)
        assert th.allclose(log_prob, distribution.log_prob(actions), atol=1e-5)
        assert th.allclose(values, expected_values, atol=1e-6)
        assert th.allclose(deterministic.float(), distribution.mode().float().reshape(deterministic.shape), atol=1e-6)
        if env_id == "Pendulum-v1":  # samples have the policy's mean and standard deviation
            standardized = (flat_actions - distribution.distribution.mean) / distribution.distribution.stddev
            assert abs(float(standardized.mean())) < 0.05
            assert abs(float(standardized.std()) - 1.0) < 0.05
        else:  # sampled actions follow the policy's probabilities on average
            probs = distribution.distribution.probs
            assert abs(float((actions == 1).float().mean() - probs[:, 1].mean())) < 0.03


def test_fast_rollout_forward_draws_sb3s_gaussian_actions() -> None:
    """Same torch seed, same actions: the closed form consumes the random stream exactly as SB3's forward does,
    so a rollout follows the one SB3 would collect (up to float rounding)."""
    model = TRPOPlus("MlpPolicy", "Pendulum-v1", n_steps=64, seed=0)
    obs = th.as_tensor(np.stack([model.observation_space.sample() for _ in range(256)]))
    th.manual_seed(1)
    with model._fast_rollout_forward():
        fast, _, fast_log_prob = model.policy(obs)
    th.manual_seed(1)
    with th.no_grad():
        expected, _, expected_log_prob = model.policy(obs)
    assert th.allclose(fast, expected, atol=1e-6)
    assert th.allclose(fast_log_prob, expected_log_prob, atol=1e-5)


def test_fast_rollout_forward_is_removed_after_an_error() -> None:
    model = TRPOPlus("MlpPolicy", "Pendulum-v1", n_steps=64)
    with pytest.raises(RuntimeError), model._fast_rollout_forward():
        raise RuntimeError
    assert "forward" not in vars(model.policy)


def test_fast_rollout_forward_not_used_for_gsde() -> None:
    model = TRPOPlus("MlpPolicy", "Pendulum-v1", n_steps=64, use_sde=True)
    with model._fast_rollout_forward():
        assert "forward" not in vars(model.policy)
