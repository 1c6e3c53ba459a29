"""RL Zoo (``rl_zoo3``) integration: every change this package makes to the Zoo is made here, and only here.

The Zoo gets the algorithm ``trpo_plus`` and the policy families ``trpo_plus_mask``
(:class:`~sb3_trpo_plus.maskable.MaskableTRPOPlus`) and ``trpo_plus_lstm``
(:class:`~sb3_trpo_plus.recurrent.RecurrentTRPOPlus`), named after the Zoo's ``ppo_mask`` and ``ppo_lstm``
(:data:`ALGO_NAMES`, from :mod:`sb3_trpo_plus.families`; :func:`is_ours` is the one test of whether an ``--algo``
is one of them).

Nothing needs to be called by hand: the interpreter-start hook installed with the package
(``sb3_trpo_plus_zoo.pth`` -> ``_sb3_trpo_plus_zoo_hook``) calls :func:`_on_zoo_import` right after each of
these Zoo modules has been executed:

- ``rl_zoo3.utils``: ``ALGOS["trpo_plus"] = TRPOPlus`` (read by train, enjoy, record_video, record_training,
  push_to_hub, load_from_hub and the ``rl_zoo3`` command, all of which hold the same dict object), likewise
  ``trpo_plus_mask`` and ``trpo_plus_lstm``; and the gymnasium ids of sb3-contrib's masked test envs
  (:data:`MASKED_ENVS`), so that ``--algo trpo_plus_mask`` has an env with ``action_masks()`` to train on;
  and ``StoreDict`` (the action of ``--hyperparams``, which evaluates each value as Python) keeps a value it cannot
  evaluate that reads ``lin_...`` as text until the algorithm is known (:class:`CommandLineText`), so that
  ``--hyperparams target_kl:lin_0.05`` works as the hyperparameter files write it; for any other algorithm the
  Zoo's own error is raised, when ``ExperimentManager`` is built;
- ``rl_zoo3.hyperparams_opt``: ``HYPERPARAMS_SAMPLER`` and ``HYPERPARAMS_CONVERTER`` of each of the three
  (:mod:`sb3_trpo_plus.zoo_sampler`);
- ``rl_zoo3.exp_manager``: ``ExperimentManager`` is patched once (one sentinel), and for our names only:

  * its construction reads a ``lin_...`` text of ``--hyperparams`` as the string (another algorithm gets the
    Zoo's error);

  * without ``-conf`` it reads the shipped ``<algo>.yml`` (:func:`~sb3_trpo_plus.zoo_hyperparams.hyperparams_path`)
    instead of ``<rl_zoo3>/hyperparams/<algo>.yml``;
  * ``read_hyperparameters`` names a missing simulator extra and checks every hyperparameter's name, type and
    value (:func:`~sb3_trpo_plus.zoo_hyperparams.check_hyperparams`) before any environment is built;
  * ``-optimize --storage`` opens the storage with a heartbeat and checks the study
    (:func:`sb3_trpo_plus.study.prepare_worker`) before the Zoo's own optimization runs.

Every other algorithm is left as it is. :func:`register` does the same by hand (for a Python session
started with ``SB3_TRPO_PLUS_ZOO_HOOK=0`` or an install whose ``.pth`` was removed).

``rl_zoo3`` is imported lazily, so this module imports without it; :mod:`sb3_trpo_plus.study` (Optuna) is imported
when an ``-optimize --storage`` run starts.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

from sb3_trpo_plus import families
from sb3_trpo_plus.trpo_plus import TRPOPlus
from sb3_trpo_plus.zoo_hyperparams import ZOO_KEYS, ZOO_SET_ARGUMENTS, check_hyperparams, hyperparams_path, make_schedules
from sb3_trpo_plus.zoo_sampler import (
    ACTIVATION_FNS,
    CONVERTERS,
    NET_ARCHS,
    SAMPLERS,
    convert_trpo_plus_params,
    sample_trpo_plus_lstm_params,
    sample_trpo_plus_params,
)

ALGO_NAME = families.FAMILIES["plain"].zoo_name
HYPERPARAMS_FILENAME = f"{ALGO_NAME}.yml"
MASK_ALGO_NAME = families.FAMILIES["masked"].zoo_name
LSTM_ALGO_NAME = families.FAMILIES["recurrent"].zoo_name
#: The Zoo names this package registers (each reads ``<name>.yml``)
ALGO_NAMES = tuple(info.zoo_name for info in families.FAMILIES.values())

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


def is_ours(algo: str) -> bool:
    """Whether the Zoo's ``--algo`` name is one this package registers (:data:`ALGO_NAMES`): the Zoo patches act for
    these names only."""
    return algo in ALGO_NAMES


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


# --------------------------------------------------------------------------- the patches
class CommandLineText(str):
    """A ``--hyperparams`` value that the Zoo's ``StoreDict`` could not evaluate as Python and that reads
    ``lin_...`` (a schedule, as the hyperparameter files write it: ``target_kl:lin_0.05``), kept as text until
    ``ExperimentManager`` knows the algorithm: ours read it as the string (as ``target_kl:"'lin_0.05'"`` gives it),
    any other algorithm gets the error the Zoo raised (:meth:`zoo_error`).

    :param text: the value as written
    :param zoo_error: raises the Zoo's own error for the value (its ``StoreDict`` on this item alone)
    """

    zoo_error: Callable[[], None]

    def __new__(cls, text: str, zoo_error: Callable[[], None]) -> CommandLineText:
        value = super().__new__(cls, text)
        value.zoo_error = zoo_error
        return value


#: Set on ``StoreDict`` once it is patched
_STORE_DICT_PATCHED = "_sb3_trpo_plus_patched"


def _patch_store_dict(utils: ModuleType) -> None:
    """Patch ``StoreDict`` once: a ``--hyperparams`` value that reads ``lin_...`` (which Python cannot evaluate)
    becomes a :class:`CommandLineText` instead of the Zoo's ``SyntaxError`` or ``NameError``."""
    store_dict = utils.StoreDict
    if getattr(store_dict, _STORE_DICT_PATCHED, False):
        return
    original_call = store_dict.__call__

    @functools.wraps(original_call)
    def __call__(self: Any, parser: Any, namespace: Any, values: Any, option_string: Any = None) -> None:
        if self.dest != "hyperparams" or not isinstance(values, list):
            return original_call(self, parser, namespace, values, option_string)
        texts = [item for item in values if item.partition(":")[2].startswith("lin_")]
        original_call(self, parser, namespace, [item for item in values if item not in texts], option_string)
        evaluated = getattr(namespace, self.dest)
        result: dict[str, Any] = {}
        for item in values:
            key, _, text = item.partition(":")
            if item in texts:
                zoo_error = functools.partial(original_call, self, parser, argparse.Namespace(), [item], option_string)
                result[key] = CommandLineText(text, zoo_error)
            else:
                result[key] = evaluated[key]
        setattr(namespace, self.dest, result)

    store_dict.__call__ = __call__
    setattr(store_dict, _STORE_DICT_PATCHED, True)


