"""SB3's rollout loop with the policy call swapped for the closed-form forward (the user's policy is never modified)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import RolloutBuffer as SB3RolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.type_aliases import PyTorchObs
from stable_baselines3.common.utils import obs_as_tensor
from stable_baselines3.common.vec_env import VecEnv

if TYPE_CHECKING:
    from stable_baselines3.common.buffers import RolloutBuffer
    from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from sb3_trpo_plus.fast_paths.rollout import RolloutForward


def collect_rollouts(
    model: OnPolicyAlgorithm,
    env: VecEnv,
    callback: BaseCallback,
    rollout_buffer: RolloutBuffer,
    n_rollout_steps: int,
    forward: RolloutForward,
) -> bool:
    """
    SB3's ``OnPolicyAlgorithm.collect_rollouts`` with the policy call ``model.policy(obs_tensor)`` replaced by
    ``forward(obs_tensor)``: the same steps in the same order (actions clipped to the Box bounds, callbacks
    given the same local names, time-outs bootstrapped with ``policy.predict_values``, the same buffer writes).
    No gSDE (the fast forward does not serve it). ``tests/test_fast_paths.py`` checks that both loops fill the
    same buffer.

    :return: ``True`` if ``n_rollout_steps`` were collected, ``False`` if a callback stopped the rollout
    """
    assert model._last_obs is not None, "No previous observation was provided"
    policy = model.policy
    policy.set_training_mode(False)
    n_steps = 0
    rollout_buffer.reset()
    callback.on_rollout_start()
    space = model.action_space
    bounds = (space.low, space.high) if isinstance(space, spaces.Box) else None
    discrete = isinstance(model.action_space, spaces.Discrete)

    # the NumPy forward's arrays (it takes the NumPy observations), or None for the torch forward
    arrays = getattr(forward, "arrays", None)
    # SB3's RolloutBuffer itself (not a subclass, add() not replaced on the instance) with the NumPy forward's Box
    # observations: its add() written out, the same arrays at the same places without its copies and tensor round trips
    direct = arrays is not None and type(rollout_buffer) is SB3RolloutBuffer and "add" not in vars(rollout_buffer)
    while n_steps < n_rollout_steps:
        # obs_tensor as SB3 makes it (a callback may read it): th.as_tensor's view of a CPU array is from_numpy's
        last_obs = model._last_obs
        obs_tensor: PyTorchObs
        if isinstance(last_obs, np.ndarray) and last_obs.flags.c_contiguous and model.device.type == "cpu":
            obs_tensor = th.from_numpy(last_obs)
        else:
            obs_tensor = obs_as_tensor(last_obs, model.device)  # type: ignore[arg-type]
        if arrays is not None:  # the NumPy forward reads the NumPy observations (no autograd to turn off); the buffer
            actions, values_array, log_probs_array = arrays(last_obs)  # takes its arrays
            values, log_probs = th.from_numpy(values_array), th.from_numpy(log_probs_array)  # SB3's local names
        else:
            with th.no_grad():
                actions, values, log_probs = forward(obs_tensor)  # type: ignore[assignment]
            actions = actions.cpu().numpy()  # type: ignore[assignment]
        clipped_actions = actions
        if bounds is not None:  # the fast forward serves unsquashed Gaussians only: clip to the bounds, as SB3 does (np.clip)
            clipped_actions = np.minimum(np.maximum(actions, bounds[0]), bounds[1])  # type: ignore[assignment]

        new_obs, rewards, dones, infos = env.step(clipped_actions)  # type: ignore[arg-type]
        model.num_timesteps += env.num_envs

        callback.update_locals(locals())
        if not callback.on_step():
            return False

        model._update_info_buffer(infos, dones)
        n_steps += 1

        if discrete:
            actions = actions.reshape(-1, 1)

        for idx, done in enumerate(dones):
            if done and infos[idx].get("terminal_observation") is not None and infos[idx].get("TimeLimit.truncated", False):
                terminal_obs = policy.obs_to_tensor(infos[idx]["terminal_observation"])[0]
                with th.no_grad():
                    terminal_value = policy.predict_values(terminal_obs)[0]  # type: ignore[arg-type]
                rewards[idx] += model.gamma * terminal_value

        if direct:
            position = rollout_buffer.pos
            rollout_buffer.observations[position] = model._last_obs
            rollout_buffer.actions[position] = actions.reshape((rollout_buffer.n_envs, rollout_buffer.action_dim))
            rollout_buffer.rewards[position] = rewards
            rollout_buffer.episode_starts[position] = model._last_episode_starts
            rollout_buffer.values[position] = values_array.ravel()
            rollout_buffer.log_probs[position] = log_probs_array
            rollout_buffer.pos += 1
            rollout_buffer.full = rollout_buffer.pos == rollout_buffer.buffer_size
        else:
            rollout_buffer.add(model._last_obs, actions, rewards, model._last_episode_starts, values, log_probs)  # type: ignore[arg-type]
        model._last_obs = new_obs  # type: ignore[assignment]
        model._last_episode_starts = dones

    with th.no_grad():
        values = policy.predict_values(obs_as_tensor(new_obs, model.device))  # type: ignore[arg-type]
    rollout_buffer.compute_returns_and_advantage(last_values=values, dones=dones)
    callback.update_locals(locals())
    callback.on_rollout_end()
    return True
