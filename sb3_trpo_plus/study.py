"""RL Zoo Optuna studies shared by several workers and machines: storage, checks, and the ``best`` and
``fail-stale`` commands.

When ``python -m rl_zoo3.train --algo trpo_plus -optimize --storage <storage> --study-name <name>`` runs (or
``--algo trpo_plus_mask``, ``trpo_plus_lstm``), the Zoo patch of :mod:`sb3_trpo_plus.zoo` calls :func:`prepare_worker`
before the Zoo's own ``ExperimentManager.hyperparameters_optimization``, which does this:

- it opens the storage itself (:func:`~sb3_trpo_plus.study_storage.open_storage`) and turns what users get wrong
  into one clear message (:class:`StorageError`): a database driver that is not installed (naming the extra to
  install), a URL that is neither a journal file nor a database, a server that cannot be reached (naming host and
  port);
- for a database URL it opens an Optuna ``RDBStorage`` with a heartbeat (:class:`ZooRDBStorage`): a worker
  that dies mid-trial stops beating, and the next trial any worker starts marks that trial ``FAIL`` once the
  grace period has passed (Optuna's ``fail_stale_trials``), instead of leaving it ``RUNNING`` forever; each
  trial's user attribute ``worker`` (``host:pid``) says which worker ran it;
- it creates or loads the study (retrying the table creation that workers starting together on an empty
  database race on) and checks that it fits this worker (:func:`prepare_study`, :class:`StudyMismatchError`):
  it must maximize, and must not belong to another algorithm or environment.

The Zoo keeps its ``--storage`` string in ``ExperimentManager.storage``, tests it with ``.endswith(".log")``
and hands it to ``optuna.create_study``; :class:`ZooRDBStorage` answers ``endswith`` like its URL, so the
Zoo patch gives the Zoo the storage object for the duration of the call and restores the string afterwards.

This module knows nothing of the Zoo's classes and imports neither ``rl_zoo3`` nor :mod:`sb3_trpo_plus.zoo`:
the shipped files and the converter of the Zoo names come from :mod:`sb3_trpo_plus.zoo_hyperparams` and
:mod:`sb3_trpo_plus.zoo_sampler`.

Command line (``python -m sb3_trpo_plus.study --help``)::

    python -m sb3_trpo_plus.study best --storage URL --study-name NAME        # the best trial as a YAML entry
    python -m sb3_trpo_plus.study fail-stale --storage URL --study-name NAME  # fail the trials of dead workers
"""

from __future__ import annotations

import argparse
import contextlib
import math
import shlex
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.storages import JournalStorage, RDBStorage
from optuna.study import StudyDirection

from sb3_trpo_plus.study_storage import (
    DEFAULT_HEARTBEAT,
    GRACE_PERIOD_VARIABLE,
    HEARTBEAT_VARIABLE,
    StorageError,
    ZooRDBStorage,
    heartbeat_settings,
    is_journal,
    mask_url,
    open_storage,
)
from sb3_trpo_plus.zoo_hyperparams import PLAIN_ZOO_NAME, hyperparams_path
from sb3_trpo_plus.zoo_sampler import CONVERTERS

#: Study user attribute where the first worker records what the study tunes (algo, env, budget, ...).
STUDY_ATTR = "sb3_trpo_plus"


class StudyMismatchError(ValueError):
    """A study that this worker must not join (another algorithm or environment, or a minimizing study)."""


# --------------------------------------------------------------------------- study checks
def _command_option(command: str, option: str) -> str | None:
    """The value of ``option`` (``--algo``) in a command line the Zoo stored as the study's ``command`` attribute."""
    try:
        words = shlex.split(command)
    except ValueError:
        words = command.split()
    for index, word in enumerate(words):
        if word == option and index + 1 < len(words):
            return words[index + 1]
        if word.startswith(option + "="):
            return word.split("=", 1)[1]
    return None


def _sampled_names(sampler: Callable[..., Any], n_actions: int) -> set[str] | None:
    """Names of the parameters ``sampler`` (a Zoo sampler) suggests, found on a throwaway in-memory trial."""
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "A new study created in memory" line
    try:
        trial = optuna.create_study(storage=optuna.storages.InMemoryStorage()).ask()
        sampler(trial, n_actions, 1, {"using_her_replay_buffer": False, "her_kwargs": {}})
        return set(trial.params)
    except Exception:
        return None
    finally:
        optuna.logging.set_verbosity(verbosity)


