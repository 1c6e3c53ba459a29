"""RecurrentTRPOPlus: TRPOPlus for LSTM policies, on sb3-contrib's recurrent parts.

The natural-gradient step is TRPOPlus's own (:meth:`TRPOPlus._policy_step`); this class only says how a batch's
action distribution is built. ``train()`` takes the whole rollout from sb3-contrib's ``RecurrentRolloutBuffer`` as
padded sequences (cut at episode starts, each with the LSTM state stored when its first step was collected), runs
the actor's LSTM along every sequence from that state (what ``RecurrentActorCriticPolicy._process_sequence``
computes, as ``RecurrentPPO`` does per minibatch; with ``fast_paths``, in one LSTM call instead of one per time
step: :func:`sb3_trpo_plus.fast_paths.lstm_along_sequences`) and keeps the rows of real steps only: the padding never
reaches the action distribution, so the surrogate, the KL, the Fisher-vector products (Gauss-Newton through
autograd, back through the LSTM) and the line search are all means over the real steps. The critic is regressed
through its own LSTM (or the shared one, whose output it sees detached, so the actor's parameters do not move) on
sequence minibatches.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any, ClassVar, NamedTuple, TypeVar

import numpy as np
import torch as th
from gymnasium import spaces
from sb3_contrib.common.recurrent.buffers import RecurrentDictRolloutBuffer, RecurrentRolloutBuffer
from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy
from sb3_contrib.common.recurrent.type_aliases import RNNStates
from sb3_contrib.ppo_recurrent import RecurrentPPO
from sb3_contrib.ppo_recurrent.policies import CnnLstmPolicy, MlpLstmPolicy, MultiInputLstmPolicy
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.distributions import Distribution
from stable_baselines3.common.policies import BaseModel, BasePolicy
from stable_baselines3.common.type_aliases import PyTorchObs
from stable_baselines3.common.vec_env import VecEnv
from torch import nn

from sb3_trpo_plus import fast_paths
from sb3_trpo_plus.critic import ValueScale, critic_parameters, regress
from sb3_trpo_plus.trpo_plus import FamilyParts, PlanChoice, PolicyStepStats, TRPOPlus

SelfRecurrentTRPOPlus = TypeVar("SelfRecurrentTRPOPlus", bound="RecurrentTRPOPlus")


class SequenceInput(NamedTuple):
    """What the recurrent policy acts on in ``train()``: padded sequences and the rows of their real steps."""

    #: observations of the padded sequences, flattened to ``(n_seq * max_length, ...)``
    observations: PyTorchObs
    #: the actor's LSTM (hidden, cell) states at the start of each sequence, ``(n_layers, n_seq, hidden_size)``
    lstm_states: tuple[th.Tensor, th.Tensor]
    #: 1.0 where an episode starts (the LSTM state is reset there), flattened like ``observations``
    episode_starts: th.Tensor
    #: indices of the rows (real steps, not padding) the distribution is built for
    rows: th.Tensor


class RecurrentTRPOPlus(TRPOPlus):
    """
    TRPOPlus for recurrent (LSTM) policies (sb3-contrib's ``RecurrentPPO`` parts): a drop-in for ``RecurrentPPO``
    with TRPO's update.

    Same arguments as :class:`~sb3_trpo_plus.TRPOPlus`. The policies ``MlpLstmPolicy``, ``CnnLstmPolicy`` and
    ``MultiInputLstmPolicy`` are sb3-contrib's ``RecurrentActorCriticPolicy`` family (``policy_kwargs``:
    ``lstm_hidden_size``, ``n_lstm_layers``, ``shared_lstm``, ``enable_critic_lstm``, ...); rollouts go to
    ``RecurrentRolloutBuffer`` (or ``RecurrentDictRolloutBuffer``) with the LSTM states of every step.
    The policy step uses the whole rollout, as sequences from their stored LSTM states (``sub_sampling_factor``
    and ``fisher_sub_sampling`` keep every k-th step, each still evaluated with its whole history); the critic's
    regression runs ``n_critic_updates`` passes over minibatches of about ``batch_size`` steps, cut into sequences
    as ``RecurrentPPO`` cuts them. ``predict(obs, state=..., episode_start=...)`` works as in ``RecurrentPPO``.
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "MlpLstmPolicy": MlpLstmPolicy,
        "CnnLstmPolicy": CnnLstmPolicy,
        "MultiInputLstmPolicy": MultiInputLstmPolicy,
    }
    policy: RecurrentActorCriticPolicy
    rollout_buffer: RecurrentRolloutBuffer  # type: ignore[assignment]
    _last_lstm_states: RNNStates | None = None

    def _family_parts(self) -> FamilyParts:
        """sb3-contrib's recurrent policies and buffers (which store the LSTM states of every step)."""
        aliases = "'MlpLstmPolicy', 'CnnLstmPolicy', 'MultiInputLstmPolicy'; use TRPOPlus for a feed-forward policy"
        return FamilyParts(RecurrentActorCriticPolicy, aliases, (RecurrentRolloutBuffer, RecurrentDictRolloutBuffer))

    def _rollout_buffer_arguments(self) -> dict[str, Any]:
        """The shape of the LSTM states the buffer stores at each step; the rollout starts from zero states."""
        lstm = self.policy.lstm_actor
        state_shape = (lstm.num_layers, self.n_envs, lstm.hidden_size)
        zeros = lambda: th.zeros(state_shape, device=self.device)  # noqa: E731
        self._last_lstm_states = RNNStates((zeros(), zeros()), (zeros(), zeros()))
        return {"hidden_state_shape": (self.n_steps, lstm.num_layers, self.n_envs, lstm.hidden_size)}

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "_last_lstm_states"]

    # ------------------------------------------------------------------ the family's hooks
    def _distribution(self, policy_input: SequenceInput) -> Distribution:  # type: ignore[override]
        """
        The actor's distribution at the rows ``policy_input.rows``, each evaluated along its sequence from the
        sequence's stored LSTM state (resetting the state where an episode starts).
        """
        policy = self.policy
        features = BaseModel.extract_features(policy, policy_input.observations, policy.pi_features_extractor)
        starts = policy_input.episode_starts
        latent = self._lstm_output(features, policy_input.lstm_states, starts, policy.lstm_actor)
        latent = policy.mlp_extractor.forward_actor(latent[policy_input.rows])
        return copy.copy(policy._get_action_dist_from_latent(latent))

    def _policy_batch(self, rollout: Any) -> tuple[SequenceInput, th.Tensor, th.Tensor, th.Tensor]:
        rows = th.nonzero(rollout.mask > 1e-8).flatten()[:: self.sub_sampling_factor]
        actions = rollout.actions[rows]
        if isinstance(self.action_space, spaces.Discrete):
            actions = actions.long().flatten()
        policy_input = SequenceInput(rollout.observations, rollout.lstm_states.pi, rollout.episode_starts, rows)
        return policy_input, actions, rollout.old_log_prob[rows], rollout.advantages[rows]

    def _subsample(self, policy_input: SequenceInput, every: slice) -> SequenceInput:
        return policy_input._replace(rows=policy_input.rows[every])

    def _policy_step(  # type: ignore[override]
        self,
        obs: SequenceInput,
        actions: th.Tensor,
        old_log_prob: th.Tensor,
        advantages: th.Tensor,
        plan: PlanChoice = "decide",
    ) -> tuple[list[nn.Parameter], PolicyStepStats]:
        # The Fisher-vector products differentiate the LSTM's backward pass, which cuDNN's LSTM cannot do.
        with th.backends.cudnn.flags(enabled=False):
            return super()._policy_step(obs, actions, old_log_prob, advantages, plan)  # type: ignore[arg-type]

    def _value_step(
        self, rollout: Any, actor_params: list[nn.Parameter], scale: ValueScale, plan: PlanChoice = "decide"
    ) -> float:
        """
        Regression of V on the returns through the critic's LSTM: ``n_critic_updates`` passes over the buffer's
        sequence minibatches (``RecurrentRolloutBuffer.get(batch_size)``), the padding masked out of the loss;
        the actor's parameters get no gradient.

        :param plan: unused (the MLP fast paths never serve a recurrent policy; its LSTM runs as :meth:`_lstm_output`)
        :return: the mean minibatch loss (NaN when ``n_critic_updates == 0``)
        """
        critic_params = critic_parameters(self.policy, actor_params)
        if not critic_params or self.n_critic_updates == 0:
            return float("nan")
        policy = self.policy

        def batch_losses() -> Iterator[th.Tensor]:
            for _ in range(self.n_critic_updates):
                for data in self.rollout_buffer.get(self.batch_size):
                    real = data.mask > 1e-8
                    states = data.lstm_states.vf
                    values = self._sequence_values(data.observations, (states[0], states[1]), data.episode_starts).flatten()
                    yield (scale.targets(data.returns) - values)[real].square().mean()

        return th.stack(regress(policy.optimizer, critic_params, batch_losses())).mean().item()

    def _keeps(self, method: str) -> bool:
        """Whether the fast paths are on and the policy's class keeps sb3-contrib's ``method`` (a user's subclass that
        overrides it is called as it is)."""
        own = getattr(type(self.policy), method, None)
        return self.fast_paths and own is getattr(RecurrentActorCriticPolicy, method)

    def _lstm_output(
        self, features: th.Tensor, lstm_states: tuple[th.Tensor, th.Tensor], episode_starts: th.Tensor, lstm: nn.LSTM
    ) -> th.Tensor:
        """``policy._process_sequence``'s output along padded sequences; in one LSTM call
        (:func:`sb3_trpo_plus.fast_paths.lstm_along_sequences`) where ``fast_paths`` is on, the policy's class keeps
        sb3-contrib's method and episodes start only at the sequences' first steps."""
        if self._keeps("_process_sequence"):
            output = fast_paths.lstm_along_sequences(lstm, features, lstm_states, episode_starts)
            if output is not None:
                return output
        return self.policy._process_sequence(features, lstm_states, episode_starts, lstm)[0]

    def _sequence_values(
        self, obs: PyTorchObs, lstm_states: tuple[th.Tensor, th.Tensor], episode_starts: th.Tensor
    ) -> th.Tensor:
        """``policy.predict_values`` along padded sequences, its LSTM run by :meth:`_lstm_output` where the policy's
        class keeps sb3-contrib's ``predict_values``."""
        policy = self.policy
        if not self._keeps("predict_values"):
            return policy.predict_values(obs, lstm_states, episode_starts)  # type: ignore[arg-type]
        features = BaseModel.extract_features(policy, obs, policy.vf_features_extractor)
        if policy.lstm_critic is not None:
            latent_vf = self._lstm_output(features, lstm_states, episode_starts, policy.lstm_critic)
        elif policy.shared_lstm:  # the actor's LSTM, its output detached (the critic does not move it)
            latent_vf = self._lstm_output(features, lstm_states, episode_starts, policy.lstm_actor).detach()
        else:
            latent_vf = policy.critic(features)  # type: ignore[misc]  # set where there is no critic LSTM
        return policy.value_net(policy.mlp_extractor.forward_critic(latent_vf))

    # ------------------------------------------------------------------ rollouts
    def collect_rollouts(
        self,
        env: VecEnv,
        callback: BaseCallback,
        rollout_buffer: RolloutBuffer,
        n_rollout_steps: int,
    ) -> bool:
        """``RecurrentPPO``'s rollout collection, reused as it is (``RecurrentPPO.collect_rollouts``: it only reads
        what this class shares with ``RecurrentPPO``): the LSTM states are carried from step to step and stored."""
        with self._rollout():
            return RecurrentPPO.collect_rollouts(self, env, callback, rollout_buffer, n_rollout_steps)  # type: ignore[arg-type]

    def predict(
        self,
        observation: np.ndarray | dict[str, np.ndarray],
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        """
        The policy's action and next LSTM state, as ``RecurrentPPO.predict``: pass back the returned ``state`` at
        the next call, and ``episode_start`` (one bool per environment) to reset it where an episode starts.

        :param observation: the observation(s)
        :param state: the LSTM's (hidden, cell) states from the previous call, ``None`` at the start
        :param episode_start: whether each observation starts an episode
        :param deterministic: whether to take the most likely action instead of sampling
        :return: the action(s) and the LSTM state to pass next time
        """
        if state is not None:
            expected = self.policy.lstm_hidden_state_shape
            if len(state) != 2 or any(np.ndim(part) != 3 or np.shape(part)[::2] != expected[::2] for part in state):
                raise ValueError(
                    f"Invalid state: expected the (hidden, cell) pair that predict() returned, each of shape "
                    f"({expected[0]}, n_envs, {expected[2]}), not {[np.shape(part) for part in state]}"
                )
        return self.policy.predict(observation, state, episode_start, deterministic)


__all__ = ["RecurrentTRPOPlus"]
