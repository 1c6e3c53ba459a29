"""Glue shared by the policy families (:mod:`sb3_trpo_plus.maskable`, :mod:`sb3_trpo_plus.recurrent`)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm

from sb3_trpo_plus.trpo_plus import NON_FINITE_OBSERVATION, NonFiniteObservationError, _all_finite


@contextlib.contextmanager
def reporting_non_finite_observations(model: OnPolicyAlgorithm) -> Iterator[None]:
    """
    Around a rollout collection: a ``ValueError`` raised while the last observation holds NaN or infinite values
    (the policy could not act on it) is reported as :class:`~sb3_trpo_plus.trpo_plus.NonFiniteObservationError`,
    as ``TRPOPlus.collect_rollouts`` does.
    """
    try:
        yield
    except ValueError as error:
        if not isinstance(error, NonFiniteObservationError) and not _all_finite(model._last_obs):  # type: ignore[arg-type]
            raise NonFiniteObservationError(NON_FINITE_OBSERVATION) from error
        raise
