"""MaskableTRPOPlus: TRPOPlus with invalid-action masking, on sb3-contrib's maskable parts.

The natural-gradient step is TRPOPlus's own (:meth:`TRPOPlus._policy_step`); this class only says how a batch's
action distribution is built: sb3-contrib's ``MaskableActorCriticPolicy.get_distribution(obs, action_masks)``,
whose invalid logits are set to -1e8, so that their probabilities are exactly 0. The surrogate, the KL of the
trust region, the line search and the Fisher metric all use that masked distribution. The Fisher is the
categorical one of the masked probabilities, ``diag(p) - p p^T`` (:class:`~sb3_trpo_plus.fisher.CategoricalFisher`):
invalid actions (``p = 0``) drop out of it, and a state whose only valid action is forced (``p = 1``) has a zero
Fisher, a zero gradient and a zero KL.
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar, NamedTuple, TypeVar

import numpy as np
import torch as th
from gymnasium import spaces
from sb3_contrib.common.maskable.buffers import MaskableDictRolloutBuffer, MaskableRolloutBuffer
from sb3_contrib.common.maskable.distributions import (
    MaskableCategoricalDistribution,
    MaskableDistribution,
    MaskableMultiCategoricalDistribution,
)
from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy
from sb3_contrib.common.maskable.utils import get_action_masks, is_masking_supported
from sb3_contrib.ppo_mask import MaskablePPO
from sb3_contrib.ppo_mask.policies import CnnPolicy, MlpPolicy, MultiInputPolicy
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.distributions import Distribution
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import MaybeCallback, PyTorchObs
from stable_baselines3.common.vec_env import VecEnv

from sb3_trpo_plus.batches import index_obs
from sb3_trpo_plus.fisher import CategoricalFisher, DistributionFisher, joint_kl
from sb3_trpo_plus.trpo_plus import FamilyParts, TRPOPlus

SelfMaskableTRPOPlus = TypeVar("SelfMaskableTRPOPlus", bound="MaskableTRPOPlus")

MASKABLE_ACTION_SPACES = (spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)

NO_MASKS = (
    "Environment does not support action masking: it has no action_masks() method. Wrap it in "
    "sb3_contrib.common.wrappers.ActionMasker, or pass use_masking=False to learn()"
)


class MaskedInput(NamedTuple):
    """What the masked policy acts on: observations and their action masks (one row per state)."""

    observations: PyTorchObs
    action_masks: th.Tensor | None


def mask_width(action_space: spaces.Space) -> int:
    """Number of entries of one state's action mask: one per action of each sub-space."""
    if isinstance(action_space, spaces.Discrete):
        return int(action_space.n)
    if isinstance(action_space, spaces.MultiDiscrete):
        return int(np.sum(action_space.nvec))
    if isinstance(action_space, spaces.MultiBinary):
        return 2 * int(np.prod(action_space.shape))
    raise ValueError(f"Invalid action space {action_space}: action masks need Discrete, MultiDiscrete or MultiBinary actions")


def check_action_masks(action_masks: np.ndarray | th.Tensor, action_space: spaces.Space, n_states: int) -> None:
    """
    Raise a ``ValueError`` naming the expected shape when ``action_masks`` does not hold one mask per state.

    :param action_masks: the masks, of shape ``(n_states, width)`` (or anything with that many entries)
    :param action_space: the action space the masks are for
    :param n_states: number of states the masks are for
    """
    width = mask_width(action_space)
    size = int(np.prod(np.shape(action_masks)))
    if size != n_states * width:
        raise ValueError(
            f"Invalid action_masks of shape {tuple(np.shape(action_masks))}: expected one mask of {width} entries per "
            f"state for {n_states} state(s), i.e. shape ({n_states}, {width}), for the action space {action_space}"
        )


