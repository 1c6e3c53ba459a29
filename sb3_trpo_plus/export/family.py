"""The policy families in the export, one class each: what a family adds to the graph (inputs, outputs, its part of
the computation) and to the check against ``predict`` (random inputs, a rollout step's inputs, ``predict``'s keyword
arguments, the expected outputs). :func:`export_family` picks the class once, from
:func:`sb3_trpo_plus.families.policy_family`; adding a family means one class here and one entry in
:data:`EXPORT_FAMILIES`.

* ``"plain"`` (:class:`PlainExport`): SB3's actor-critic policies, observations in;
* ``"masked"`` (:class:`MaskedExport`): sb3-contrib's maskable policies, plus ``action_mask``;
* ``"recurrent"`` (:class:`RecurrentExport`): sb3-contrib's LSTM policies, plus the LSTM state and ``episode_start``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3.common.policies import BaseModel, BasePolicy

from sb3_trpo_plus import families
from sb3_trpo_plus.export.inputs import actor_lstm, critic_lstm, mask_size, random_masks
from sb3_trpo_plus.export.metadata import (
    ACTION_MASK,
    ACTIONS,
    CRITIC_C,
    CRITIC_H,
    EPISODE_START,
    LOG_STD,
    STATE_C,
    STATE_H,
    VALUE,
)


@dataclass
class GraphStep:
    """What a family's part of the graph computes for a batch; the graph finishes the actions as ``predict`` does.

    :param actions: the deterministic actions, before ``predict``'s reshaping and clipping (or unscaling)
    :param states: the outputs that follow the actions (recurrent: the actor's next LSTM state)
    :param value: the value estimate (``None`` when not asked for)
    :param critic_states: the outputs that follow the value (recurrent: the critic's own next LSTM state)
    :param distribution: the action distribution (SB3's ``Distribution``), for ``log_std``; ``None`` when not needed
    """

    actions: th.Tensor
    states: list[th.Tensor] = field(default_factory=list)
    value: th.Tensor | None = None
    critic_states: list[th.Tensor] = field(default_factory=list)
    distribution: Any = None


class ExportFamily:
    """The part of the export that depends on the policy's family. The base class is the plain family's behaviour
    (observations are the only inputs); the others override what they add.

    :param policy: the policy (the traced CPU copy in the graph, the user's policy in the check)
    """

    name: ClassVar[families.Family]

    def __init__(self, policy: BasePolicy) -> None:
        self.policy = policy

    # ------------------------------------------------------------------------------------------------ the graph
    def example_inputs(self, batch: int, value: bool) -> list[tuple[str, th.Tensor]]:
        """The graph's inputs after the observations, with example tensors of batch size ``batch``.

        :param batch: the example batch size
        :param value: whether the graph also outputs the value
        """
        return []

    def batch_axis(self, name: str) -> int:
        """The batch dimension of the input ``name``."""
        return 0

    def output_names(self, value: bool, log_std: bool) -> list[str]:
        """The graph's outputs, in order: actions, the family's states, the value and its states, the log std."""
        names = [ACTIONS, *self._state_outputs()]
        if value:
            names += [VALUE, *self._critic_state_outputs()]
        if log_std:
            names.append(LOG_STD)
        return names

    def _state_outputs(self) -> list[str]:
        return []

    def _critic_state_outputs(self) -> list[str]:
        return []

    def forward(self, obs: Any, extras: Sequence[th.Tensor], value: bool, log_std: bool) -> GraphStep:
        """The family's part of the graph: ``predict``'s deterministic actions (``_predict``), the value, the
        distribution.

        :param obs: the observations (a dict for Dict spaces), normalized by VecNormalize's statistics if folded
        :param extras: the inputs after the observations, in :meth:`example_inputs`'s order
        :param value: compute the value estimate
        :param log_std: compute the action distribution
        """
        policy: Any = self.policy
        return GraphStep(
            actions=policy._predict(obs, deterministic=True),
            value=policy.predict_values(obs) if value else None,
            distribution=policy.get_distribution(obs) if log_std else None,
        )

    # ------------------------------------------------------------------------------------------------ the check
    def sampled_inputs(self, count: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Random inputs besides the observations for ``count`` sampled observations (they are also ``predict``'s)."""
        return {}

    def unobserved_inputs(self, count: int, rng: np.random.Generator, value: bool) -> dict[str, np.ndarray]:
        """Random inputs that the graph takes but ``predict`` does not (recurrent: the critic's own LSTM state)."""
        return {}

    def rollout_inputs(self, env: gym.Env, state: tuple[np.ndarray, ...] | None, start: bool) -> dict[str, np.ndarray]:
        """The inputs besides the observation of one rollout step (a batch of one).

        :param env: the rollout's env
        :param state: the state ``predict`` returned at the previous step (``None`` at the first)
        :param start: whether an episode starts at this step
        """
        return {}

    def predict_kwargs(self, inputs: dict[str, np.ndarray]) -> dict[str, Any]:
        """``predict``'s keyword arguments for the graph's ``inputs`` besides the observations."""
        return {}

    def expected(
        self, obs: th.Tensor | dict[str, th.Tensor], inputs: dict[str, np.ndarray], state: Any, value: bool, log_std: bool
    ) -> dict[str, np.ndarray]:
        """The outputs besides the actions, as the policy's own methods compute them.

        :param obs: the observations as ``obs_to_tensor`` gives them to the policy
        :param inputs: the graph's inputs besides the observations
        :param state: the state ``predict`` returned
        :param value: the graph outputs the value
        :param log_std: the graph outputs the log standard deviation
        """
        policy: Any = self.policy  # an actor-critic policy (export_onnx checked predict_values and the distribution)
        expected = {}
        if value:
            expected[VALUE] = policy.predict_values(obs).cpu().numpy()
        if log_std:
            expected[LOG_STD] = th.log(policy.get_distribution(obs).distribution.stddev).cpu().numpy()
        return expected


class PlainExport(ExportFamily):
    """SB3's own actor-critic policies (and custom ones): the base class's behaviour."""

    name = "plain"


class MaskedExport(ExportFamily):
    """sb3-contrib's maskable policies: the graph also takes ``action_mask`` (bool, sb3-contrib's layout)."""

    name = "masked"

    def example_inputs(self, batch: int, value: bool) -> list[tuple[str, th.Tensor]]:
        return [(ACTION_MASK, th.ones((batch, mask_size(self.policy.action_space)), dtype=th.bool))]

    def forward(self, obs: Any, extras: Sequence[th.Tensor], value: bool, log_std: bool) -> GraphStep:
        policy: Any = self.policy
        distribution = policy.get_distribution(obs, action_masks=extras[0])
        return GraphStep(
            actions=distribution.get_actions(deterministic=True),
            value=policy.predict_values(obs) if value else None,
            distribution=distribution,
        )

    def sampled_inputs(self, count: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        return {ACTION_MASK: random_masks(self.policy.action_space, count, rng)}

    def rollout_inputs(self, env: gym.Env, state: tuple[np.ndarray, ...] | None, start: bool) -> dict[str, np.ndarray]:
        """The env's masks as sb3-contrib reads them (through wrappers); every action allowed if it has none."""
        from sb3_contrib.common.maskable.utils import get_action_masks, is_masking_supported

        mask = (
            np.asarray(get_action_masks(env), dtype=bool)
            if is_masking_supported(env)
            else np.ones(mask_size(self.policy.action_space), dtype=bool)
        )
        return {ACTION_MASK: mask[None]}

    def predict_kwargs(self, inputs: dict[str, np.ndarray]) -> dict[str, Any]:
        return {"action_masks": inputs[ACTION_MASK]}


class RecurrentExport(ExportFamily):
    """sb3-contrib's LSTM policies: the graph also takes ``lstm_h``, ``lstm_c`` (``(layers, batch, hidden)``) and
    ``episode_start`` and outputs the next state; with the value, a critic with its own LSTM takes and outputs its
    state too (``critic_lstm_h``, ``critic_lstm_c``)."""

    name = "recurrent"
    _STATES = (STATE_H, STATE_C, CRITIC_H, CRITIC_C)

    def example_inputs(self, batch: int, value: bool) -> list[tuple[str, th.Tensor]]:
        lstm = actor_lstm(self.policy)
        inputs = [(name, th.zeros((lstm.num_layers, batch, lstm.hidden_size))) for name in (STATE_H, STATE_C)]
        inputs.append((EPISODE_START, th.zeros(batch)))
        critic = critic_lstm(self.policy) if value else None
        if critic is not None:
            inputs += [(name, th.zeros((critic.num_layers, batch, critic.hidden_size))) for name in (CRITIC_H, CRITIC_C)]
        return inputs

    def batch_axis(self, name: str) -> int:
        return 1 if name in self._STATES else 0

    def _state_outputs(self) -> list[str]:
        return [f"{STATE_H}_out", f"{STATE_C}_out"]

    def _critic_state_outputs(self) -> list[str]:
        return [f"{CRITIC_H}_out", f"{CRITIC_C}_out"] if critic_lstm(self.policy) is not None else []

    def forward(self, obs: Any, extras: Sequence[th.Tensor], value: bool, log_std: bool) -> GraphStep:
        policy: Any = self.policy
        h, c, episode_start = extras[0], extras[1], extras[2]
        features = BaseModel.extract_features(policy, obs, policy.pi_features_extractor)
        keep = (1.0 - episode_start).view(1, -1, 1)
        # sb3-contrib's _process_sequence for one step: the states of new episodes are zeroed, then one LSTM step
        output, (h_out, c_out) = policy.lstm_actor(features.unsqueeze(0), (keep * h, keep * c))
        latent = policy.mlp_extractor.forward_actor(output.squeeze(0))
        distribution = policy._get_action_dist_from_latent(latent)
        step = GraphStep(distribution.get_actions(deterministic=True), [h_out, c_out], distribution=distribution)
        if value:  # sb3-contrib's predict_values: the critic's own LSTM, the actor's (shared), or a Linear
            vf_features = BaseModel.extract_features(policy, obs, policy.vf_features_extractor)
            if policy.lstm_critic is not None:
                critic_h, critic_c = extras[3], extras[4]
                critic_output, (critic_h, critic_c) = policy.lstm_critic(
                    vf_features.unsqueeze(0), (keep * critic_h, keep * critic_c)
                )
                latent_vf = critic_output.squeeze(0)
                step.critic_states = [critic_h, critic_c]
            elif policy.shared_lstm:
                latent_vf = output.squeeze(0)
            else:
                latent_vf = policy.critic(vf_features)
            step.value = policy.value_net(policy.mlp_extractor.forward_critic(latent_vf))
        return step

    def sampled_inputs(self, count: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        lstm = actor_lstm(self.policy)
        shape = (lstm.num_layers, count, lstm.hidden_size)
        h, c = rng.normal(size=shape).astype(np.float32), rng.normal(size=shape).astype(np.float32)
        return {STATE_H: h, STATE_C: c, EPISODE_START: (rng.random(count) < 0.3).astype(np.float32)}

    def unobserved_inputs(self, count: int, rng: np.random.Generator, value: bool) -> dict[str, np.ndarray]:
        """The critic's own LSTM state: random, as the actor's of the sampled rows (``predict`` does not take it)."""
        critic = critic_lstm(self.policy) if value else None
        if critic is None:
            return {}
        shape = (critic.num_layers, count, critic.hidden_size)
        return {CRITIC_H: rng.normal(size=shape).astype(np.float32), CRITIC_C: rng.normal(size=shape).astype(np.float32)}

    def rollout_inputs(self, env: gym.Env, state: tuple[np.ndarray, ...] | None, start: bool) -> dict[str, np.ndarray]:
        """The state ``predict`` returned (zeros at the first step) and whether an episode starts."""
        if state is None:
            lstm = actor_lstm(self.policy)
            zeros = np.zeros((lstm.num_layers, 1, lstm.hidden_size), np.float32)
            state = (zeros, zeros)
        return {STATE_H: state[0], STATE_C: state[1], EPISODE_START: np.array([float(start)], np.float32)}

    def predict_kwargs(self, inputs: dict[str, np.ndarray]) -> dict[str, Any]:
        return {"state": (inputs[STATE_H], inputs[STATE_C]), "episode_start": inputs[EPISODE_START]}

    def expected(
        self, obs: th.Tensor | dict[str, th.Tensor], inputs: dict[str, np.ndarray], state: Any, value: bool, log_std: bool
    ) -> dict[str, np.ndarray]:
        """The next state ``predict`` returned; the value and the critic's next state as sb3-contrib's ``forward``
        computes them (``predict_values`` does not return the state); the distribution from the given state."""
        from sb3_contrib.common.recurrent.type_aliases import RNNStates

        policy: Any = self.policy

        def as_tensors(first: str, second: str) -> tuple[th.Tensor, th.Tensor]:
            return th.as_tensor(inputs[first], device=policy.device), th.as_tensor(inputs[second], device=policy.device)

        assert state is not None
        expected = {f"{STATE_H}_out": state[0], f"{STATE_C}_out": state[1]}
        actor = as_tensors(STATE_H, STATE_C)
        own_critic = CRITIC_H in inputs
        start = th.as_tensor(inputs[EPISODE_START], dtype=th.float32, device=policy.device)
        _, values, _, next_states = policy.forward(
            obs, RNNStates(actor, as_tensors(CRITIC_H, CRITIC_C) if own_critic else actor), start, True
        )
        if value:
            expected[VALUE] = values.cpu().numpy()
        if own_critic:
            expected[f"{CRITIC_H}_out"] = next_states.vf[0].cpu().numpy()
            expected[f"{CRITIC_C}_out"] = next_states.vf[1].cpu().numpy()
        if log_std:
            distribution = policy.get_distribution(obs, actor, start)[0]
            expected[LOG_STD] = th.log(distribution.distribution.stddev).cpu().numpy()
        return expected


#: the export's class of each family (:data:`sb3_trpo_plus.families.FAMILIES`)
EXPORT_FAMILIES: dict[families.Family, type[ExportFamily]] = {
    "plain": PlainExport,
    "masked": MaskedExport,
    "recurrent": RecurrentExport,
}


def export_family(policy: BasePolicy) -> ExportFamily:
    """The export's family object of ``policy``, chosen by :func:`sb3_trpo_plus.families.policy_family`."""
    return EXPORT_FAMILIES[families.policy_family(policy)](policy)
