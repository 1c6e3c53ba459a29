"""Shared test helpers."""

from __future__ import annotations

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.utils import obs_as_tensor

from sb3_trpo_plus import TRPOPlus
from sb3_trpo_plus.normalization import observation_normalizers


class SharedLinearExtractor(BaseFeaturesExtractor):
    """A features extractor with parameters, shared by the actor and the critic."""

    def __init__(self, observation_space: spaces.Box, features_dim: int = 8):
        super().__init__(observation_space, features_dim)
        self.net = th.nn.Sequential(th.nn.Linear(int(np.prod(observation_space.shape)), features_dim), th.nn.Tanh())

    def forward(self, observations: th.Tensor) -> th.Tensor:
        return self.net(observations.flatten(1))


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
    if isinstance(model.action_space, spaces.Discrete):
        actions = actions.long().flatten()
    old_log_prob = th.as_tensor(buffer.swap_and_flatten(buffer.log_probs), device=model.device).flatten()
    advantages = th.as_tensor(buffer.swap_and_flatten(buffer.advantages), device=model.device).flatten()
    if model.normalize_advantage:
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    return obs, actions, old_log_prob, advantages


def perturb_observation_statistics(model: TRPOPlus, seed: int = 0, required: bool = True) -> None:
    """Give the policy's observation normalizers statistics far from their start (mean 0, variance 1), as after
    some updates, so that an equality test of the normalized paths tests the normalization too.

    :param required: fail when the policy has no normalizer (``False``: a Discrete observation space, say)"""
    normalizers = observation_normalizers(model.policy)
    assert normalizers or not required, "the policy normalizes no observation"
    generator = th.Generator().manual_seed(seed)
    with th.no_grad():
        for normalizer in normalizers:
            normalizer.mean.copy_(th.randn(normalizer.mean.shape, generator=generator))
            normalizer.var.copy_(0.05 + 4.0 * th.rand(normalizer.var.shape, generator=generator))
