"""The critic's regression, written once, and its normalized return scale.

Every path (TRPOPlus's generic loop, the fast paths' fallback loop and closed form, the recurrent family's sequence
loop) fits the targets of one :class:`ValueScale` and runs its minibatch losses through :func:`regress`.

With ``normalize_values`` the targets are the returns on a normalized scale, in the sense of PopArt (van Hasselt
et al., 2016, https://arxiv.org/abs/1602.07714): during the fit the value head's last ``nn.Linear`` layer holds its
normalized coordinates ``W~ = W / sigma``, ``b~ = (b - mu) / sigma`` and is regressed on ``(R - mu) / sigma``;
afterwards it is written back as ``W = sigma W~``, ``b = sigma b~ + mu`` (:func:`normalized_head`). The policy keeps
a plain head that outputs raw values, so ``predict_values``, the rollout's values and saved models are unchanged,
and the statistics ``mu``, ``sigma`` (a running mean and standard deviation of the returns) can change between
updates without changing any value the policy outputs (PopArt's "preserving outputs"). Adam then takes its steps on
a problem of unit scale: the default learning rate fits values of 0.01 or of 1000 alike.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Iterable, Iterator
from typing import NamedTuple

import numpy as np
import torch as th
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.running_mean_std import RunningMeanStd
from torch import nn

from sb3_trpo_plus import families

#: smallest sigma: returns that barely vary (a constant reward) are not blown up
MIN_RETURN_STD = 1e-3

#: the policy methods through which values are computed; a class whose methods are SB3's (or sb3-contrib's) own
#: computes every value as ``value_net(latent)``
VALUE_METHODS = ("forward", "predict_values", "evaluate_actions")


class ValueScale(NamedTuple):
    """The critic's targets are ``(returns - mean) / std``; ``(0.0, 1.0)`` leaves the returns as they are."""

    mean: float = 0.0
    std: float = 1.0

    def targets(self, returns: th.Tensor) -> th.Tensor:
        """The regression targets of ``returns`` (bit for bit the returns for the identity scale)."""
        return (returns - self.mean) / self.std


def regress(optimizer: th.optim.Optimizer, critic_params: list[nn.Parameter], losses: Iterable[th.Tensor]) -> list[th.Tensor]:
    """
    One optimizer step per minibatch loss, the gradient taken for ``critic_params`` only (the actor's parameters
    get none and do not move).

    :param losses: the minibatch losses, built lazily (a generator), so that each is computed after the previous
        step, at the parameters it moved to
    :return: the losses, detached
    """
    done = []
    for loss in losses:
        optimizer.zero_grad(set_to_none=True)
        loss.backward(inputs=critic_params)
        optimizer.step()
        done.append(loss.detach())
    return done


@functools.cache
def _known_value_methods() -> dict[str, set[object]]:
    """Each of :data:`VALUE_METHODS` as SB3's and sb3-contrib's actor-critic policies define it."""
    bases: list[type] = [ActorCriticPolicy, *families.policy_bases().values()]  # sb3-contrib's, where installed
    return {name: {getattr(base, name) for base in bases} for name in VALUE_METHODS}


def value_head(policy: nn.Module) -> nn.Linear | None:
    """
    The policy's value head, when every value it computes is that ``nn.Linear`` layer's output (one unit): SB3's or
    sb3-contrib's actor-critic methods (not overridden on the class or replaced on the instance); else ``None``.
    """
    original = getattr(policy, "_orig_mod", None)  # torch.compile's wrapper: it calls the compiled policy's methods
    if isinstance(original, nn.Module):
        policy = original
    head = getattr(policy, "value_net", None)
    if type(head) is not nn.Linear or head.out_features != 1:
        return None
    known = _known_value_methods()
    if any(getattr(type(policy), name, None) not in known[name] or name in vars(policy) for name in VALUE_METHODS):
        return None
    return head


def update_return_statistics(statistics: RunningMeanStd, returns: np.ndarray) -> None:
    """Merge a rollout's returns into ``statistics``; NaN and infinite returns are left out."""
    finite = np.asarray(returns, dtype=np.float64).reshape(-1)
    finite = finite[np.isfinite(finite)]
    if finite.size:
        statistics.update(finite)


def value_scale(statistics: RunningMeanStd) -> ValueScale:
    """The scale of the statistics: their mean, and their standard deviation (at least :data:`MIN_RETURN_STD`)."""
    return ValueScale(float(statistics.mean), max(math.sqrt(float(statistics.var)), MIN_RETURN_STD))


@contextlib.contextmanager
def normalized_head(head: nn.Linear, scale: ValueScale) -> Iterator[None]:
    """Inside, ``head`` holds its normalized coordinates ``(W / std, (b - mean) / std)``; raw ones again after."""
    with th.no_grad():
        head.weight.div_(scale.std)
        head.bias.sub_(scale.mean).div_(scale.std)  # type: ignore[union-attr]
    try:
        yield
    finally:
        with th.no_grad():
            head.weight.mul_(scale.std)
            head.bias.mul_(scale.std).add_(scale.mean)  # type: ignore[union-attr]