def prepare_study(
    storage: JournalStorage | RDBStorage,
    study_name: str,
    algo: str,
    env: str,
    info: dict[str, Any] | None = None,
    sampler: Callable[..., Any] | None = None,
) -> optuna.Study:
    """
    Create (maximizing) or load the study ``study_name`` and check that a worker tuning ``algo`` on ``env`` may join it.

    Raises :class:`StudyMismatchError` when the study minimizes (made with ``optuna create-study`` without
    ``--direction maximize``), or was made for another algorithm or environment: by this plugin (the study
    attribute :data:`STUDY_ATTR`), by the Zoo (the ``--algo`` and ``--env`` of its ``command`` attribute), or,
    when neither attribute is there, by anything whose trials sampled parameters ``sampler`` does not.
    Records ``{"algo", "env", **info}`` in :data:`STUDY_ATTR` when the study has no such record yet.

    :param storage: the storage (see :func:`open_storage`)
    :param study_name: the study's name
    :param algo: the worker's ``--algo``
    :param env: the worker's environment id
    :param info: more to record with the algorithm (``n_timesteps``, ``n_actions``, ``config``)
    :param sampler: the worker's Zoo sampler (``HYPERPARAMS_SAMPLER[algo]``) for the parameter check
    :return: the study
    """
    study = optuna.create_study(storage=storage, study_name=study_name, direction="maximize", load_if_exists=True)
    where = f"Study {study_name!r}"
    if len(study.directions) != 1 or study.direction != StudyDirection.MAXIMIZE:
        directions = ", ".join(d.name.lower() for d in study.directions)
        raise StudyMismatchError(
            f"{where} was created to {directions}, but the RL Zoo maximizes the mean evaluation return: the sampler "
            "would look for the worst hyperparameters. Create it with `optuna create-study --direction maximize "
            f"--study-name {study_name} --storage ...` (or delete it: `optuna delete-study`), or use another --study-name."
        )
    recorded = study.user_attrs.get(STUDY_ATTR)
    if isinstance(recorded, dict):
        origin = "the sb3-trpo-plus record of its first worker"
        other_algo, other_env = recorded.get("algo"), recorded.get("env")
    else:
        origin = "the RL Zoo's record of its first command"
        command = study.user_attrs.get("command")
        other_algo = _command_option(command, "--algo") if isinstance(command, str) else None
        other_env = _command_option(command, "--env") if isinstance(command, str) else None
    fix = "Each algorithm and environment needs its own study: use another --study-name."
    if other_algo is not None and other_algo != algo:
        raise StudyMismatchError(f"{where} tunes --algo {other_algo} ({origin}); this worker runs --algo {algo}. {fix}")
    if other_env is not None and other_env != env:
        raise StudyMismatchError(f"{where} tunes --env {other_env} ({origin}); this worker runs --env {env}. {fix}")
    if other_algo is None and sampler is not None:
        names = _sampled_names(sampler, int((info or {}).get("n_actions", 0)))
        foreign = sorted({name for trial in study.get_trials(deepcopy=False) for name in trial.params} - (names or set()))
        if names is not None and foreign:
            raise StudyMismatchError(
                f"{where} was made by another algorithm: its trials sample {foreign[:5]}, which --algo {algo}'s "
                f"sampler does not. {fix}"
            )
    if not isinstance(recorded, dict):
        study.set_user_attr(STUDY_ATTR, {"algo": algo, "env": env, **(info or {})})
    return study


