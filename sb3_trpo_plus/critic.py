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
from stable_baselines3.common.type_aliases import PyTorchObs
from stable_baselines3.common.vec_env import VecEnv
from torch import nn
from torch.nn import functional as F

from sb3_trpo_plus import families
from sb3_trpo_plus.batches import index_obs
from sb3_trpo_plus.normalization import Setting, env_normalizes
from sb3_trpo_plus.statistics import merge_finite

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


def select_value_normalization(setting: Setting, env: VecEnv | None, policy: nn.Module) -> tuple[bool, str | None]:
    """
    ``normalize_values``: whether the critic is fitted on a normalized return scale, for the policy built, and a note
    for the user where ``"auto"`` decides against it.

    :raises ValueError: ``True`` for a policy whose values are not its value head's output
    """
    if setting is False:
        return False, None
    if setting == "auto" and env_normalizes(env):
        return (
            False,
            "the critic fits the returns on their own scale, as the env stack has a VecNormalize (normalize_values='auto')",
        )
    if value_head(policy) is not None:
        return True, None
    reason = f"{type(policy).__name__}'s values are not the output of its value_net Linear layer"
    if setting is True:
        raise ValueError(f"Invalid normalize_values=True: {reason}; use 'auto' or False")
    return False, f"the critic fits the returns on their own scale (normalize_values='auto': {reason})"


def start_at_zero(policy: nn.Module) -> None:
    """
    Set the value head of a new policy whose critic works on the normalized scale to zero (weights and bias), so that
    the first rollout's values are 0 whatever the reward's units: its advantages are then the rewards' own (times
    any unit), and at the first fit the head's normalized coordinates ``(0, -mean / std)`` are the same in any unit.
    With normalized advantages, every update is then the same for rewards times any c > 0 (up to float rounding and
    the floors: the advantages' 1e-8, :data:`MIN_RETURN_STD`). SB3's own initialization draws the head (gain 1)
    before this, so torch's random stream is used as before.
    """
    head = value_head(policy)
    if head is not None:
        with th.no_grad():
            head.weight.zero_()
            head.bias.zero_()  # type: ignore[union-attr]


@contextlib.contextmanager
def fitting_scale(statistics: RunningMeanStd | None, policy: nn.Module, returns: np.ndarray) -> Iterator[ValueScale]:
    """
    Around one fit of the critic: with return statistics (PopArt), they take in ``returns`` and the value head holds
    its normalized coordinates inside (:func:`normalized_head`); yields the scale of the targets, the identity
    without statistics or without a plain value head. The values the policy outputs do not change.
    """
    head = value_head(policy) if statistics is not None else None
    if statistics is None or head is None:
        yield ValueScale()
        return
    merge_finite(statistics, returns)  # NaN and infinite returns are left out
    scale = value_scale(statistics)
    with normalized_head(head, scale):
        yield scale


def critic_parameters(policy: nn.Module, actor_params: list[nn.Parameter]) -> list[nn.Parameter]:
    """The policy's trainable parameters that the actor does not use: those the critic's regression moves."""
    actor_ids = {id(param) for param in actor_params}
    return [param for param in policy.parameters() if param.requires_grad and id(param) not in actor_ids]


def minibatches(n_samples: int, n_epochs: int, batch_size: int, device: th.device) -> Iterator[th.Tensor]:
    """Indices of the critic's minibatches: ``n_epochs`` shuffled passes over ``n_samples`` (drawn lazily, one
    ``torch.randperm`` per pass, when the pass starts)."""
    for _ in range(n_epochs):
        permutation = th.randperm(n_samples, device=device)
        for start in range(0, n_samples, batch_size):
            yield permutation[start : start + batch_size]


def fit_values(
    policy: ActorCriticPolicy,
    obs: PyTorchObs,
    targets: th.Tensor,
    critic_params: list[nn.Parameter],
    batches: Iterable[th.Tensor],
) -> list[th.Tensor]:
    """The critic's regression through the policy's own ``predict_values``, one optimizer step per minibatch."""
    losses = (F.mse_loss(policy.predict_values(index_obs(obs, index)).flatten(), targets[index]) for index in batches)
    return regress(policy.optimizer, critic_params, losses)
