"""The natural-gradient step as a pure function (``sb3_trpo_plus.policy_step``), on a linear Gaussian policy built
here, without any algorithm: the step stays inside the trust region, improves the surrogate, and a zero radius or a
non-finite direction leaves the parameters as they were, bit for bit."""

from __future__ import annotations

import math

import pytest
import torch as th
from stable_baselines3.common.distributions import DiagGaussianDistribution, Distribution, kl_divergence
from torch import nn

from sb3_trpo_plus.fisher import joint_kl
from sb3_trpo_plus.natural_gradient import hessian_fvp
from sb3_trpo_plus.policy_step import StepSettings, natural_gradient_step, surrogate

N, OBS, ACT = 256, 4, 2


class LinearGaussian(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.mean = nn.Linear(OBS, ACT)
        self.log_std = nn.Parameter(th.zeros(ACT))
        self.unused = nn.Parameter(th.zeros(3))  # reached by no surrogate: not an actor parameter

    def distribution(self, obs: th.Tensor) -> Distribution:
        return DiagGaussianDistribution(ACT).proba_distribution(self.mean(obs), self.log_std)


def settings(target_kl: float) -> StepSettings:
    return StepSettings(
        target_kl=target_kl,
        normalize_advantage=True,
        ent_coef=0.0,
        cg_max_steps=10,
        cg_residual_tol=1e-10,
        line_search_shrinking_factor=0.8,
        line_search_max_iter=10,
        line_search_accept_ratio=0.0,
    )


def batch(policy: LinearGaussian) -> tuple[th.Tensor, th.Tensor, th.Tensor, th.Tensor]:
    generator = th.Generator().manual_seed(0)
    obs = th.randn(N, OBS, generator=generator)
    with th.no_grad():
        old = policy.distribution(obs)
        actions = old.mode() + th.randn(N, ACT, generator=generator)  # std 1: log_std starts at 0
        old_log_prob = old.log_prob(actions)
    advantages = actions[:, 0] - 0.5 * actions[:, 1] + 0.1 * th.randn(N, generator=generator)  # learnable
    return obs, actions, old_log_prob, advantages


def step(policy: LinearGaussian, radius: float, scale_fvp: float = 1.0):  # type: ignore[no-untyped-def]
    obs, actions, old_log_prob, advantages = batch(policy)

    def fisher_product(distribution: Distribution, params: list[nn.Parameter]):  # type: ignore[no-untyped-def]
        with th.no_grad():
            old = policy.distribution(obs)
        fvp = hessian_fvp(joint_kl(old, distribution).mean(), params, damping=0.01)
        return params, lambda v: scale_fvp * fvp(v)

    def divergence(new: Distribution, old: Distribution) -> float:
        return kl_divergence(new, old).mean().item()

    return obs, natural_gradient_step(
        lambda: policy.distribution(obs),
        [param for param in policy.parameters() if param.requires_grad],
        actions,
        old_log_prob,
        advantages,
        fisher_product,
        divergence,
        settings(radius),
    )


def test_step_inside_the_trust_region_improves_the_surrogate() -> None:
    th.manual_seed(0)
    policy = LinearGaussian()
    obs, actions, old_log_prob, advantages = batch(policy)
    normalized = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    with th.no_grad():
        old = policy.distribution(obs)
        before = surrogate(old, actions, old_log_prob, normalized, 0.0).item()
    _, (actor_params, stats) = step(policy, radius=0.01)
    assert {id(param) for param in actor_params} == {id(policy.mean.weight), id(policy.mean.bias), id(policy.log_std)}
    assert stats.line_search_success and stats.cg_iterations >= 1
    with th.no_grad():
        new = policy.distribution(obs)
        reached = joint_kl(old, new).mean().item()
        after = surrogate(new, actions, old_log_prob, normalized, 0.0).item()
    assert 0.0 < reached <= 0.01 * (1 + 1e-5)
    assert stats.kl == pytest.approx(reached, rel=1e-5)
    assert stats.policy_objective == pytest.approx(after, rel=1e-5) and after > before
    assert stats.actual_improvement == pytest.approx(after - before, rel=1e-4, abs=1e-7)
    assert stats.kl_divergence_loss > 0.0
    assert th.equal(policy.unused, th.zeros(3))


@pytest.mark.parametrize("radius, scale_fvp", [(0.0, 1.0), (0.01, math.nan)])
def test_no_step_leaves_the_parameters_bit_for_bit(radius: float, scale_fvp: float) -> None:
    """A zero radius, or a direction that is not finite (a NaN Fisher), takes no step."""
    th.manual_seed(0)
    policy = LinearGaussian()
    before = [param.detach().clone() for param in policy.parameters()]
    _, (_, stats) = step(policy, radius=radius, scale_fvp=scale_fvp)
    assert all(th.equal(param, old) for param, old in zip(policy.parameters(), before, strict=True))
    assert not stats.line_search_success and stats.line_search_steps == 0 and stats.kl == 0.0
    assert stats.kl_divergence_loss == 0.0 and stats.actual_improvement == 0.0


def test_settings_of_an_algorithm_read_its_arguments() -> None:
    class Algorithm:
        normalize_advantage = False
        ent_coef = 0.5
        cg_max_steps = 7
        cg_residual_tol = 1e-6
        line_search_shrinking_factor = 0.5
        line_search_max_iter = 3
        line_search_accept_ratio = 0.1

    assert StepSettings.of(Algorithm(), 0.2) == StepSettings(0.2, False, 0.5, 7, 1e-6, 0.5, 3, 0.1)