def fail_stale_trials(study: optuna.Study) -> None:
    """Optuna's ``fail_stale_trials`` (mark FAIL the running trials without a heartbeat for the grace period),
    without its "experimental" warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def prepare_worker(
    storage_text: str,
    study_name: str | None,
    algo: str,
    env: str,
    info: dict[str, Any] | None = None,
    sampler: Callable[..., Any] | None = None,
) -> JournalStorage | ZooRDBStorage:
    """
    What an ``-optimize --storage`` worker does before it runs its trials: open the storage (:func:`open_storage`,
    with the heartbeat of :func:`heartbeat_settings` for a database), and, given a study name, create or load the
    study and check it (:func:`prepare_study`), then fail the trials of workers that died (:func:`fail_stale_trials`).

    :param storage_text: the ``--storage`` value
    :param study_name: the ``--study-name`` (``None``: the storage is only opened)
    :param algo: the worker's ``--algo``
    :param env: the worker's environment id
    :param info: more to record with the algorithm (see :func:`prepare_study`)
    :param sampler: the worker's Zoo sampler, for the parameter check of :func:`prepare_study`
    :return: the opened storage
    """
    interval, grace = heartbeat_settings()
    storage = open_storage(storage_text, heartbeat_interval=interval, grace_period=grace)
    if study_name is not None:
        study = prepare_study(storage, study_name, algo, env, info, sampler)
        if isinstance(storage, RDBStorage):
            fail_stale_trials(study)  # trials of workers that died since any worker last started a trial
    return storage


# --------------------------------------------------------------------------- best: a YAML entry
def _python_expression(value: Any) -> str:
    """``value`` as the Python expression the Zoo evaluates in a ``policy_kwargs`` string (``nn`` is torch.nn)."""
    if isinstance(value, dict):
        return "dict(" + ", ".join(f"{key}={_python_expression(item)}" for key, item in value.items()) + ")"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_python_expression(item) for item in value) + "]"
    if isinstance(value, type):
        return f"nn.{value.__name__}" if value.__module__.startswith("torch.nn") else f"{value.__module__}.{value.__name__}"
    return repr(value)


def _yaml_value(value: Any) -> str:
    if isinstance(value, float):
        text = f"{value:.6g}"
        return f"!!float {text}" if "e" in text else text  # PyYAML reads 1e-05 (no dot) as a string
    return yaml.safe_dump(value, default_flow_style=True, width=1000).strip().removesuffix("...").strip()


def _float_text(value: float) -> str:
    return f"{value:.6g}"


def best_entry(study: optuna.Study, conf: str | None = None, env: str | None = None) -> str:
    """
    The best trial of ``study`` as an entry of ``hyperparams/<algo>.yml``: the entry the worker started from
    (from ``conf``, else the file recorded by the first worker when it exists here, else the shipped file of the
    study's ``--algo``), with the trial's values, converted as ``--trial-id`` converts them, put in and marked
    ``# tuned``; ``target_kl`` and ``cg_damping`` (TRPOPlus's joint-KL unit) say their sb3-contrib equivalent.

    :param study: a study tuned by ``-optimize --algo trpo_plus`` (or ``trpo_plus_mask``, ``trpo_plus_lstm``)
    :param conf: hyperparameter file to take the untuned keys from
    :param env: environment id (default: the one the study records)
    :return: YAML text, comments included
    """
    recorded = study.user_attrs.get(STUDY_ATTR)
    recorded = recorded if isinstance(recorded, dict) else {}
    command = study.user_attrs.get("command", "")
    algo = recorded.get("algo") or _command_option(command, "--algo") or PLAIN_ZOO_NAME
    env = env or recorded.get("env") or _command_option(command, "--env")
    if env is None:
        raise StudyMismatchError(f"Study {study.study_name!r} does not record its environment: pass --env")
    if algo not in CONVERTERS:
        raise StudyMismatchError(f"Study {study.study_name!r} tunes --algo {algo}, which sb3-trpo-plus does not provide")
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        states = ", ".join(f"{trial.number}: {trial.state.name}" for trial in study.get_trials(deepcopy=False)) or "none"
        raise StudyMismatchError(f"Study {study.study_name!r} has no complete trial yet (trials {states})")
    trial = study.best_trial
    tuned = CONVERTERS[algo](trial.params)

    recorded_conf = recorded.get("config")
    if conf is None and isinstance(recorded_conf, str) and Path(recorded_conf).is_file():
        conf = recorded_conf
    conf_path = Path(conf) if conf is not None else hyperparams_path(algo)
    entries = yaml.safe_load(conf_path.read_text()) or {}
    entry_name = env if env in entries else "default"
    entry: dict[str, Any] = dict(entries.get(entry_name) or {})
    entry.update(tuned)

    n_actions = recorded.get("n_actions")
    if n_actions is None:
        import gymnasium as gym

        space = gym.make(env).action_space
        n_actions = space.shape[0] if isinstance(space, gym.spaces.Box) else 0
    dims = max(1, int(n_actions))
    unit = f"{dims} action dimension{'s' if dims != 1 else ''}"
    counts = {state.name: len(study.get_trials(deepcopy=False, states=(state,))) for state in optuna.trial.TrialState}
    summary = ", ".join(f"{count} {name.lower()}" for name, count in counts.items() if count)
    budget = recorded.get("n_timesteps")
    lines = [
        f"# Best trial of study {study.study_name!r}: trial {trial.number}, mean evaluation return {trial.value:.2f}"
        + (f" after {budget} steps" if budget else "")
        + f" (trials: {summary})",
        f"# Untuned keys: entry {entry_name!r} of {conf_path}; tuned values (by --algo {algo}) marked.",
        "# target_kl and cg_damping are in TRPOPlus's unit, the joint KL of the whole action distribution:",
        "# target_kl (here) = target_kl (sb3-contrib) x action dimensions, and likewise cg_damping.",
        f"{env}:",
    ]
    for key, value in entry.items():
        if key == "policy_kwargs" and isinstance(value, dict):
            line = f'  {key}: "{_python_expression(value)}"'  # the Zoo evaluates the string, with nn = torch.nn
        else:
            line = f"  {key}: {_yaml_value(value)}"
        comments = []
        if key in tuned:
            comments.append("tuned")
        if key in ("target_kl", "cg_damping") and isinstance(value, float) and math.isfinite(value):
            comments.append(f"sb3-contrib {_float_text(value / dims)} x {unit}")
        lines.append(line + (f"  # {'; '.join(comments)}" if comments else ""))
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- command line
def _load(storage_text: str, study_name: str, grace_period: int | None = None) -> optuna.Study:
    heartbeat = (1, grace_period) if grace_period is not None else heartbeat_settings()
    storage = open_storage(storage_text, heartbeat_interval=heartbeat[0], grace_period=heartbeat[1])
    try:
        return optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        names = [summary.study_name for summary in optuna.get_all_study_summaries(storage)]
        raise StudyMismatchError(f"No study {study_name!r} in {mask_url(storage_text)} (studies there: {names})") from None


def main(argv: list[str] | None = None) -> int:
    """``python -m sb3_trpo_plus.study {best,fail-stale} --storage STORAGE --study-name NAME``."""
    parser = argparse.ArgumentParser(prog="python -m sb3_trpo_plus.study", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    best = commands.add_parser("best", help="print the best trial as an entry of hyperparams/<algo>.yml")
    stale = commands.add_parser("fail-stale", help="mark FAIL the running trials whose worker stopped beating")
    for command in (best, stale):
        command.add_argument("--storage", required=True, help="the workers' --storage (database URL or .log journal file)")
        command.add_argument("--study-name", required=True)
    best.add_argument("--conf", default=None, help="hyperparameter file for the untuned keys (default: the workers')")
    best.add_argument("--env", default=None, help="environment id (default: the one the study records)")
    stale.add_argument(
        "--grace-period",
        type=int,
        default=None,
        help=f"seconds since a trial's last heartbeat after which it is stale (default: ${GRACE_PERIOD_VARIABLE}, "
        f"else twice ${HEARTBEAT_VARIABLE}, else {2 * DEFAULT_HEARTBEAT})",
    )
    stale.add_argument(
        "--all-running",
        action="store_true",
        help="also fail RUNNING trials without any heartbeat (started by workers without one); only when no worker runs",
    )
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        if args.command == "best":
            print(best_entry(_load(args.storage, args.study_name), conf=args.conf, env=args.env), end="")
            return 0
        if is_journal(args.storage) and not args.all_running:
            raise StorageError("a journal file keeps no heartbeat: pass --all-running once every worker has stopped")
        study = _load(args.storage, args.study_name, args.grace_period)
        before = {trial.number for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))}
        if not is_journal(args.storage):
            fail_stale_trials(study)
        if args.all_running:
            for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
                with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
                    study._storage.set_trial_state_values(trial._trial_id, state=optuna.trial.TrialState.FAIL)
        after = {trial.number for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))}
        failed = sorted(before - after)
        print(f"Marked FAIL: {failed or 'none'}; still running: {sorted(after) or 'none'}")
        return 0
    except (StorageError, StudyMismatchError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
