"""The actor's natural-gradient step inside the trust region, on one batch: surrogate gradient, conjugate gradient on
the Fisher, the largest step of the radius, backtracking line search (Schulman et al. 2015, appendix C).

A pure function of what the algorithm supplies: the policy's distribution at the batch, its parameters, the
Fisher-vector product (closed form or autograd: the algorithm's choice) and the step's settings. It changes the
parameters in place (the accepted step, or none) and returns what it saw (:class:`PolicyStepStats`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch as th
from stable_baselines3.common.distributions import Distribution
from stable_baselines3.common.logger import Logger
from torch import nn
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from sb3_trpo_plus.fisher import joint_kl
from sb3_trpo_plus.natural_gradient import MatVec, backtracking_line_search, conjugate_gradient, max_step_size

#: the damped Fisher-vector product of the actor, from the batch's distribution (attached to the graph) and the
#: actor's parameters: those parameters (in the order the product's vectors use) and the product
FisherProduct = Callable[[Distribution, list[nn.Parameter]], tuple[list[nn.Parameter], MatVec]]


@dataclass
class PolicyStepStats:
    """What one natural-gradient step saw; each field is logged under ``train/`` (by its name, except where said)."""

    policy_objective: float
    #: the trust-region radius delta of this update (``target_kl``, or its schedule's value)
    target_kl: float
    #: the mean joint KL(pi_old || pi_new) the accepted step reached: the quantity ``target_kl`` bounds (at most
    #: ``target_kl``; 0 when no step was taken). Logged as ``train/trust_region_kl`` and, for existing dashboards,
    #: ``train/kl`` (the same value)
    kl: float
    #: what ``sb3_contrib.TRPO`` logs under that name, kept for comparisons with it: SB3's
    #: ``kl_divergence(pi_new, pi_old)`` averaged over states and, for Box and MultiBinary actions, over action
    #: dimensions (not what ``target_kl`` bounds); 0 when no step was taken
    kl_divergence_loss: float
    entropy: float
    cg_iterations: int
    cg_residual: float
    line_search_success: bool
    line_search_steps: int
    step_fraction: float
    expected_improvement: float
    actual_improvement: float

    def record(self, logger: Logger) -> None:
        """Each field under ``train/``: ``kl`` as ``trust_region_kl`` and, for existing dashboards, ``kl``;
        ``line_search_success`` as sb3-contrib's ``is_line_search_success`` (1.0 or 0.0)."""
        for name, value in dataclasses.asdict(self).items():
            if name == "line_search_success":
                logger.record("train/is_line_search_success", float(value))
            elif name == "kl":
                logger.record("train/trust_region_kl", value)
                logger.record("train/kl", value)
            else:
                logger.record(f"train/{name}", value)


@dataclass(frozen=True)
class StepSettings:
    """The settings of one step (the algorithm's arguments of the same names; ``target_kl`` is this update's radius
    in the joint KL's unit)."""

    target_kl: float
    normalize_advantage: bool
    ent_coef: float
    cg_max_steps: int
    cg_residual_tol: float
    line_search_shrinking_factor: float
    line_search_max_iter: int
    line_search_accept_ratio: float

    @classmethod
    def of(cls, algorithm: Any, target_kl: float) -> StepSettings:
        """The settings of ``algorithm`` (its attributes of the same names), with this update's radius."""
        names = [field.name for field in dataclasses.fields(cls) if field.name != "target_kl"]
        return cls(target_kl=target_kl, **{name: getattr(algorithm, name) for name in names})


def surrogate(
    distribution: Distribution, actions: th.Tensor, old_log_prob: th.Tensor, advantages: th.Tensor, ent_coef: float
) -> th.Tensor:
    """The importance-sampled surrogate mean(A * pi(a|s) / pi_old(a|s)), plus ``ent_coef`` times the mean entropy
    (the sample estimate -log pi(a|s) where the distribution has no closed form)."""
    log_prob = distribution.log_prob(actions)
    objective = (advantages * th.exp(log_prob - old_log_prob)).mean()
    if ent_coef > 0.0:
        entropy = distribution.entropy()
        objective = objective + ent_coef * (-log_prob if entropy is None else entropy).mean()
    return objective


