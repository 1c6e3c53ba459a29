"""The exported computation as torch modules: VecNormalize's observation statistics folded in
(:class:`FoldedVecNormalize`) and the whole graph from raw observations to ``predict``'s outputs
(:class:`PolicyGraph`), whose family-specific part is its :class:`~sb3_trpo_plus.export.family.ExportFamily`."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.vec_env import VecNormalize

from sb3_trpo_plus.export.family import ExportFamily


class FoldedVecNormalize(th.nn.Module):
    """``VecNormalize.normalize_obs`` as a module: ``clip((obs - mean) / sqrt(var + eps), +-clip_obs)`` on the keys it
    normalizes, in float64 as VecNormalize computes it, then back to the observation's dtype.

    :param vec_normalize: the statistics to fold in
    :param observation_space: the policy's observation space
    """

    def __init__(self, vec_normalize: VecNormalize, observation_space: spaces.Space) -> None:
        super().__init__()
        self.clip = float(vec_normalize.clip_obs)
        self.epsilon = float(vec_normalize.epsilon)
        statistics = vec_normalize.obs_rms
        if isinstance(observation_space, spaces.Dict):
            keys = list(vec_normalize.norm_obs_keys or observation_space.spaces)
            assert isinstance(statistics, dict)
            self.keys = keys
            chosen: dict[str, Any] = {key: statistics[key] for key in keys}
        else:
            self.keys = [""]
            chosen = {"": statistics}
        for index, key in enumerate(self.keys):
            self.register_buffer(f"mean_{index}", th.as_tensor(np.asarray(chosen[key].mean, dtype=np.float64)))
            self.register_buffer(
                f"std_{index}", th.as_tensor(np.sqrt(np.asarray(chosen[key].var, dtype=np.float64) + self.epsilon))
            )

    def normalize(self, obs: th.Tensor, index: int) -> th.Tensor:
        mean, std = getattr(self, f"mean_{index}"), getattr(self, f"std_{index}")
        return th.clamp((obs.double() - mean) / std, -self.clip, self.clip)


class PolicyGraph(th.nn.Module):
    """The exported computation: raw observations (and mask or LSTM state) in, ``predict``'s outputs out.

    :param family: the policy's family, holding a CPU copy of the policy in evaluation mode
    :param folded: VecNormalize's statistics to apply first, or ``None``
    :param value: also output the value head's estimate (``predict_values``)
    :param log_std: also output the log standard deviation of the Gaussian action distribution
    """

    def __init__(self, family: ExportFamily, folded: FoldedVecNormalize | None, value: bool, log_std: bool) -> None:
        super().__init__()
        self.family = family
        self.policy = family.policy
        self.folded = folded
        self.value = value
        self.log_std = log_std
        space = self.policy.observation_space
        self.keys = list(space.spaces) if isinstance(space, spaces.Dict) else None
        action_space = self.policy.action_space
        self.box = isinstance(action_space, spaces.Box)
        if self.box:
            assert isinstance(action_space, spaces.Box)
            self.register_buffer("low", th.as_tensor(action_space.low, dtype=th.float32))
            self.register_buffer("high", th.as_tensor(action_space.high, dtype=th.float32))
        self.squash = bool(getattr(self.policy, "squash_output", False))

    def _observation(self, inputs: tuple[th.Tensor, ...]) -> Any:
        if self.keys is None:
            obs = inputs[0]
            if self.folded is not None and self.folded.keys == [""]:
                obs = self.folded.normalize(obs, 0)
            return obs
        result = {}
        for key, tensor in zip(self.keys, inputs[: len(self.keys)], strict=True):
            if self.folded is not None and key in self.folded.keys:
                tensor = self.folded.normalize(tensor, self.folded.keys.index(key))
            result[key] = tensor
        return result

    def _finish(self, actions: th.Tensor) -> th.Tensor:
        """``predict``'s last steps: the action space's shape, then unscaling (squashed) or clipping (Box)."""
        shape = self.policy.action_space.shape or ()
        actions = actions.reshape((-1, *shape))
        if self.box:
            low, high = self.low, self.high
            assert isinstance(low, th.Tensor) and isinstance(high, th.Tensor)
            if self.squash:
                return low + 0.5 * (actions + 1.0) * (high - low)
            return th.clamp(actions.float(), low, high)
        return actions

    def forward(self, *inputs: th.Tensor) -> tuple[th.Tensor, ...]:
        n_obs = len(self.keys) if self.keys is not None else 1
        step = self.family.forward(self._observation(inputs), inputs[n_obs:], self.value, self.log_std)
        outputs = [self._finish(step.actions), *step.states]
        if self.value:
            assert step.value is not None
            outputs += [step.value, *step.critic_states]
        if self.log_std:
            assert step.distribution is not None
            outputs.append(th.log(step.distribution.distribution.stddev))
        return tuple(outputs)