class MaskableTRPOPlus(TRPOPlus):
    """
    TRPOPlus with invalid-action masking (sb3-contrib's ``MaskablePPO`` parts): a drop-in for ``MaskablePPO`` with
    TRPO's update.

    Same arguments as :class:`~sb3_trpo_plus.TRPOPlus` (masks are for Discrete, MultiDiscrete and MultiBinary
    actions, so ``use_sde`` stays False). The policies ``MlpPolicy``, ``CnnPolicy`` and ``MultiInputPolicy`` are
    sb3-contrib's ``MaskableActorCriticPolicy`` family; rollouts go to ``MaskableRolloutBuffer`` (or
    ``MaskableDictRolloutBuffer``) with the masks the environment gives through ``action_masks()``
    (``sb3_contrib.common.wrappers.ActionMasker``), fetched as ``MaskablePPO`` does. ``learn(..., use_masking=False)``
    trains without masks; ``predict(obs, action_masks=...)`` acts with them.
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "MlpPolicy": MlpPolicy,
        "CnnPolicy": CnnPolicy,
        "MultiInputPolicy": MultiInputPolicy,
    }
    policy: MaskableActorCriticPolicy  # type: ignore[assignment]
    rollout_buffer: MaskableRolloutBuffer  # type: ignore[assignment]
    #: ``learn``'s ``use_masking``, read by ``collect_rollouts`` (not saved)
    _use_masking: bool = True

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "_use_masking"]

    def _family_parts(self) -> FamilyParts:
        """sb3-contrib's maskable policies and buffers (which store the masks); Discrete, MultiDiscrete and MultiBinary
        actions; the policy takes no ``use_sde``."""
        aliases = "'MlpPolicy', 'CnnPolicy', 'MultiInputPolicy'"
        buffers = (MaskableRolloutBuffer, MaskableDictRolloutBuffer)
        return FamilyParts(MaskableActorCriticPolicy, aliases, buffers, MASKABLE_ACTION_SPACES, policy_takes_sde=False)

    # ------------------------------------------------------------------ the family's hooks
    def _kl_divergence_loss(self, new: Distribution, old: Distribution) -> float:
        """KL(new || old) of the masked distributions (SB3's ``kl_divergence`` knows no masks), summed over
        MultiDiscrete sub-spaces and averaged over MultiBinary dimensions, as SB3 does for the unmasked ones."""
        kl = joint_kl(new, old)
        if isinstance(self.action_space, spaces.MultiBinary):
            kl = kl / int(np.prod(self.action_space.shape))
        return kl.mean().item()

    def _distribution(self, policy_input: MaskedInput) -> MaskableDistribution:  # type: ignore[override]
        """The masked action distribution of a batch (invalid actions have probability 0)."""
        masks = policy_input.action_masks
        return copy.copy(self.policy.get_distribution(policy_input.observations, action_masks=masks))  # type: ignore[arg-type]

    def _policy_batch(self, rollout: Any) -> tuple[MaskedInput, th.Tensor, th.Tensor, th.Tensor]:
        obs, actions, old_log_prob, advantages = super()._policy_batch(rollout)
        masks = rollout.action_masks[:: self.sub_sampling_factor]
        return MaskedInput(obs, masks), actions, old_log_prob, advantages

    def _subsample(self, policy_input: MaskedInput, every: slice) -> MaskedInput:
        masks = policy_input.action_masks
        return MaskedInput(index_obs(policy_input.observations, every), None if masks is None else masks[every])

    def _action_fisher(self) -> DistributionFisher | None:
        """The categorical Fisher of the masked logits (MultiBinary is a 2-way categorical per bit in sb3-contrib)."""
        if isinstance(self.policy.action_dist, MaskableCategoricalDistribution | MaskableMultiCategoricalDistribution):
            return CategoricalFisher()
        return super()._action_fisher()

    # ------------------------------------------------------------------ rollouts, learn, predict
    def collect_rollouts(  # type: ignore[override]
        self,
        env: VecEnv,
        callback: BaseCallback,
        rollout_buffer: RolloutBuffer,
        n_rollout_steps: int,
        use_masking: bool | None = None,
    ) -> bool:
        """
        ``MaskablePPO``'s rollout collection (masks from ``get_action_masks(env)`` at every step, stored in the
        buffer), after checking that the environment gives masks of the right shape. sb3-contrib's loop is reused as
        it is (``MaskablePPO.collect_rollouts``): it only reads what this class shares with ``MaskablePPO``.

        :param use_masking: whether to collect with masks (``None``: as ``learn``'s ``use_masking`` says)
        """
        masking = self._use_masking if use_masking is None else use_masking
        if masking:
            if not is_masking_supported(env):
                raise ValueError(NO_MASKS)
            check_action_masks(get_action_masks(env), self.action_space, env.num_envs)
        with self._rollout():
            return MaskablePPO.collect_rollouts(self, env, callback, rollout_buffer, n_rollout_steps, masking)  # type: ignore[arg-type]

    def learn(  # type: ignore[override]
        self: SelfMaskableTRPOPlus,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 1,
        tb_log_name: str | None = None,
        reset_num_timesteps: bool = True,
        use_masking: bool = True,
        progress_bar: bool = False,
    ) -> SelfMaskableTRPOPlus:
        """
        Train as ``MaskablePPO.learn`` does: collect with masks (``use_masking=True``, the environment must have an
        ``action_masks()`` method) or without, then a TRPO update per rollout.
        """
        self._use_masking = use_masking
        return super().learn(
            total_timesteps,
            callback=callback,
            log_interval=log_interval,
            tb_log_name=tb_log_name,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )

    def predict(  # type: ignore[override]
        self,
        observation: np.ndarray | dict[str, np.ndarray],
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
        action_masks: np.ndarray | None = None,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        """
        The policy's action for an observation (or a batch), as ``MaskablePPO.predict``: with ``action_masks``,
        only valid actions are chosen.

        :param observation: the observation(s)
        :param state: unused (no recurrent state), returned as is
        :param episode_start: unused
        :param deterministic: whether to take the most likely valid action instead of sampling
        :param action_masks: one boolean mask per observation (``True`` for a valid action), or ``None`` for no masking
        :return: the action(s) and ``state``
        """
        if action_masks is not None:
            obs_tensor, _ = self.policy.obs_to_tensor(observation)
            first = next(iter(obs_tensor.values())) if isinstance(obs_tensor, dict) else obs_tensor
            check_action_masks(action_masks, self.action_space, int(first.shape[0]))
        return self.policy.predict(observation, state, episode_start, deterministic, action_masks=action_masks)


__all__ = ["MaskableTRPOPlus"]