def natural_gradient_step(
    distribution_at_batch: Callable[[], Distribution],
    parameters: list[nn.Parameter],
    actions: th.Tensor,
    old_log_prob: th.Tensor,
    advantages: th.Tensor,
    fisher_product: FisherProduct,
    kl_divergence_loss: Callable[[Distribution, Distribution], float],
    settings: StepSettings,
) -> tuple[list[nn.Parameter], PolicyStepStats]:
    """
    One natural-gradient step of the actor on a batch, inside the trust region; the parameters are left at the
    accepted candidate, or where they were when no candidate is accepted (or no finite step exists).

    :param distribution_at_batch: the policy's action distribution at the batch's observations, a new object at each
        call, attached to the graph of the parameters unless called under ``torch.no_grad``
    :param parameters: the policy's trainable parameters; the actor's are those the surrogate reaches
    :param fisher_product: the actor's damped Fisher-vector product (:data:`FisherProduct`)
    :param kl_divergence_loss: ``train/kl_divergence_loss`` of the accepted candidate and the old distribution
    :return: the actor's parameters and the step's statistics
    """
    target_kl = settings.target_kl
    if settings.normalize_advantage:
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)

    def surrogate_of(distribution: Distribution) -> th.Tensor:
        return surrogate(distribution, actions, old_log_prob, advantages, settings.ent_coef)

    with th.no_grad():
        old_distribution = distribution_at_batch()

    # Surrogate gradient in one backward pass; the actor's parameters are those it reaches.
    distribution = distribution_at_batch()
    surrogate_at_old = surrogate_of(distribution)
    grads = th.autograd.grad(surrogate_at_old, parameters, retain_graph=True, allow_unused=True)
    grad_of = {id(param): grad for param, grad in zip(parameters, grads, strict=True) if grad is not None}
    actor_params = [param for param in parameters if id(param) in grad_of]
    surrogate_old = surrogate_at_old.item()

    actor_params, fvp = fisher_product(distribution, actor_params)
    policy_gradient = th.cat([grad_of[id(param)].reshape(-1) for param in actor_params])

    cg = conjugate_gradient(fvp, policy_gradient, settings.cg_max_steps, settings.cg_residual_tol)
    beta = max_step_size(cg.x_dot_ax, target_kl) if target_kl > 0.0 else 0.0
    full_step = beta * cg.x
    expected_improvement = float(policy_gradient @ full_step)
    del fvp, grads, grad_of, distribution, surrogate_at_old  # release the graphs before the line search

    theta_old = parameters_to_vector(actor_params).detach()
    accepted_distribution: Distribution | None = None  # the last candidate evaluated: the accepted one, if any

    def evaluate(theta: th.Tensor) -> tuple[float, float]:
        nonlocal accepted_distribution
        vector_to_parameters(theta, actor_params)
        with th.no_grad():
            accepted_distribution = distribution_at_batch()
            return surrogate_of(accepted_distribution).item(), joint_kl(old_distribution, accepted_distribution).mean().item()

    if beta > 0.0 and bool(th.isfinite(full_step).all()):
        search = backtracking_line_search(
            evaluate,
            theta_old,
            full_step,
            surrogate_old,
            max_kl=target_kl,
            shrinking_factor=settings.line_search_shrinking_factor,
            max_iter=settings.line_search_max_iter,
            expected_improvement=expected_improvement,
            accept_ratio=settings.line_search_accept_ratio,
        )
        theta, accepted, steps = search.theta, search.accepted, search.steps
        fraction, surrogate_new, kl = search.step_fraction, search.surrogate, search.kl
    else:  # no finite, positive-curvature direction, or a zero radius: no step
        theta, accepted, steps, fraction, surrogate_new, kl = theta_old, False, 0, 0.0, surrogate_old, 0.0
    vector_to_parameters(theta, actor_params)
    divergence = 0.0
    if accepted and accepted_distribution is not None:  # the search stops at the accepted candidate
        with th.no_grad():
            divergence = kl_divergence_loss(accepted_distribution, old_distribution)

    entropy = old_distribution.entropy()
    stats = PolicyStepStats(
        policy_objective=surrogate_new,
        target_kl=target_kl,
        kl=kl,
        kl_divergence_loss=divergence,
        entropy=float("nan") if entropy is None else entropy.mean().item(),
        cg_iterations=cg.iterations,
        cg_residual=cg.residual_norm,
        line_search_success=accepted,
        line_search_steps=steps,
        step_fraction=fraction,
        expected_improvement=expected_improvement,
        actual_improvement=surrogate_new - surrogate_old,
    )
    return actor_params, stats


__all__ = ["FisherProduct", "PolicyStepStats", "StepSettings", "natural_gradient_step", "surrogate"]
