"""The Fisher metric of each SB3 action distribution, in the distribution's own parameters.

Every SB3 action distribution is described here by a tuple of per-state tensors ``eta`` (its
"natural" parameters as the policy network outputs them) and by the Fisher information ``M``
of the distribution with respect to ``eta``. The Fisher of the policy with respect to the
network weights is then the Gauss-Newton product ``F = mean_i J_i^T M_i J_i`` (see
:func:`sb3_trpo_plus.natural_gradient.gauss_newton_fvp`).

============================  =====================================  =========================================
SB3 distribution              ``eta`` (one row per state)            ``M u``
============================  =====================================  =========================================
DiagGaussian, gSDE (squashed  ``(mu, log sigma)``                    ``(u_mu / sigma^2, 2 u_log_sigma)``
or not)
Categorical                   ``(logits,)``                          ``p * u - p (p^T u)``
MultiCategorical              one logits tensor per sub-space        a Categorical block per sub-space
Bernoulli (MultiBinary)       ``(logits,)``                          ``p (1 - p) u``
============================  =====================================  =========================================

The KL divergence is that of the **whole** action distribution: summed over action dimensions
(and sub-spaces), one value per state. A tanh squashing (gSDE with ``squash_output``) is a
bijection, so it changes neither the KL nor the Fisher of the underlying Gaussian.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

import torch as th
from stable_baselines3.common.distributions import (
    BernoulliDistribution,
    CategoricalDistribution,
    DiagGaussianDistribution,
    Distribution,
    MultiCategoricalDistribution,
    StateDependentNoiseDistribution,
    sum_independent_dims,
)
from stable_baselines3.common.distributions import kl_divergence as sb3_kl_divergence
from torch.distributions import Bernoulli, Categorical, Normal

from sb3_trpo_plus.natural_gradient import DistParams


class DistributionFisher(ABC):
    """The parameters ``eta`` and the Fisher metric ``M`` of one family of action distributions."""

    @abstractmethod
    def parameters(self, distribution: Distribution) -> DistParams:
        """
        Per-state parameters ``eta`` of an SB3 distribution, still attached to the autograd graph.

        :param distribution: an SB3 distribution built by the policy for a batch of states
        :return: tuple of tensors whose first dimension is the batch
        """

    @abstractmethod
    def output_metric(self, distribution: Distribution) -> Callable[[th.Tensor], th.Tensor]:
        """
        The metric ``M`` on the output of SB3's ``action_net`` (means for a diagonal Gaussian with a
        state-independent ``log_std``; logits otherwise), for tangents of shape ``(batch, n_outputs)``.

        :param distribution: the distribution at the parameters where the Fisher is taken (no graph needed)
        :return: ``u -> M u`` per state
        """

    @abstractmethod
    def metric(self, eta: DistParams, u: DistParams) -> DistParams:
        """
        The Fisher-metric product ``M(eta) u``, per state.

        :param eta: parameters at which the metric is evaluated (detached)
        :param u: tangent vectors, same shapes as ``eta``
        :return: ``M u``, same shapes as ``eta``
        """


class GaussianFisher(DistributionFisher):
    """Diagonal Gaussian in ``(mu, log sigma)``: ``M = diag(1 / sigma^2)`` on ``mu`` and ``2 I`` on ``log sigma``."""

    def parameters(self, distribution: Distribution) -> DistParams:
        normal = distribution.distribution
        assert isinstance(normal, Normal)
        return normal.loc, normal.scale.log()

    #: Fisher information of a Gaussian with respect to its log standard deviation, per dimension
    LOG_STD_FISHER = 2.0

    def output_metric(self, distribution: Distribution) -> Callable[[th.Tensor], th.Tensor]:
        inverse_variance = self.parameters(distribution)[1].detach().mul(-2.0).exp()
        return lambda u: u * inverse_variance

    def metric(self, eta: DistParams, u: DistParams) -> DistParams:
        _, log_std = eta
        u_mean, u_log_std = u
        return u_mean * th.exp(-2.0 * log_std), 2.0 * u_log_std


def _categorical_metric(logits: th.Tensor, u: th.Tensor) -> th.Tensor:
    probs = th.softmax(logits, dim=-1)
    return probs * (u - (probs * u).sum(dim=-1, keepdim=True))


def _sub_space_distributions(distribution: Distribution) -> list[th.distributions.Distribution] | None:
    """
    The torch distribution of each sub-space of a MultiCategorical distribution (SB3's keeps them in
    ``distribution``, sb3-contrib's masked one, also used for MultiBinary, in ``distributions``), else ``None``.
    """
    inner = getattr(distribution, "distributions", None)
    if inner is None:
        inner = getattr(distribution, "distribution", None)
    return list(inner) if isinstance(inner, Sequence) else None


class CategoricalFisher(DistributionFisher):
    """Categorical in its logits ``z``: ``M u = p * u - p (p^T u)``; MultiCategorical is a block per sub-space."""

    def parameters(self, distribution: Distribution) -> DistParams:
        categoricals = _sub_space_distributions(distribution) or [distribution.distribution]  # type: ignore[list-item]
        logits = []
        for categorical in categoricals:
            assert isinstance(categorical, Categorical)
            logits.append(categorical.logits)
        return tuple(logits)

    def output_metric(self, distribution: Distribution) -> Callable[[th.Tensor], th.Tensor]:
        logits = tuple(e.detach() for e in self.parameters(distribution))
        widths = [e.shape[-1] for e in logits]
        return lambda u: th.cat(self.metric(logits, th.split(u, widths, dim=-1)), dim=-1)

    def metric(self, eta: DistParams, u: DistParams) -> DistParams:
        return tuple(_categorical_metric(logits, u_i) for logits, u_i in zip(eta, u, strict=True))


class BernoulliFisher(DistributionFisher):
    """Independent Bernoulli variables in their logits: ``M = diag(p (1 - p))``."""

    def parameters(self, distribution: Distribution) -> DistParams:
        bernoulli = distribution.distribution
        assert isinstance(bernoulli, Bernoulli)
        return (bernoulli.logits,)

    def output_metric(self, distribution: Distribution) -> Callable[[th.Tensor], th.Tensor]:
        probs = th.sigmoid(self.parameters(distribution)[0].detach())
        weight = probs * (1.0 - probs)
        return lambda u: weight * u

    def metric(self, eta: DistParams, u: DistParams) -> DistParams:
        probs = th.sigmoid(eta[0])
        return (probs * (1.0 - probs) * u[0],)


def fisher_for(distribution: Distribution) -> DistributionFisher | None:
    """
    The analytic Fisher of an SB3 action distribution, or ``None`` when none is known
    (the caller then falls back to the exact Hessian of the KL).

    :param distribution: the policy's action distribution (``policy.action_dist``)
    :return: the matching :class:`DistributionFisher`, or ``None``
    """
    if isinstance(distribution, DiagGaussianDistribution | StateDependentNoiseDistribution):
        return GaussianFisher()
    if isinstance(distribution, CategoricalDistribution | MultiCategoricalDistribution):
        return CategoricalFisher()
    if isinstance(distribution, BernoulliDistribution):
        return BernoulliFisher()
    return None


def joint_kl(old: Distribution, new: Distribution) -> th.Tensor:
    """
    ``KL(old || new)`` of the whole action distribution, summed over action dimensions and
    sub-spaces: one value per state. (``sb3_contrib.TRPO`` averages over action dimensions
    instead, so its ``target_kl`` is per dimension for Box and MultiBinary actions.)

    :param old: distribution before the update (a snapshot taken without gradient)
    :param new: distribution after the update
    :return: tensor of shape ``(batch,)``
    """
    if _sub_space_distributions(new) is not None:  # MultiCategorical: one Categorical per sub-space
        parts = zip(_sub_space_distributions(old) or [], _sub_space_distributions(new) or [], strict=True)
        return th.stack([th.distributions.kl_divergence(p, q) for p, q in parts], dim=1).sum(dim=1)
    kl = sb3_kl_divergence(old, new)
    return sum_independent_dims(kl) if kl.dim() > 1 else kl
