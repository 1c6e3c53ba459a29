"""``TRPO``: ``sb3_contrib.TRPO`` exactly, on TRPOPlus's faster step.

``from sb3_trpo_plus import TRPO`` in place of ``from sb3_contrib import TRPO`` gives the same update with no other
edit: the same arguments with the same defaults and meanings (``target_kl`` and ``cg_damping`` per action dimension,
as sb3-contrib averages the KL over the dimensions of Box and MultiBinary actions; no normalization inside the
policy; Box actions from SB3's std 1), and sb3-contrib's model files load with their meaning.
:class:`~sb3_trpo_plus.TRPOPlus` keeps the joint KL's unit, normalizes and starts Box actions from std 0.5 by
default; each class loads the other's files, converting both values.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch as th
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.type_aliases import GymEnv, Schedule

from sb3_trpo_plus.normalization import Setting
from sb3_trpo_plus.threads import ThreadSetting
from sb3_trpo_plus.trpo_plus import TRPOPlus
from sb3_trpo_plus.units import KlUnit


class TRPO(TRPOPlus):
    """
    ``sb3_contrib.TRPO`` with TRPOPlus's step: every argument as sb3-contrib defines it, with its default.

    ``target_kl`` (default 0.01) and ``cg_damping`` (default 0.1) are per action dimension for Box and MultiBinary
    actions, as in sb3-contrib: the trust region bounds the KL averaged over action dimensions. The observations and
    the critic's targets are not normalized by default (``normalize_observations=False, normalize_values=False``), so
    the update is sb3-contrib's (``tests/test_parity.py``). TRPOPlus's own arguments are accepted too, with the
    meanings :class:`~sb3_trpo_plus.TRPOPlus` documents. ``train/target_kl`` logs the radius of the joint KL.
    """

    KL_UNIT: ClassVar[KlUnit] = "per_dimension"
    #: sb3-contrib's policies start with SB3's std 1
    INITIAL_ACTION_STD: ClassVar[float | None] = None

    def __init__(
        self,
        policy: str | type[ActorCriticPolicy],
        env: GymEnv | str,
        learning_rate: float | Schedule = 1e-3,
        n_steps: int = 2048,
        batch_size: int = 128,
        gamma: float = 0.99,
        cg_max_steps: int = 15,
        cg_damping: float = 0.1,
        line_search_shrinking_factor: float = 0.8,
        line_search_max_iter: int = 10,
        n_critic_updates: int = 10,
        gae_lambda: float = 0.95,
        use_sde: bool = False,
        sde_sample_freq: int = -1,
        rollout_buffer_class: type[RolloutBuffer] | None = None,
        rollout_buffer_kwargs: dict[str, Any] | None = None,
        normalize_advantage: bool = True,
        target_kl: float | Schedule = 0.01,
        sub_sampling_factor: int = 1,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        _init_setup_model: bool = True,
        *,
        fisher_sub_sampling: int = 1,
        cg_residual_tol: float = 1e-10,
        line_search_accept_ratio: float = 0.0,
        ent_coef: float = 0.0,
        normalize_observations: Setting = False,
        normalize_values: Setting = False,
        fast_paths: bool = True,
        torch_threads: ThreadSetting = "auto",
    ):
        super().__init__(
            policy,
            env,
            learning_rate=learning_rate,
            n_steps=n_steps,
            batch_size=batch_size,
            gamma=gamma,
            cg_max_steps=cg_max_steps,
            cg_damping=cg_damping,
            line_search_shrinking_factor=line_search_shrinking_factor,
            line_search_max_iter=line_search_max_iter,
            n_critic_updates=n_critic_updates,
            gae_lambda=gae_lambda,
            use_sde=use_sde,
            sde_sample_freq=sde_sample_freq,
            rollout_buffer_class=rollout_buffer_class,
            rollout_buffer_kwargs=rollout_buffer_kwargs,
            normalize_advantage=normalize_advantage,
            target_kl=target_kl,
            sub_sampling_factor=sub_sampling_factor,
            fisher_sub_sampling=fisher_sub_sampling,
            cg_residual_tol=cg_residual_tol,
            line_search_accept_ratio=line_search_accept_ratio,
            ent_coef=ent_coef,
            normalize_observations=normalize_observations,
            normalize_values=normalize_values,
            fast_paths=fast_paths,
            torch_threads=torch_threads,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            policy_kwargs=policy_kwargs,
            verbose=verbose,
            seed=seed,
            device=device,
            _init_setup_model=_init_setup_model,
        )


__all__ = ["TRPO"]
