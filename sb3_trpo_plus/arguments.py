"""TRPOPlus's argument table: the allowed values of each argument with limits, checked before anything is built (the
constructor, and the RL Zoo before it builds any env)."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

from gymnasium import spaces

from sb3_trpo_plus.normalization import check_setting
from sb3_trpo_plus.validation import InvalidArgumentError, check_range

SUPPORTED_ACTION_SPACES = (spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)

#: The allowed values of TRPOPlus's numeric arguments, as :func:`~sb3_trpo_plus.validation.check_range`'s
#: keywords; :func:`check_arguments` applies them (the constructor, and the RL Zoo before it builds any env).
ARGUMENT_RANGES: dict[str, dict[str, Any]] = {
    "learning_rate": {"low": 0.0, "low_inclusive": False},
    "n_steps": {"low": 1, "integer": True},
    "batch_size": {"low": 1, "integer": True},
    "gamma": {"low": 0.0, "high": 1.0},
    "gae_lambda": {"low": 0.0, "high": 1.0},
    "cg_max_steps": {"low": 1, "integer": True},
    "cg_damping": {"low": 0.0},
    "line_search_shrinking_factor": {"low": 0.0, "high": 1.0, "low_inclusive": False, "high_inclusive": False},
    "line_search_max_iter": {"low": 1, "integer": True},
    "n_critic_updates": {"low": 0, "integer": True},
    "target_kl": {"low": 0.0, "low_inclusive": False},
    "sub_sampling_factor": {"low": 1, "integer": True},
    "fisher_sub_sampling": {"low": 1, "integer": True},
    "cg_residual_tol": {"low": 0.0},
    "line_search_accept_ratio": {"low": 0.0, "high": 1.0, "high_inclusive": False},
    "ent_coef": {"low": 0.0},
    "torch_threads": {"low": 1, "integer": True},
}
#: Arguments that may also be a schedule: a function of the remaining progress, whose values are not checked here
SCHEDULE_ARGUMENTS = ("learning_rate", "target_kl")


def check_arguments(arguments: Mapping[str, Any]) -> None:
    """
    Check the values of TRPOPlus's arguments that have limits (:data:`ARGUMENT_RANGES`, and ``fast_paths``).

    :param arguments: argument name -> value; names without a check, or missing, are skipped, so one
        hyperparameter can be checked alone
    :raises InvalidArgumentError: (a ``ValueError``) naming the first argument out of its limits, its value and
        what is allowed
    """
    for name, limits in ARGUMENT_RANGES.items():
        if name not in arguments:
            continue
        value = arguments[name]
        if name in SCHEDULE_ARGUMENTS and callable(value):
            continue
        if name in ("torch_threads", "target_kl", "cg_damping") and (value is None or value == "auto"):
            continue  # torch_threads: None or "auto"; target_kl, cg_damping: "auto" (checked for None below)
        if name in ("target_kl", "cg_damping") and isinstance(value, str):
            allowed = "'auto', a number > 0 or a schedule" if name == "target_kl" else "'auto' or a number >= 0"
            raise InvalidArgumentError(name, value, allowed)
        check_range(name, value, **limits)
    if "fast_paths" in arguments and not isinstance(arguments["fast_paths"], bool):
        raise InvalidArgumentError("fast_paths", arguments["fast_paths"], "True or False")
    for name in ("normalize_observations", "normalize_values"):
        if name in arguments:
            check_setting(name, arguments[name])


def check_rollout_size(n_steps: int, n_envs: int, batch_size: int, normalize_advantage: bool) -> None:
    """
    ``ValueError`` when the rollout (``n_steps * n_envs`` transitions) is a single one while advantages are normalized
    (their standard deviation is undefined); SB3's ``UserWarning`` when ``batch_size`` does not divide it.
    """
    buffer_size = n_envs * n_steps
    if normalize_advantage and buffer_size <= 1:
        raise ValueError(
            f"Invalid n_steps={n_steps} with n_envs={n_envs}: `n_steps * n_envs` must be "
            "greater than 1 when normalize_advantage=True (the advantages' standard deviation is undefined)"
        )
    if buffer_size % batch_size > 0:
        warnings.warn(
            f"You have specified a mini-batch size of {batch_size},"
            f" but because the `RolloutBuffer` is of size `n_steps * n_envs = {buffer_size}`,"
            f" after every {buffer_size // batch_size} untruncated mini-batches,"
            f" there will be a truncated mini-batch of size {buffer_size % batch_size}\n"
            f"We recommend using a `batch_size` that is a factor of `n_steps * n_envs`.\n"
            f"Info: (n_steps={n_steps} and n_envs={n_envs})",
            stacklevel=3,
        )
