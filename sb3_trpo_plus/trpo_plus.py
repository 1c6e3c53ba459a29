"""TRPOPlus: Trust Region Policy Optimization on Stable-Baselines3, with batched Fisher-vector products.

This module only wires pure functions to SB3's ``OnPolicyAlgorithm``: the natural-gradient step
(:mod:`sb3_trpo_plus.policy_step`, on :mod:`sb3_trpo_plus.natural_gradient` and :mod:`sb3_trpo_plus.fisher`), the
critic's fit (:mod:`sb3_trpo_plus.critic`), the radius's units (:mod:`sb3_trpo_plus.units`): ``train()`` reads as
policy step -> critic step -> log. The closed forms for SB3's MLP heads live in :mod:`sb3_trpo_plus.fast_paths`,
behind the ``fast_paths`` argument and one decision (:func:`sb3_trpo_plus.fast_paths.decide`, a ``Plan`` read by every path).
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
import pathlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, TypeVar

import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import DictRolloutBuffer, RolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.distributions import Distribution, kl_divergence
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.policies import ActorCriticPolicy, BasePolicy
from stable_baselines3.common.running_mean_std import RunningMeanStd
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, PyTorchObs, Schedule
from stable_baselines3.common.utils import explained_variance
from stable_baselines3.common.vec_env import VecEnv
from torch import nn

from sb3_trpo_plus import critic, fast_paths
from sb3_trpo_plus.arguments import (
    ARGUMENT_RANGES,
    SCHEDULE_ARGUMENTS,
    SUPPORTED_ACTION_SPACES,
    check_arguments,
    check_rollout_size,
)
from sb3_trpo_plus.batches import index_obs
from sb3_trpo_plus.fisher import DistributionFisher, fisher_for, joint_kl
from sb3_trpo_plus.natural_gradient import MatVec, gauss_newton_fvp, hessian_fvp
from sb3_trpo_plus.normalization import Setting, select_observation_normalization, update_observation_statistics
from sb3_trpo_plus.policies import (
    CnnPolicy,
    MlpPolicy,
    MultiInputPolicy,
    select_initial_action_std,
    warn_if_images_flattened,
)
from sb3_trpo_plus.policy_step import PolicyStepStats, StepSettings, natural_gradient_step
from sb3_trpo_plus.threads import ThreadSetting, thread_cap, threads
from sb3_trpo_plus.units import (
    KlUnit,
    auto_target_kl,
    fisher_damping,
    keep_trust_region,
    saved_kl_unit,
    trust_region_radius,
)
from sb3_trpo_plus.validation import NonFiniteObservationError, non_finite_rollout, reporting_non_finite_observations

SelfTRPOPlus = TypeVar("SelfTRPOPlus", bound="TRPOPlus")

#: a fast-path plan of one update (``None``: the generic paths), or ``"decide"`` it where it is needed
PlanChoice = fast_paths.Plan | None | Literal["decide"]


@dataclass(frozen=True)
class FamilyParts:
    """
    What a family of TRPOPlus algorithms builds on (:meth:`TRPOPlus._family_parts`, the one hook a family overrides
    for its set-up): the policies it accepts, the rollout buffers it fills, the action spaces it supports.
    """

    #: every policy of the family is a subclass of this class
    policy_base: type[BasePolicy]
    #: the family's policy aliases, named in the error for another policy
    policy_hint: str
    #: the rollout buffer class for Box (and other non-Dict) observations and for Dict observations; a buffer class
    #: the user chooses must subclass one of them
    buffers: tuple[type[RolloutBuffer], type[RolloutBuffer]]
    #: the action spaces the family supports
    action_spaces: tuple[type[spaces.Space], ...] = SUPPORTED_ACTION_SPACES
    #: whether the policy's constructor takes ``use_sde``
    policy_takes_sde: bool = True


class TRPOPlus(OnPolicyAlgorithm):
    """
    Trust Region Policy Optimization (TRPO) with batched Fisher-vector products.

    Paper: https://arxiv.org/abs/1502.05477. A drop-in replacement for ``sb3_contrib.TRPO``: same
    arguments with the same meaning, except ``target_kl``, which bounds the KL of the whole action
    distribution (summed over action dimensions) instead of its average over action dimensions, and
    ``cg_damping``, which damps the Fisher of that KL; for Box and MultiBinary actions multiply both of
    sb3-contrib's values by the number of action dimensions to get the same update. Box actions start from std 0.5
    (``policy_kwargs``), where sb3-contrib's start from 1.

    :param policy: The policy model to use (MlpPolicy, CnnPolicy, MultiInputPolicy)
    :param env: The environment to learn from (if registered in Gym, can be str)
    :param learning_rate: The learning rate of the critic's Adam optimizer, a float > 0 or a function
        of the remaining progress (from 1 to 0)
    :param n_steps: The number of steps to run for each environment per update
        (the rollout buffer holds ``n_steps * n_envs`` transitions; must be > 1 when advantages are normalized)
    :param batch_size: Minibatch size of the critic's regression (>= 1)
    :param gamma: Discount factor, in [0, 1]
    :param cg_max_steps: Maximum number of conjugate-gradient iterations (Fisher-vector products), >= 1
    :param cg_damping: Damping lambda >= 0 added to the Fisher: CG solves (F + lambda I) s = g. F is the Fisher of
        the joint KL, action dimensions times the one ``sb3_contrib.TRPO`` damps: its value times the number of
        action dimensions is the equivalent here (Box and MultiBinary actions). ``"auto"``: sb3-contrib's default
        0.1 in this unit (0.1 times the action dimensions for Box and MultiBinary actions, 0.1 otherwise)
    :param line_search_shrinking_factor: Step-size reduction alpha in (0, 1) of the backtracking
        line search (``theta_new = theta + alpha^j * step``)
    :param line_search_max_iter: Number of candidates the line search tries (>= 1)
    :param n_critic_updates: Number of epochs of critic regression per policy update (>= 0)
    :param gae_lambda: Factor for trade-off of bias vs variance for Generalized Advantage Estimator, in [0, 1]
    :param use_sde: Whether to use generalized State Dependent Exploration (gSDE)
        instead of action noise exploration (default: False)
    :param sde_sample_freq: Sample a new noise matrix every n steps when using gSDE
        Default: -1 (only sample at the beginning of the rollout)
    :param rollout_buffer_class: Rollout buffer class to use. If ``None``, it will be automatically selected.
    :param rollout_buffer_kwargs: Keyword arguments to pass to the rollout buffer on creation
    :param normalize_advantage: Whether to normalize or not the advantage
    :param target_kl: Trust-region radius delta > 0: the largest mean KL(pi_old || pi_new) an update may
        reach, where the KL is that of the whole action distribution (summed over action dimensions).
        ``sb3_contrib.TRPO`` averages over action dimensions: its value times the number of action
        dimensions is the equivalent here for Box and MultiBinary actions. ``"auto"`` (default) is
        sb3-contrib's default in these units: 0.01 times the number of action dimensions (Box, MultiBinary),
        0.01 for Discrete and MultiDiscrete actions.
        It can also be a function of the remaining progress (from 1 to 0), like ``learning_rate``, e.g.
        ``stable_baselines3.common.utils.LinearSchedule(0.03, 0.0, 1.0)`` to shrink the region as training
        ends; an update whose radius is <= 0 leaves the actor where it is (the critic still learns)
    :param sub_sampling_factor: Use every k-th sample (k >= 1) of the rollout for the whole policy step
        (gradient, Fisher and line search), as ``sb3_contrib.TRPO`` does;
        see p40-42 of John Schulman's thesis http://joschu.net/docs/thesis.pdf
    :param fisher_sub_sampling: Compute the Fisher-vector products on every k-th sample (k >= 1) only,
        while the gradient and the line search use the whole batch (as OpenAI baselines did).
        1 (default) gives the exact full-batch TRPO step.
    :param cg_residual_tol: Conjugate gradient stops once the squared residual norm is at most this (>= 0)
    :param line_search_accept_ratio: A line-search candidate must improve the surrogate by at least this
        fraction (in [0, 1)) of the linear model's expected improvement; 0 (default) accepts any improvement
    :param ent_coef: Entropy bonus c >= 0: the step maximizes the surrogate plus c times the mean entropy of the
        action distribution (as in SB3's PPO and A2C; the sample estimate -log pi(a|s) where the distribution
        has no closed-form entropy), within the same trust region. 0 (default) is plain TRPO
    :param normalize_observations: Normalize Box observations (and the Box entries of a Dict, images never) inside
        the policy, as ``VecNormalize`` does (running mean and variance, clipped at 10), with statistics saved in the
        policy and updated between updates from each rollout (:mod:`sb3_trpo_plus.normalization`). ``"auto"``
        (default): where the policy uses SB3's default features extractor and the env stack has no ``VecNormalize``;
        ``True``: required (``ValueError`` where it cannot apply); ``False``: never
    :param normalize_values: Fit the critic on a normalized return scale (PopArt: running mean and standard
        deviation of the returns; :mod:`sb3_trpo_plus.critic`), so that the learning rate suits any reward scale.
        ``"auto"`` (default): where the policy's values are its ``value_net`` layer's output (SB3's and
        sb3-contrib's actor-critic policies) and the env stack has no ``VecNormalize``; ``True``: required;
        ``False``: never. Both ``False``, with ``policy_kwargs={"log_std_init": 0.0}``, give TRPOPlus before
        normalization existed (the drop-in :class:`sb3_trpo_plus.TRPO` is sb3-contrib's TRPO)
    :param fast_paths: Use the closed forms of :mod:`sb3_trpo_plus.fast_paths` (rollout forward, Fisher-vector
        product, critic fit, fused Adam) where they provably compute what SB3's own code computes for the policy
        (SB3's MLP actor-critic, unmodified); any other policy takes the generic autograd paths regardless.
        ``False`` always takes the generic paths
    :param torch_threads: torch's intra-op thread count while learning (restored afterwards): ``"auto"``
        (default) uses 1 for MLP and LSTM policies (:data:`sb3_trpo_plus.threads.SMALL_LAYERS`) unless the count was
        chosen already (``torch.set_num_threads`` after importing ``sb3_trpo_plus``, or
        ``OMP_NUM_THREADS``/``MKL_NUM_THREADS``), and leaves policies with convolutions alone; an integer >= 1 uses
        that many; ``None`` never changes torch's setting
    :param stats_window_size: Window size for the rollout logging, specifying the number of episodes to average
        the reported success rate, mean episode length, and mean reward over
    :param tensorboard_log: the log location for tensorboard (if None, no logging)
    :param policy_kwargs: additional arguments to be passed to the policy on creation. For Box actions without gSDE,
        a new policy's actions start with std 0.5 (``log_std_init=log(0.5)``, :attr:`INITIAL_ACTION_STD`; SB3's
        default is std 1) unless ``policy_kwargs`` sets ``log_std_init`` or the policy class takes none
    :param verbose: the verbosity level: 0 no output, 1 info, 2 debug
    :param seed: Seed for the pseudo random generators
    :param device: Device (cpu, cuda, ...) on which the code should be run.
        Setting it to auto, the code will be run on the GPU if possible.
    :param _init_setup_model: Whether or not to build the network at the creation of the instance
    """

    #: the unit of ``target_kl`` and ``cg_damping`` (:mod:`sb3_trpo_plus.units`): the joint KL's; saved with the model
    #: as ``kl_unit``, so that a file loads with its meaning in either class
    KL_UNIT: ClassVar[KlUnit] = "joint"
    #: the std of a new policy's Gaussian actions (Box actions without gSDE), given to the policy as
    #: ``log_std_init`` unless ``policy_kwargs`` sets one (:func:`sb3_trpo_plus.policies.select_initial_action_std`);
    #: ``None`` keeps the policy's own (SB3's std 1). Chosen by round 4 of ``benchmarks/defaults`` (RULE.md).
    INITIAL_ACTION_STD: ClassVar[float | None] = 0.5

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "MlpPolicy": MlpPolicy,
        "CnnPolicy": CnnPolicy,
        "MultiInputPolicy": MultiInputPolicy,
    }

    def __init__(
        self,
        policy: str | type[ActorCriticPolicy],
        env: GymEnv | str,
        learning_rate: float | Schedule = 1e-3,
        n_steps: int = 2048,
        batch_size: int = 128,
        gamma: float = 0.99,
        cg_max_steps: int = 15,
        cg_damping: float | Literal["auto"] = 0.1,
        line_search_shrinking_factor: float = 0.8,
        line_search_max_iter: int = 10,
        n_critic_updates: int = 10,
        gae_lambda: float = 0.95,
        use_sde: bool = False,
        sde_sample_freq: int = -1,
        rollout_buffer_class: type[RolloutBuffer] | None = None,
        rollout_buffer_kwargs: dict[str, Any] | None = None,
        normalize_advantage: bool = True,
        target_kl: float | Schedule | Literal["auto"] = "auto",
        sub_sampling_factor: int = 1,
        fisher_sub_sampling: int = 1,
        cg_residual_tol: float = 1e-10,
        line_search_accept_ratio: float = 0.0,
        ent_coef: float = 0.0,
        normalize_observations: Setting = "auto",
        normalize_values: Setting = "auto",
        fast_paths: bool = True,
        torch_threads: ThreadSetting = "auto",
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        _init_setup_model: bool = True,
    ):
        check_arguments(locals())  # each argument with limits, before anything is built

        super().__init__(
            policy,
            env,
            learning_rate=learning_rate,
            n_steps=n_steps,
            gamma=gamma,
            gae_lambda=gae_lambda,
            ent_coef=ent_coef,  # in the policy step's objective (0: plain TRPO)
            vf_coef=0.0,  # the critic is fitted separately
            max_grad_norm=0.0,
            use_sde=use_sde,
            sde_sample_freq=sde_sample_freq,
            rollout_buffer_class=rollout_buffer_class,
            rollout_buffer_kwargs=rollout_buffer_kwargs,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            policy_kwargs=policy_kwargs,
            verbose=verbose,
            device=device,
            seed=seed,
            _init_setup_model=False,
            supported_action_spaces=None,  # checked below, with a ValueError
        )

        if self.env is not None:
            self._check_action_space()
            check_rollout_size(self.n_steps, self.env.num_envs, batch_size, normalize_advantage)

        self.batch_size = batch_size
        self.normalize_advantage = normalize_advantage
        self.cg_max_steps = cg_max_steps
        self.cg_damping = cg_damping
        self.kl_unit: KlUnit = self.KL_UNIT
        self.cg_residual_tol = cg_residual_tol
        self.line_search_shrinking_factor = line_search_shrinking_factor
        self.line_search_max_iter = line_search_max_iter
        self.line_search_accept_ratio = line_search_accept_ratio
        self.target_kl = target_kl
        self.n_critic_updates = n_critic_updates
        self.sub_sampling_factor = sub_sampling_factor
        self.fisher_sub_sampling = fisher_sub_sampling
        self.n_skipped_updates = 0
        self.fast_paths = fast_paths
        self.torch_threads = torch_threads
        self._said: set[str] = set()  # what verbose=1 has printed once already
        self.normalize_observations = normalize_observations
        self.normalize_values = normalize_values
        #: running mean and variance of the returns (PopArt), when the critic is fitted on a normalized scale;
        #: decided once (``_values_normalized``) when the policy is built, and saved with the model
        self.value_normalizer: RunningMeanStd | None = None
        self._values_normalized: bool | None = None
        #: the rollout buffer holds observations of a completed update that the statistics have not taken in yet
        self._statistics_pending = False
        if self.env is not None:  # a new model (load() brings the saved policy_kwargs instead)
            self.policy_kwargs, note = select_observation_normalization(
                normalize_observations, self.env, self.observation_space, self.policy_class, self.policy_kwargs
            )
            self._say(note)
            self.policy_kwargs, note = select_initial_action_std(
                self.INITIAL_ACTION_STD, self.action_space, self.use_sde, self.policy_class, self.policy_kwargs
            )
            self._say(note)

        if _init_setup_model:
            self._setup_model()
            self._warn_if_images_flattened()

    # ------------------------------------------------------------------ set-up
    def _warn_if_images_flattened(self) -> None:
        """A ``UserWarning`` for image observations that the policy flattens into an MLP
        (:func:`sb3_trpo_plus.policies.warn_if_images_flattened`)."""
        cnn = next((alias for alias in self.policy_aliases if alias.startswith("Cnn")), "CnnPolicy")
        warn_if_images_flattened(self.policy, self.observation_space, cnn)

    def _family_parts(self) -> FamilyParts:
        """The family's parts (the hook the masked and recurrent families override): SB3's policies and buffers."""
        aliases = "'MlpPolicy', 'CnnPolicy', 'MultiInputPolicy'"
        return FamilyParts(ActorCriticPolicy, aliases, (RolloutBuffer, DictRolloutBuffer))

    def _rollout_buffer_arguments(self) -> dict[str, Any]:
        """Keyword arguments of the family's rollout buffer beyond SB3's (the recurrent family's LSTM state shape)."""
        return {}

    def _check_action_space(self) -> None:
        """``ValueError`` naming the action space unless the family supports it."""
        allowed_spaces = self._family_parts().action_spaces
        if not isinstance(self.action_space, allowed_spaces):
            allowed = ", ".join(space.__name__ for space in allowed_spaces)
            raise ValueError(
                f"Invalid action space {self.action_space}: {type(self).__name__} supports {allowed} action spaces, "
                f"not {type(self.action_space).__name__}"
            )

    def _setup_model(self) -> None:
        """
        SB3's set-up (learning-rate schedule, seeds, policy, rollout buffer) with the family's parts, checked first;
        then the critic's return scale (decided once, kept from a saved model) and, with ``fast_paths``, the policy's
        default Adam as torch's fused implementation.
        """
        parts = self._family_parts()
        self._check_action_space()
        name = type(self).__name__
        if not (isinstance(self.policy_class, type) and issubclass(self.policy_class, parts.policy_base)):
            raise ValueError(
                f"Invalid policy {self.policy_class!r}: {name} needs a policy of the {parts.policy_base.__name__} family "
                f"({parts.policy_hint})"
            )
        box_buffer, dict_buffer = parts.buffers
        if self.rollout_buffer_class is None:
            self.rollout_buffer_class = dict_buffer if isinstance(self.observation_space, spaces.Dict) else box_buffer
        elif not issubclass(self.rollout_buffer_class, parts.buffers):
            raise ValueError(
                f"Invalid rollout_buffer_class={self.rollout_buffer_class.__name__}: {name} needs "
                f"{box_buffer.__name__} or {dict_buffer.__name__} (or a subclass)"
            )
        self._setup_lr_schedule()
        self.set_random_seed(self.seed)
        sde = {"use_sde": self.use_sde} if parts.policy_takes_sde else {}
        self.policy = self.policy_class(  # type: ignore[assignment]
            self.observation_space, self.action_space, self.lr_schedule, **sde, **self.policy_kwargs
        )
        self.policy = self.policy.to(self.device)
        self.rollout_buffer = self.rollout_buffer_class(
            self.n_steps,
            self.observation_space,  # type: ignore[arg-type]
            self.action_space,
            device=self.device,
            gamma=self.gamma,
            gae_lambda=self.gae_lambda,
            n_envs=self.n_envs,
            **self._rollout_buffer_arguments(),
            **self.rollout_buffer_kwargs,
        )
        self._maybe_recommend_cpu()
        if self._values_normalized is None:
            self._values_normalized, note = critic.select_value_normalization(self.normalize_values, self.env, self.policy)
            self._say(note)
            if self._values_normalized:  # a new model (a loaded one brings its values): the same updates in any units
                critic.start_at_zero(self.policy)
        if self._values_normalized and self.value_normalizer is None:
            self.value_normalizer = RunningMeanStd(shape=())
        if self.fast_paths:
            fast_paths.use_fused_adam(self.policy, self.policy_kwargs.get("optimizer_kwargs") or {})

    def _say(self, message: str | None) -> None:
        """Print ``message``, information on a choice made (never a fault: those warn or raise), once, as
        ``TRPOPlus info: ...`` (at ``verbose >= 1``; ``None``: nothing)."""
        if message is not None and self.verbose >= 1 and message not in self._said:
            self._said.add(message)
            print(f"TRPOPlus info: {message}")

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "_said", "_statistics_pending"]

    # ------------------------------------------------------------------ helpers
    def _current_target_kl(self) -> float:
        """The trust-region radius of this update, in the joint unit (:func:`sb3_trpo_plus.units.trust_region_radius`:
        ``target_kl``, or its schedule at the current remaining progress)."""
        return trust_region_radius(self.target_kl, self._current_progress_remaining, self.action_space, self.KL_UNIT)

    def _auto_target_kl(self) -> float:
        """``target_kl="auto"`` for this action space (:func:`sb3_trpo_plus.units.auto_target_kl`)."""
        return auto_target_kl(self.action_space)

    def _fisher_damping(self) -> float:
        """The damping of the joint KL's Fisher (:func:`sb3_trpo_plus.units.fisher_damping`)."""
        return fisher_damping(self.cg_damping, self.action_space, self.KL_UNIT)

    def _distribution(self, obs: PyTorchObs) -> Distribution:
        """The policy's action distribution for ``obs``, as an object of its own.

        SB3 policies return the same (mutated) ``action_dist`` object from every call, so each result is copied.
        """
        return copy.copy(self.policy.get_distribution(obs))

    # Hooks of the policy families (masked, recurrent: see sb3_trpo_plus.maskable and sb3_trpo_plus.recurrent).
    # The step itself (_policy_step) only sees the policy's input through _distribution and _subsample.
    def _policy_batch(self, rollout: Any) -> tuple[Any, th.Tensor, th.Tensor, th.Tensor]:
        """
        The policy step's batch, from the whole rollout: the policy's input (what :meth:`_distribution` takes),
        the actions, their old log-probabilities and the advantages, of every ``sub_sampling_factor``-th sample.
        """
        actions = rollout.actions
        if isinstance(self.action_space, spaces.Discrete):
            actions = actions.long().flatten()
        every = slice(None, None, self.sub_sampling_factor)
        return index_obs(rollout.observations, every), actions[every], rollout.old_log_prob[every], rollout.advantages[every]

    def _subsample(self, policy_input: Any, every: slice) -> Any:
        """The policy's input for every k-th sample of a batch (``every = slice(None, None, k)``)."""
        return index_obs(policy_input, every)

    def _action_fisher(self) -> DistributionFisher | None:
        """The analytic Fisher of the policy's action distribution, or ``None`` (exact KL Hessian instead)."""
        return fisher_for(self.policy.action_dist)

    def _value_step(
        self, rollout: Any, actor_params: list[nn.Parameter], scale: critic.ValueScale, plan: PlanChoice = "decide"
    ) -> float:
        """The critic's regression on the whole rollout's returns, as targets of ``scale`` (see :meth:`_critic_step`)."""
        return self._critic_step(rollout.observations, scale.targets(rollout.returns), actor_params, plan)

    def _fit_critic(self, rollout: Any, actor_params: list[nn.Parameter], plan: PlanChoice = "decide") -> float:
        """
        The critic's regression (:meth:`_value_step`), on the normalized return scale when values are normalized
        (:func:`sb3_trpo_plus.critic.fitting_scale`: the return statistics take in this rollout's returns first).

        :return: the mean minibatch loss on the returns' own scale (as ``train/value_loss`` always reports it)
        """
        with critic.fitting_scale(self.value_normalizer, self.policy, self.rollout_buffer.returns) as scale:
            loss = self._value_step(rollout, actor_params, scale, plan)
        return loss * scale.std**2

    def _kl_divergence_loss(self, new: Distribution, old: Distribution) -> float:
        """``train/kl_divergence_loss`` as ``sb3_contrib.TRPO`` logs it: SB3's ``kl_divergence(new, old)``, averaged
        over states and, for Box and MultiBinary actions, over action dimensions."""
        return kl_divergence(new, old).mean().item()

    # ------------------------------------------------------------------ fast paths, threads, collection
    def _fast_paths_plan(self) -> fast_paths.Plan | None:
        """
        The fast paths' plan for the policy (:func:`sb3_trpo_plus.fast_paths.decide`), or ``None`` where they do not
        serve it (``fast_paths=False``, or a policy they cannot prove). Decided once per rollout and once per update,
        so a policy changed or wrapped between them is seen; at ``verbose >= 1`` each reason is printed once.
        """
        if not self.fast_paths:
            return None
        plan, support = fast_paths.decide(self.policy)
        if not support.ok:
            self._say(
                "the update runs on the generic (autograd) paths, which serve any policy (the MLP fast paths give the "
                f"same results, faster, for SB3's plain MLP actor-critic; here: {support.reason})"
            )
        return plan

    def _served(self, result: Any) -> Any:
        """A fast path's result, or ``None`` where it declined (:class:`~sb3_trpo_plus.fast_paths.Declined`; its
        reason is printed once at ``verbose >= 1``)."""
        if isinstance(result, fast_paths.Declined):
            self._say(
                f"the {result.path} runs on the generic (autograd) path, which serves any policy (its fast path gives "
                f"the same result, faster, in other cases; here: {result.reason})"
            )
            return None
        return result

    @contextlib.contextmanager
    def _rollout(self) -> Iterator[None]:
        """
        Around every family's rollout collection: first the observation statistics take in the rollout of the last
        completed update (still in the buffer), so they change only between updates and the policy that collects a
        rollout is the one its update starts from (stored log-probabilities stay exact; an update skipped for
        non-finite data leaves them untouched); then a non-finite observation that makes the policy fail is reported
        as such (:class:`NonFiniteObservationError`, a ``ValueError``), with the parameters untouched.
        """
        if self._statistics_pending:
            update_observation_statistics(self.policy, self.rollout_buffer.observations)
            self._statistics_pending = False
        with reporting_non_finite_observations(self):
            yield

    def collect_rollouts(
        self,
        env: VecEnv,
        callback: BaseCallback,
        rollout_buffer: RolloutBuffer,
        n_rollout_steps: int,
    ) -> bool:
        """
        SB3's rollout collection. Where the fast paths apply, the policy's forward pass is computed in closed form
        (:func:`sb3_trpo_plus.fast_paths.collect_rollouts`); otherwise this is SB3's own loop, calling the policy
        as it is.
        """
        with self._rollout():
            plan = self._fast_paths_plan()
            forward = self._served(fast_paths.rollout_forward(plan, env.num_envs)) if plan is not None else None
            if forward is not None:
                return fast_paths.collect_rollouts(self, env, callback, rollout_buffer, n_rollout_steps, forward)
            return super().collect_rollouts(env, callback, rollout_buffer, n_rollout_steps)

    # --------------------------------------------------------------- Fisher-vector products
    def _autograd_fisher_vector_product(
        self, obs: PyTorchObs, distribution: Distribution, actor_params: list[nn.Parameter]
    ) -> MatVec:
        """
        The damped Fisher-vector product through autograd, for any policy: Gauss-Newton form with the analytic
        Fisher of the distribution, or the exact double-backward Hessian of the KL when none is known.

        :param distribution: the distribution at ``obs``, attached to the graph of ``actor_params``
        """
        fisher = self._action_fisher()
        if fisher is not None:
            eta = fisher.parameters(distribution)
            eta_old = tuple(e.detach() for e in eta)
            return gauss_newton_fvp(eta, actor_params, lambda u: fisher.metric(eta_old, u), self._fisher_damping())
        with th.no_grad():
            old = self._distribution(obs)
        return hessian_fvp(joint_kl(old, distribution).mean(), actor_params, self._fisher_damping())

    # --------------------------------------------------------------- the update
    def _policy_step(
        self,
        obs: PyTorchObs,
        actions: th.Tensor,
        old_log_prob: th.Tensor,
        advantages: th.Tensor,
        plan: PlanChoice = "decide",
    ) -> tuple[list[nn.Parameter], PolicyStepStats]:
        """
        One natural-gradient step of the actor on a batch, inside the trust region
        (:func:`sb3_trpo_plus.policy_step.natural_gradient_step`, with this update's radius and Fisher-vector product).

        :param plan: the fast paths' plan of this update (``"decide"``: decided here)
        :return: the actor's parameters (those the action distribution depends on) and the step's statistics
        """
        if plan == "decide":
            plan = self._fast_paths_plan()
        settings = StepSettings.of(self, self._current_target_kl())
        return natural_gradient_step(
            lambda: self._distribution(obs),
            [param for param in self.policy.parameters() if param.requires_grad],
            actions,
            old_log_prob,
            advantages,
            lambda distribution, actor_params: self._fisher_product(obs, distribution, actor_params, plan),
            self._kl_divergence_loss,
            settings,
        )

    def _fisher_product(
        self, obs: PyTorchObs, distribution: Distribution, actor_params: list[nn.Parameter], plan: fast_paths.Plan | None
    ) -> tuple[list[nn.Parameter], MatVec]:
        """
        The actor's damped Fisher-vector product on every ``fisher_sub_sampling``-th sample of the batch: SB3's MLP
        heads in closed form (the fast paths' ``plan``), other analytic Fishers in Gauss-Newton form through autograd,
        the exact KL Hessian for distributions without a known Fisher.

        :param distribution: the policy's distribution at ``obs``, attached to the graph of ``actor_params``
        :return: the actor's parameters, in the order of the product's vectors, and the product
        """
        every = slice(None, None, self.fisher_sub_sampling)
        fisher_obs = obs if self.fisher_sub_sampling == 1 else self._subsample(obs, every)
        if plan is not None:
            with th.no_grad():
                fisher_distribution = distribution if fisher_obs is obs else self._distribution(fisher_obs)
            closed_form = self._served(
                fast_paths.fisher_vector_product(plan, fisher_obs, actor_params, self._fisher_damping(), fisher_distribution)
            )
            if closed_form is not None:
                return closed_form  # type: ignore[no-any-return]
        fisher_distribution = distribution if fisher_obs is obs else self._distribution(fisher_obs)
        return actor_params, self._autograd_fisher_vector_product(fisher_obs, fisher_distribution, actor_params)

    def _critic_step(
        self, obs: PyTorchObs, returns: th.Tensor, actor_params: list[nn.Parameter], plan: PlanChoice = "decide"
    ) -> float:
        """
        Regression of V(s) on the returns: ``n_critic_updates`` epochs of minibatches of ``batch_size``,
        with the policy's optimizer; the actor's parameters get no gradient and do not move.

        :param returns: the regression targets
        :param plan: the fast paths' plan of this update (``"decide"``: decided here)
        :return: the mean minibatch loss (NaN when ``n_critic_updates == 0``)
        """
        critic_params = critic.critic_parameters(self.policy, actor_params)
        if not critic_params or self.n_critic_updates == 0:
            return float("nan")
        if plan == "decide":
            plan = self._fast_paths_plan()

        def minibatches() -> Iterator[th.Tensor]:
            return critic.minibatches(returns.shape[0], self.n_critic_updates, self.batch_size, returns.device)

        losses = None
        if plan is not None:
            losses = self._served(fast_paths.fit_critic(plan, obs, returns, critic_params, minibatches()))
        if losses is None:
            losses = critic.fit_values(self.policy, obs, returns, critic_params, minibatches())
        return th.stack(losses).mean().item()

    def train(self) -> None:
        """
        Update the policy with the rollout buffer: a natural-gradient step of the actor within the trust
        region, then the critic's regression on the returns.

        Logged under ``train/``: the fields of :class:`PolicyStepStats` (``trust_region_kl`` is the joint KL that
        ``target_kl`` bounds, also as ``kl``; ``kl_divergence_loss`` is sb3-contrib's quantity), ``value_loss`` (on
        the returns' own scale), ``explained_variance``, ``std`` (Gaussian actions), ``n_updates``, and
        ``skipped_updates`` when an update is skipped.
        """
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)

        non_finite = non_finite_rollout(self.rollout_buffer)
        if non_finite:
            self.n_skipped_updates += 1
            warnings.warn(
                f"TRPOPlus skipped an update: the rollout holds non-finite (NaN or infinite) {', '.join(non_finite)} "
                "values. The parameters were left unchanged; check the environment (SB3's VecCheckNan finds the step).",
                RuntimeWarning,
                stacklevel=2,
            )
            self.logger.record("train/skipped_updates", self.n_skipped_updates)
            return

        rollout = next(self.rollout_buffer.get(batch_size=None))
        plan = self._fast_paths_plan()  # once per update, read by the policy step and the critic's fit
        actor_params, stats = self._policy_step(*self._policy_batch(rollout), plan=plan)
        value_loss = self._fit_critic(rollout, actor_params, plan)
        self._statistics_pending = True  # this rollout's observations, merged when the next rollout starts
        self._n_updates += 1

        explained_var = explained_variance(self.rollout_buffer.values.flatten(), self.rollout_buffer.returns.flatten())
        stats.record(self.logger)
        self.logger.record("train/value_loss", value_loss)
        self.logger.record("train/explained_variance", explained_var)
        if hasattr(self.policy, "log_std"):
            self.logger.record("train/std", th.exp(self.policy.log_std).mean().item())
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")

    @classmethod
    def load(  # type: ignore[override]
        cls: type[SelfTRPOPlus],
        path: str | pathlib.Path | io.BufferedIOBase,
        env: GymEnv | None = None,
        device: th.device | str = "auto",
        custom_objects: dict[str, Any] | None = None,
        print_system_info: bool = False,
        force_reset: bool = True,
        **kwargs: Any,
    ) -> SelfTRPOPlus:
        """
        SB3's ``load``, keeping the meaning of ``target_kl`` and ``cg_damping``: a file saved in the other unit (by
        ``sb3_contrib.TRPO`` or :class:`~sb3_trpo_plus.contrib_trpo.TRPO` into TRPOPlus, or the other way round) has
        both converted, with a ``UserWarning`` that says so.
        """
        unit = saved_kl_unit(path)
        model = super().load(path, env, device, custom_objects, print_system_info, force_reset, **kwargs)
        where = os.fspath(path) if not isinstance(path, io.BufferedIOBase) else "The file"
        keep_trust_region(model, unit or cls.KL_UNIT, cls.KL_UNIT, f"{where} was saved in another unit; {cls.__name__}")
        return model

    def learn(
        self: SelfTRPOPlus,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 1,
        tb_log_name: str | None = None,
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfTRPOPlus:
        """
        SB3's ``learn``, with torch's thread count set as ``torch_threads`` says while it runs (and restored after).

        :param tb_log_name: the tensorboard run's name (default: the algorithm class's name, e.g. ``"TRPOPlus"``)
        """
        with threads(thread_cap(self.torch_threads, self.policy)):
            return super().learn(
                total_timesteps=total_timesteps,
                callback=callback,
                log_interval=log_interval,
                tb_log_name=tb_log_name or type(self).__name__,
                reset_num_timesteps=reset_num_timesteps,
                progress_bar=progress_bar,
            )


__all__ = [
    "ARGUMENT_RANGES",
    "SCHEDULE_ARGUMENTS",
    "FamilyParts",
    "NonFiniteObservationError",
    "PolicyStepStats",
    "TRPOPlus",
    "check_arguments",
]
