"""Shared test helpers."""

from __future__ import annotations

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor


class SharedLinearExtractor(BaseFeaturesExtractor):
    """A features extractor with parameters, shared by the actor and the critic."""

    def __init__(self, observation_space: spaces.Box, features_dim: int = 8):
        super().__init__(observation_space, features_dim)
        self.net = th.nn.Sequential(th.nn.Linear(int(np.prod(observation_space.shape)), features_dim), th.nn.Tanh())

    def forward(self, observations: th.Tensor) -> th.Tensor:
        return self.net(observations.flatten(1))