def _read_command_line_texts(custom_hyperparams: Any, algo: Any) -> None:
    """Turn each :class:`CommandLineText` of ``--hyperparams`` into its string for our algorithms (in place: the
    Zoo's ``args`` hold the same dict, saved to ``args.yml``), or raise the Zoo's own error for any other."""
    if not isinstance(custom_hyperparams, dict):
        return
    for key, value in custom_hyperparams.items():
        if isinstance(value, CommandLineText):
            if not (isinstance(algo, str) and is_ours(algo)):
                value.zoo_error()
            custom_hyperparams[key] = str(value)


def _register_algorithm(utils: ModuleType) -> None:
    for algo in ALGO_NAMES:
        utils.ALGOS[algo] = algorithm_class(algo)
    register_masked_envs()
    _patch_store_dict(utils)


def _register_optuna(hyperparams_opt: ModuleType) -> None:
    for algo in ALGO_NAMES:
        hyperparams_opt.HYPERPARAMS_SAMPLER[algo] = SAMPLERS[algo]
        hyperparams_opt.HYPERPARAMS_CONVERTER[algo] = CONVERTERS[algo]


#: Set on ``ExperimentManager`` once it is patched
_PATCHED = "_sb3_trpo_plus_patched"


@contextlib.contextmanager
def _storage_swapped(manager: Any, storage: Any) -> Iterator[None]:
    """Give the Zoo's ``manager`` the opened ``storage`` instead of its ``--storage`` string for the time of a call."""
    original = manager.storage
    manager.storage = storage
    try:
        yield
    finally:
        manager.storage = original


def _patch_experiment_manager(exp_manager: ModuleType) -> None:
    """Patch ``ExperimentManager`` for :data:`ALGO_NAMES`: read our YAML by default, check hyperparameters before any
    env is built, and open and check an ``-optimize --storage`` study (:mod:`sb3_trpo_plus.study`)."""
    manager_class = exp_manager.ExperimentManager
    if getattr(manager_class, _PATCHED, False):
        return
    original_init = manager_class.__init__
    original_read = manager_class.read_hyperparameters
    original_optimize = manager_class.hyperparameters_optimization
    init_signature = inspect.signature(original_init)

    @functools.wraps(original_init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        arguments = init_signature.bind(self, *args, **kwargs).arguments
        _read_command_line_texts(arguments.get("hyperparams"), arguments.get("algo"))
        original_init(self, *args, **kwargs)
        if is_ours(self.algo) and arguments.get("config") is None:
            self.config = str(hyperparams_path(self.algo))

    @functools.wraps(original_read)
    def read_hyperparameters(self: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        hyperparams, saved_hyperparams = original_read(self)
        if is_ours(self.algo):
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

    @functools.wraps(original_optimize)
    def hyperparameters_optimization(self: Any) -> None:
        if not is_ours(self.algo) or not isinstance(self.storage, str):
            return original_optimize(self)
        from rl_zoo3.hyperparams_opt import HYPERPARAMS_SAMPLER

        from sb3_trpo_plus.study import ZooRDBStorage, prepare_worker

        info = {"n_timesteps": int(self.n_timesteps), "n_actions": int(self.n_actions), "config": str(self.config)}
        sampler = HYPERPARAMS_SAMPLER.get(self.algo)
        storage = prepare_worker(self.storage, self.study_name, self.algo, self.env_name.gym_id, info, sampler)
        if not isinstance(storage, ZooRDBStorage):
            return original_optimize(self)  # a journal file: the Zoo opens it itself
        with _storage_swapped(self, storage):
            return original_optimize(self)

    manager_class.__init__ = __init__
    manager_class.read_hyperparameters = read_hyperparameters
    manager_class.hyperparameters_optimization = hyperparameters_optimization
    setattr(manager_class, _PATCHED, True)


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
    "ACTIVATION_FNS",
    "ALGO_NAME",
    "ALGO_NAMES",
    "LSTM_ALGO_NAME",
    "MASKED_ENVS",
    "MASK_ALGO_NAME",
    "NET_ARCHS",
    "ZOO_KEYS",
    "ZOO_SET_ARGUMENTS",
    "CommandLineText",
    "algorithm_class",
    "check_hyperparams",
    "convert_trpo_plus_params",
    "hyperparams_path",
    "is_ours",
    "make_schedules",
    "missing_extra",
    "register",
    "register_masked_envs",
    "sample_trpo_plus_lstm_params",
    "sample_trpo_plus_params",
]
