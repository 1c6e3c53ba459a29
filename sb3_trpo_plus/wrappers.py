"""Gymnasium wrappers that RL Zoo hyperparameter entries can name (``env_wrapper:``)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class DropContactForces(gym.ObservationWrapper[np.ndarray, Any, np.ndarray]):
    """Remove the external contact forces (``cfrc_ext``) from a MuJoCo v5 observation.

    Gives exactly the observation of ``gym.make(env_id, include_cfrc_ext_in_observation=False)``
    (Ant-v5, Humanoid-v5, HumanoidStandup-v5), whose contact forces are the last
    ``6 * (nbody - 1)`` entries. A wrapper rather than the environment argument because the RL Zoo
    (rl_zoo3 2.9.2) applies a hyperparameter entry's ``env_kwargs`` to the training environments but
    not to its evaluation environment, which then crashes on the shape mismatch; ``env_wrapper``
    reaches both.

    :param env: a MuJoCo v5 environment whose observation includes the contact forces
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        base = env.unwrapped
        if not getattr(base, "_include_cfrc_ext_in_observation", False):
            raise ValueError(
                f"DropContactForces: env {env.spec.id if env.spec else base!r} has no contact forces in its "
                "observation; it applies to MuJoCo v5 envs made with include_cfrc_ext_in_observation=True "
                "(Ant-v5, Humanoid-v5, HumanoidStandup-v5)"
            )
        space = env.observation_space
        assert isinstance(space, spaces.Box) and len(space.shape) == 1
        n_forces = 6 * (base.model.nbody - 1)  # type: ignore[attr-defined]
        self._keep = space.shape[0] - n_forces
        self.observation_space = spaces.Box(
            low=space.low[: self._keep],
            high=space.high[: self._keep],
            dtype=space.dtype,  # type: ignore[arg-type]
        )

    def observation(self, observation: np.ndarray) -> np.ndarray:
        """:param observation: the full observation
        :return: the observation without its trailing contact forces
        """
        return observation[: self._keep]
