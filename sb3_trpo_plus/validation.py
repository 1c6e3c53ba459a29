"""Checks that fail early with an error naming the argument, its value and what is allowed; and the checks for NaN and
infinite values in what the environment returns."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from numbers import Real
from typing import Any

import numpy as np


class InvalidArgumentError(ValueError):
    """
    An argument outside its allowed values: ``Invalid <name>=<value>: expected <expected>``.

    :param name: argument name, as the user typed it
    :param value: the value given
    :param expected: what is allowed, in words (e.g. ``0.0 < target_kl``)
    """

    def __init__(self, name: str, value: object, expected: str) -> None:
        super().__init__(f"Invalid {name}={value!r}: expected {expected}")
        self.name = name
        self.value = value
        self.expected = expected

    def __reduce__(self) -> tuple[type[InvalidArgumentError], tuple[str, object, str]]:
        return type(self), (self.name, self.value, self.expected)


def check_range(
    name: str,
    value: object,
    low: float | None = None,
    high: float | None = None,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
    integer: bool = False,
) -> None:
    """
    Raise :class:`InvalidArgumentError` unless ``value`` is a finite number (an integer if ``integer``) within the bounds.

    :param name: argument name, as the user typed it
    :param value: the value given
    :param low: lower bound, or ``None``
    :param high: upper bound, or ``None``
    :param low_inclusive: whether ``value == low`` is allowed
    :param high_inclusive: whether ``value == high`` is allowed
    :param integer: whether the value must be an integer
    """
    lower = "" if low is None else f"{low} {'<=' if low_inclusive else '<'} "
    upper = "" if high is None else f" {'<=' if high_inclusive else '<'} {high}"
    allowed = f"{lower}{name}{upper}" + (" (an integer)" if integer else "")
    is_number = isinstance(value, Real) and not isinstance(value, bool)
    if integer:
        is_number = is_number and float(value).is_integer()  # type: ignore[arg-type]
    if not is_number or not math.isfinite(float(value)):  # type: ignore[arg-type]
        raise InvalidArgumentError(name, value, f"a finite number with {allowed}")
    number = float(value)  # type: ignore[arg-type]
    too_low = low is not None and (number < low or (not low_inclusive and number == low))
    too_high = high is not None and (number > high or (not high_inclusive and number == high))
    if too_low or too_high:
        raise InvalidArgumentError(name, value, allowed)


class NonFiniteObservationError(ValueError):
    """The environment returned a NaN or infinite observation, which the policy cannot act on."""


NON_FINITE_OBSERVATION = (
    "The environment returned a non-finite (NaN or infinite) observation, so the policy cannot act; "
    "training stopped with the parameters of the last update (the model can still be saved). "
    "SB3's VecCheckNan wrapper finds the step that produced it."
)


def all_finite(array: np.ndarray | dict[str, np.ndarray]) -> bool:
    """Whether an array (or every array of a dict of them) holds only finite values."""
    values = array.values() if isinstance(array, dict) else [array]
    return all(np.isfinite(value).all() for value in values)


@contextlib.contextmanager
def reporting_non_finite_observations(model: Any) -> Iterator[None]:
    """
    Around a rollout collection: a ``ValueError`` raised while the last observation holds NaN or infinite values
    (the policy could not act on it) is reported as :class:`NonFiniteObservationError`. Used by every TRPOPlus
    algorithm's ``collect_rollouts``.
    """
    try:
        yield
    except ValueError as error:
        if not isinstance(error, NonFiniteObservationError) and not all_finite(model._last_obs):
            raise NonFiniteObservationError(NON_FINITE_OBSERVATION) from error
        raise


def non_finite_rollout(buffer: Any) -> list[str]:
    """Names of the rollout buffer's quantities that hold NaN or infinite values (empty when all are finite)."""
    arrays = {
        "reward": buffer.rewards,
        "observation": buffer.observations,
        "value estimate": buffer.values,
        "return": buffer.returns,
        "advantage": buffer.advantages,
    }
    return [name for name, array in arrays.items() if not all_finite(array)]
