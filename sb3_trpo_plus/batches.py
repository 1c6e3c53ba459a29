"""Rows of a batch of observations, a tensor or a dict of tensors (SB3's ``PyTorchObs``)."""

from __future__ import annotations

import torch as th
from stable_baselines3.common.type_aliases import PyTorchObs


def index_obs(obs: PyTorchObs, index: th.Tensor | slice) -> PyTorchObs:
    """Rows ``index`` of a batch of observations (a tensor or a dict of tensors)."""
    if isinstance(obs, dict):
        return {key: value[index] for key, value in obs.items()}
    return obs[index]
