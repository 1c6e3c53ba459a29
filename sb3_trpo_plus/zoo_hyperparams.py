"""The shipped RL Zoo hyperparameter files (``hyperparams/<zoo name>.yml``) and the checks of an entry.

:mod:`sb3_trpo_plus.zoo` reads the shipped file of ``--algo trpo_plus`` (or a family) and checks every entry before
the Zoo builds anything; :mod:`sb3_trpo_plus.study` takes a best trial's untuned keys from the same file.
``rl_zoo3`` is not imported.
"""

from __future__ import annotations

import difflib
import inspect
import math
from pathlib import Path
from typing import Any

from stable_baselines3.common.utils import LinearSchedule

from sb3_trpo_plus import families
from sb3_trpo_plus.arguments import SCHEDULE_ARGUMENTS, check_arguments
from sb3_trpo_plus.trpo_plus import TRPOPlus
from sb3_trpo_plus.validation import InvalidArgumentError

#: The Zoo name of :class:`~sb3_trpo_plus.TRPOPlus`, the default of the functions below
PLAIN_ZOO_NAME = families.FAMILIES["plain"].zoo_name

#: Keys of a Zoo hyperparameter entry that the Zoo consumes itself (they never reach the constructor).
ZOO_KEYS = frozenset(
    {"n_timesteps", "n_envs", "normalize", "env_wrapper", "vec_env_wrapper", "frame_stack", "callback"}
    | {"monitor_kwargs", "env_kwargs"}
)
#: Constructor arguments the Zoo passes itself: a hyperparameter file may not set them.
ZOO_SET_ARGUMENTS = frozenset({"env", "tensorboard_log", "seed", "verbose", "device", "_init_setup_model"})


def hyperparams_path(algo: str = PLAIN_ZOO_NAME) -> Path:
    """
    Path of the shipped ``<algo>.yml`` (``trpo_plus.yml`` by default): ``sb3_trpo_plus/hyperparams/`` in a wheel
    install, the top-level ``hyperparams/`` folder in a source checkout or an editable install.

    :param algo: a Zoo name of :data:`~sb3_trpo_plus.families.FAMILIES` (``ValueError`` naming them otherwise)
    :return: the file's path
    """
    filename = f"{families.by_zoo_name(algo).zoo_name}.yml"
    package_dir = Path(__file__).resolve().parent
    candidates = [directory / "hyperparams" / filename for directory in (package_dir, package_dir.parent)]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"sb3-trpo-plus ships {filename} but it is missing (looked at {', '.join(map(str, candidates))}); "
        "reinstall the package or pass a file with -conf"
    )


def _constructor_defaults() -> dict[str, Any]:
    """The constructor arguments a hyperparameter file may set, with their defaults (the same for the families)."""
    parameters = inspect.signature(TRPOPlus.__init__).parameters
    return {name: p.default for name, p in parameters.items() if name != "self" and name not in ZOO_SET_ARGUMENTS}


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _linear_schedule_start(value: str) -> float | None:
    """The initial value of the Zoo's ``lin_<initial value>`` schedule string, or ``None`` if ``value`` is not one
    with a finite initial value."""
    prefix, _, number = value.partition("_")
    try:
        start = float(number)
    except ValueError:
        return None
    return start if prefix == "lin" and math.isfinite(start) else None


def _expected_instead(key: str, value: Any, default: Any) -> str | None:
    """What a hyperparameter ``key`` should have been given instead of ``value``, or ``None`` if ``value`` is allowed."""
    if key == "target_kl" and value == "auto":
        return None
    if key in SCHEDULE_ARGUMENTS and isinstance(value, str):  # the Zoo converts learning_rate, make_schedules the rest
        value = _linear_schedule_start(value)  # checked below with the limits of a constant
        if value is None:
            return "a number or a 'lin_<initial value>' schedule" + (" or 'auto'" if key == "target_kl" else "")
    elif key in ("n_timesteps", "n_envs"):
        ok = _is_number(value) and float(value).is_integer() and value > 0
        return None if ok else "a positive whole number"
    elif isinstance(default, bool) and not isinstance(value, bool):
        return "true or false"
    elif _is_number(default) and not (_is_number(value) or callable(value)):
        return "a number"
    try:
        check_arguments({key: value})  # TRPOPlus's own limits
    except InvalidArgumentError as error:
        return error.expected
    return None


def check_hyperparams(
    hyperparams: dict[str, Any], where: str = "", sources: dict[str, str] | None = None, algo: str = PLAIN_ZOO_NAME
) -> None:
    """
    Check a Zoo hyperparameter entry for ``trpo_plus`` (or a family) before anything is built.

    Raises ``ValueError`` naming the key, the value and ``where`` it comes from: for an unknown key (with the
    closest known ones), for a value of the wrong type (a bool argument given a non-bool, a numeric argument a
    non-number; ``learning_rate`` and ``target_kl`` may also be a ``lin_<value>`` schedule string), and for a value
    outside the limits that :class:`TRPOPlus`'s constructor checks (:func:`~sb3_trpo_plus.trpo_plus.check_arguments`;
    a schedule's initial value included). What needs the env (its action space, ``n_steps * n_envs``) is checked
    when the model is built.

    :param hyperparams: the entry, after the Zoo merged ``--hyperparams`` and ``--trial-id`` into it
    :param where: where the entry comes from, for the message
    :param sources: where single keys come from instead of ``where`` (e.g. ``--hyperparams`` on the command line)
    :param algo: the Zoo name the entry is for, for the message
    """
    defaults = _constructor_defaults()
    known = set(defaults) | ZOO_KEYS
    for key, value in hyperparams.items():
        source = (sources or {}).get(key, where)
        suffix = f" ({source})" if source else ""
        if key not in known:
            if key in ZOO_SET_ARGUMENTS:
                raise ValueError(f"Invalid hyperparameter {key!r} for {algo}{suffix}: the RL Zoo sets it itself")
            close = difflib.get_close_matches(key, sorted(known), n=3)
            hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else "."
            raise ValueError(
                f"Unknown hyperparameter {key!r} for {algo}{suffix}{hint} "
                f"Known: TRPOPlus arguments {sorted(defaults)} and RL Zoo keys {sorted(ZOO_KEYS)}"
            )
        expected = _expected_instead(key, value, defaults.get(key))
        if expected is not None:
            raise ValueError(f"Invalid hyperparameter {key}={value!r} for {algo}{suffix}: expected {expected}")


def make_schedules(hyperparams: dict[str, Any]) -> dict[str, Any]:
    """
    Turn a ``target_kl: lin_<initial value>`` string into a schedule that shrinks linearly from that value to 0
    over training (SB3's ``LinearSchedule``), the way the Zoo turns ``learning_rate: lin_<value>`` into one.

    :param hyperparams: a checked hyperparameter entry (see :func:`check_hyperparams`), changed in place
    :return: ``hyperparams``
    """
    value = hyperparams.get("target_kl")
    start = _linear_schedule_start(value) if isinstance(value, str) else None
    if start is not None:
        hyperparams["target_kl"] = LinearSchedule(start, 0.0, 1.0)
    return hyperparams


__all__ = [
    "PLAIN_ZOO_NAME",
    "ZOO_KEYS",
    "ZOO_SET_ARGUMENTS",
    "check_hyperparams",
    "hyperparams_path",
    "make_schedules",
]
