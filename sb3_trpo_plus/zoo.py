"""RL Zoo (``rl_zoo3``) integration: the ``trpo_plus`` algorithm, its hyperparameter file and its Optuna sampler,
and the same for the policy families ``trpo_plus_mask`` (:class:`~sb3_trpo_plus.maskable.MaskableTRPOPlus`) and
``trpo_plus_lstm`` (:class:`~sb3_trpo_plus.recurrent.RecurrentTRPOPlus`), named after the Zoo's ``ppo_mask`` and
``ppo_lstm``.

Nothing needs to be called by hand: the interpreter-start hook installed with the package
(``sb3_trpo_plus_zoo.pth`` -> ``_sb3_trpo_plus_zoo_hook``) calls :func:`_on_zoo_import` right after each of
these Zoo modules has been executed:

- ``rl_zoo3.utils``: ``ALGOS["trpo_plus"] = TRPOPlus`` (read by train, enjoy, record_video, record_training,
  push_to_hub, load_from_hub and the ``rl_zoo3`` command, all of which hold the same dict object), likewise
  ``trpo_plus_mask`` and ``trpo_plus_lstm``; and the gymnasium ids of sb3-contrib's masked test envs
  (:data:`MASKED_ENVS`), so that ``--algo trpo_plus_mask`` has an env with ``action_masks()`` to train on;
- ``rl_zoo3.hyperparams_opt``: ``HYPERPARAMS_SAMPLER`` and ``HYPERPARAMS_CONVERTER`` of each of the three;
- ``rl_zoo3.exp_manager``: for ``--algo trpo_plus`` (or a family) without ``-conf``, ``ExperimentManager`` reads
  :func:`hyperparams_path` (shipped inside the wheel) instead of ``<rl_zoo3>/hyperparams/<algo>.yml``,
  and checks every hyperparameter's name, type and value before any environment is built; ``-optimize --storage``
  gets a heartbeat and study checks (:mod:`sb3_trpo_plus.study`).

Every other algorithm is left as it is. :func:`register` does the same by hand (for a Python session
started with ``SB3_TRPO_PLUS_ZOO_HOOK=0`` or an install whose ``.pth`` was removed).

``rl_zoo3`` is imported lazily, so this module imports without it.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import importlib.util
import inspect
import math
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from stable_baselines3.common.utils import LinearSchedule
from torch import nn

from sb3_trpo_plus import families
from sb3_trpo_plus.trpo_plus import SCHEDULE_ARGUMENTS, TRPOPlus, check_arguments
from sb3_trpo_plus.validation import InvalidArgumentError

if TYPE_CHECKING:
    import optuna

ALGO_NAME = families.FAMILIES["plain"].zoo_name
HYPERPARAMS_FILENAME = f"{ALGO_NAME}.yml"
MASK_ALGO_NAME = families.FAMILIES["masked"].zoo_name
LSTM_ALGO_NAME = families.FAMILIES["recurrent"].zoo_name
#: The Zoo names this package registers (each reads ``<name>.yml``)
ALGO_NAMES = (ALGO_NAME, MASK_ALGO_NAME, LSTM_ALGO_NAME)

#: gymnasium ids registered for ``trpo_plus_mask`` (sb3-contrib's identity envs with ``action_masks()``): the
#: observation is the state, reward 1 for the action equal to it, 100 steps; a random valid action gets 100 / valid.
MASKED_ENVS: dict[str, tuple[str, dict[str, Any]]] = {
    "InvalidActionEnvDiscrete-v0": (
        "sb3_contrib.common.envs:InvalidActionEnvDiscrete",
        {"dim": 40, "n_invalid_actions": 30},
    ),
    "InvalidActionEnvMultiDiscrete-v0": (
        "sb3_contrib.common.envs:InvalidActionEnvMultiDiscrete",
        {"dims": [5, 5, 5], "n_invalid_actions": 9},
    ),
}


def algorithm_class(algo: str) -> type[TRPOPlus]:
    """The class registered under the Zoo name ``algo`` (one of :data:`ALGO_NAMES`)."""
    return families.algorithm_class(families.by_zoo_name(algo).name)


def register_masked_envs() -> None:
    """Register :data:`MASKED_ENVS` with gymnasium (ids already registered are left as they are)."""
    import gymnasium as gym

    for env_id, (entry_point, kwargs) in MASKED_ENVS.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=entry_point, kwargs=kwargs)


#: Keys of a Zoo hyperparameter entry that the Zoo consumes itself (they never reach the constructor).
ZOO_KEYS = frozenset(
    {"n_timesteps", "n_envs", "normalize", "env_wrapper", "vec_env_wrapper", "frame_stack", "callback"}
    | {"monitor_kwargs", "env_kwargs"}
)
#: Constructor arguments the Zoo passes itself: a hyperparameter file may not set them.
ZOO_SET_ARGUMENTS = frozenset({"env", "tensorboard_log", "seed", "verbose", "device", "_init_setup_model"})

#: ``net_arch`` and ``activation_fn`` choices of the Optuna sampler (the names the Zoo's own samplers use).
NET_ARCHS: dict[str, dict[str, list[int]]] = {
    "tiny": {"pi": [64], "vf": [64]},
    "small": {"pi": [64, 64], "vf": [64, 64]},
    "medium": {"pi": [256, 256], "vf": [256, 256]},
}
ACTIVATION_FNS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU, "leaky_relu": nn.LeakyReLU}


def hyperparams_path(algo: str = ALGO_NAME) -> Path:
    """
    Path of the shipped ``<algo>.yml`` (``trpo_plus.yml`` by default): ``sb3_trpo_plus/hyperparams/`` in a wheel
    install, the top-level ``hyperparams/`` folder in a source checkout or an editable install.
    """
    filename = f"{algo}.yml"
    package_dir = Path(__file__).resolve().parent
    candidates = [directory / "hyperparams" / filename for directory in (package_dir, package_dir.parent)]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"sb3-trpo-plus ships {filename} but it is missing (looked at {', '.join(map(str, candidates))}); "
        "reinstall the package or pass a file with -conf"
    )


# --------------------------------------------------------------------------- Optuna
def convert_trpo_plus_params(sampled_params: dict[str, Any]) -> dict[str, Any]:
    """
    Turn the values an Optuna trial sampled (``trial.params``) into TRPOPlus arguments.

    Used by :func:`sample_trpo_plus_params` and, as ``HYPERPARAMS_CONVERTER["trpo_plus"]``, by
    ``train --storage ... --study-name ... --trial-id N``. ``one_minus_gamma``/``one_minus_gae_lambda``
    become ``gamma``/``gae_lambda``, ``*_pow`` become powers of two, ``net_arch``/``activation_fn`` names
    become ``policy_kwargs``; every other value is a TRPOPlus argument already.
    """
    params = dict(sampled_params)
    if "one_minus_gamma" in params:
        params["gamma"] = 1 - params.pop("one_minus_gamma")
    if "one_minus_gae_lambda" in params:
        params["gae_lambda"] = 1 - params.pop("one_minus_gae_lambda")
    for name in ("batch_size", "n_steps"):
        if f"{name}_pow" in params:
            params[name] = 2 ** params.pop(f"{name}_pow")
    policy_kwargs: dict[str, Any] = {}
    if "net_arch" in params:
        policy_kwargs["net_arch"] = NET_ARCHS[params.pop("net_arch")]
    if "activation_fn" in params:
        policy_kwargs["activation_fn"] = ACTIVATION_FNS[params.pop("activation_fn")]
    if "lstm_hidden_size" in params:  # trpo_plus_lstm
        policy_kwargs["lstm_hidden_size"] = params.pop("lstm_hidden_size")
    if policy_kwargs:
        params["policy_kwargs"] = policy_kwargs
    return params


def sample_trpo_plus_params(trial: optuna.Trial, n_actions: int, n_envs: int, additional_args: dict) -> dict[str, Any]:
    """
    Optuna sampler for TRPOPlus (``HYPERPARAMS_SAMPLER["trpo_plus"]``, the Zoo's sampler signature).

    ``target_kl`` is sampled in TRPOPlus's unit, the KL of the whole action distribution: its range is the Zoo's
    TRPO range (0.001 to 0.1 per action dimension) times the number of action dimensions (``n_actions``,
    0 for non-Box spaces, where the two units agree). Only arguments of the exact TRPO step are sampled:
    ``fisher_sub_sampling`` and ``sub_sampling_factor`` (which approximate it to save time) stay at 1.

    :param trial: the Optuna trial
    :param n_actions: action dimensions of a Box action space, else 0 (computed by the Zoo)
    :param n_envs: number of parallel environments (unused: ``n_steps`` is per environment)
    :param additional_args: the Zoo's extra information (unused)
    :return: TRPOPlus keyword arguments
    """
    kl_scale = max(1, n_actions)
    sampled: dict[str, Any] = {
        "n_steps_pow": trial.suggest_int("n_steps_pow", 6, 12),  # 64 to 4096 steps per environment
        "batch_size_pow": trial.suggest_int("batch_size_pow", 5, 10),  # critic minibatches of 32 to 1024
        "one_minus_gamma": trial.suggest_float("one_minus_gamma", 0.0001, 0.03, log=True),
        "one_minus_gae_lambda": trial.suggest_float("one_minus_gae_lambda", 0.0001, 0.1, log=True),
        "learning_rate": trial.suggest_float("learning_rate", 1e-5, 3e-3, log=True),  # critic's Adam
        "n_critic_updates": trial.suggest_int("n_critic_updates", 5, 30),
        "target_kl": trial.suggest_float("target_kl", 0.001 * kl_scale, 0.1 * kl_scale, log=True),
        "cg_max_steps": trial.suggest_int("cg_max_steps", 5, 30),
        "cg_damping": trial.suggest_float("cg_damping", 1e-3, 0.5, log=True),
        "line_search_shrinking_factor": trial.suggest_categorical("line_search_shrinking_factor", [0.5, 0.6, 0.7, 0.8, 0.9]),
        "line_search_max_iter": trial.suggest_int("line_search_max_iter", 5, 20),
        "ent_coef": trial.suggest_float("ent_coef", 1e-8, 0.01, log=True),  # PPO's Zoo range, capped at 0.01
        "net_arch": trial.suggest_categorical("net_arch", ["small", "medium"]),
        "activation_fn": trial.suggest_categorical("activation_fn", ["tanh", "relu"]),
    }
    # Show the values the model gets in Optuna's tables
    trial.set_user_attr("gamma", 1 - sampled["one_minus_gamma"])
    trial.set_user_attr("gae_lambda", 1 - sampled["one_minus_gae_lambda"])
    trial.set_user_attr("n_steps", 2 ** sampled["n_steps_pow"])
    trial.set_user_attr("batch_size", 2 ** sampled["batch_size_pow"])
    return convert_trpo_plus_params(sampled)


def sample_trpo_plus_lstm_params(trial: optuna.Trial, n_actions: int, n_envs: int, additional_args: dict) -> dict[str, Any]:
    """
    Optuna sampler for RecurrentTRPOPlus (``HYPERPARAMS_SAMPLER["trpo_plus_lstm"]``): TRPOPlus's
    (:func:`sample_trpo_plus_params`) and the LSTM's size.
    """
    params = sample_trpo_plus_params(trial, n_actions, n_envs, additional_args)
    params.setdefault("policy_kwargs", {})["lstm_hidden_size"] = trial.suggest_categorical("lstm_hidden_size", [32, 64, 128])
    return params


# --------------------------------------------------------------------------- hyperparameter checks
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


#: gymnasium env families whose simulator is an extra of ours: entry-point prefix -> (module, extra)
ENV_EXTRAS = {"gymnasium.envs.box2d": ("Box2D", "box2d"), "gymnasium.envs.mujoco": ("mujoco", "mujoco")}


def missing_extra(env_id: str) -> str | None:
    """One line naming the extra an env needs when its simulator is not installed (``None`` when nothing is missing
    or the env is not one of gymnasium's Box2D or MuJoCo tasks)."""
    import gymnasium as gym

    try:
        spec = gym.spec(env_id)
    except gym.error.Error:
        return None  # not registered (yet): the Zoo reports it
    entry = spec.entry_point if isinstance(spec.entry_point, str) else ""
    for prefix, (module, extra) in ENV_EXTRAS.items():
        if entry.startswith(prefix) and importlib.util.find_spec(module) is None:
            return f"{env_id} needs {module}, which is not installed: pip install 'sb3-trpo-plus[{extra}]'"
    return None


def check_hyperparams(
    hyperparams: dict[str, Any], where: str = "", sources: dict[str, str] | None = None, algo: str = ALGO_NAME
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


# --------------------------------------------------------------------------- registration
def _register_algorithm(utils: ModuleType) -> None:
    for algo in ALGO_NAMES:
        utils.ALGOS[algo] = algorithm_class(algo)
    register_masked_envs()


def _register_optuna(hyperparams_opt: ModuleType) -> None:
    samplers = {ALGO_NAME: sample_trpo_plus_params, MASK_ALGO_NAME: sample_trpo_plus_params}
    samplers[LSTM_ALGO_NAME] = sample_trpo_plus_lstm_params
    for algo, sampler in samplers.items():
        hyperparams_opt.HYPERPARAMS_SAMPLER[algo] = sampler
        hyperparams_opt.HYPERPARAMS_CONVERTER[algo] = convert_trpo_plus_params


def _patch_experiment_manager(exp_manager: ModuleType) -> None:
    """Make ``ExperimentManager`` read our YAML by default and check hyperparameters, for ``trpo_plus`` only."""
    manager_class = exp_manager.ExperimentManager
    if getattr(manager_class, "_sb3_trpo_plus_patched", False):
        return
    original_init = manager_class.__init__
    original_read = manager_class.read_hyperparameters
    init_signature = inspect.signature(original_init)

    @functools.wraps(original_init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        if self.algo in ALGO_NAMES and init_signature.bind(self, *args, **kwargs).arguments.get("config") is None:
            self.config = str(hyperparams_path(self.algo))

    @functools.wraps(original_read)
    def read_hyperparameters(self: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        hyperparams, saved_hyperparams = original_read(self)
        if self.algo in ALGO_NAMES:
            missing = missing_extra(self.env_name.gym_id)
            if missing is not None:  # before any env is built, one line naming the extra
                raise ModuleNotFoundError(missing)
            env = f"env {self.env_name.gym_id}"
            where = f"{env}, hyperparameters from {self.config}"
            if self.storage and self.study_name and self.trial_id:
                where += f" or trial {self.trial_id} of Optuna study {self.study_name!r}"
            command_line = f"{env}, --hyperparams on the command line"
            check_hyperparams(hyperparams, where, dict.fromkeys(self.custom_hyperparams or {}, command_line), self.algo)
            make_schedules(hyperparams)  # the saved copy keeps the string, for config.yml
        return hyperparams, saved_hyperparams

    manager_class.__init__ = __init__
    manager_class.read_hyperparameters = read_hyperparameters
    manager_class._sb3_trpo_plus_patched = True
    # -optimize --storage: heartbeat, clear storage errors, study checks (sb3_trpo_plus/study.py)
    from sb3_trpo_plus.study import patch_experiment_manager

    patch_experiment_manager(manager_class)


_REGISTRARS: dict[str, Callable[[ModuleType], None]] = {
    "rl_zoo3.utils": _register_algorithm,
    "rl_zoo3.hyperparams_opt": _register_optuna,
    "rl_zoo3.exp_manager": _patch_experiment_manager,
}


def _on_zoo_import(module_name: str) -> None:
    """Called by the start hook right after the Zoo module ``module_name`` was executed."""
    _REGISTRARS[module_name](sys.modules[module_name])


def register() -> None:
    """Import the Zoo's modules and register ``trpo_plus`` in them (idempotent; the start hook makes this unneeded)."""
    for module_name, registrar in _REGISTRARS.items():
        registrar(importlib.import_module(module_name))


__all__ = [
    "ALGO_NAME",
    "ALGO_NAMES",
    "LSTM_ALGO_NAME",
    "MASKED_ENVS",
    "MASK_ALGO_NAME",
    "algorithm_class",
    "check_hyperparams",
    "convert_trpo_plus_params",
    "hyperparams_path",
    "make_schedules",
    "register",
    "register_masked_envs",
    "sample_trpo_plus_lstm_params",
    "sample_trpo_plus_params",
]
