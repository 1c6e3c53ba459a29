"""Optuna storage for RL Zoo studies shared by several workers: a journal file or a database, opened with clear
errors (:class:`StorageError`) and, for a database, a heartbeat (:class:`ZooRDBStorage`) so that the trials of a
dead worker are failed instead of staying ``RUNNING``. :mod:`sb3_trpo_plus.study` checks and prepares the study on it.
"""

from __future__ import annotations

import os
import random
import socket
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
import sqlalchemy.exc
from optuna.storages import JournalStorage, RDBStorage

#: Trial user attribute naming the worker (``host:pid``) that ran the trial.
WORKER_ATTR = "worker"
#: Environment variables: heartbeat interval and grace period in seconds (``SB3_TRPO_PLUS_HEARTBEAT=0``: no heartbeat).
HEARTBEAT_VARIABLE = "SB3_TRPO_PLUS_HEARTBEAT"
GRACE_PERIOD_VARIABLE = "SB3_TRPO_PLUS_GRACE_PERIOD"
#: Defaults (Optuna's documented example): a beat every 60 s; a trial whose last beat is older than 120 s is stale.
DEFAULT_HEARTBEAT = 60
#: Seconds a PostgreSQL connection attempt may take (libpq waits forever by default on an unanswered host).
CONNECT_TIMEOUT = 10
#: Driver module -> what to install, for the message about a missing driver.
DRIVER_HINTS = {
    "psycopg": "pip install 'sb3-trpo-plus[distributed]' (psycopg 3, which SQLAlchemy 2 uses for postgresql://); "
    "with psycopg2 installed instead, write the URL as postgresql+psycopg2://...",
    "psycopg2": "pip install psycopg2-binary, or pip install 'sb3-trpo-plus[distributed]' and write postgresql://...",
    "MySQLdb": "pip install mysqlclient, or pip install pymysql and write the URL as mysql+pymysql://...",
    "pymysql": "pip install pymysql",
}


class StorageError(RuntimeError):
    """A ``--storage`` that cannot be used, with the reason and what to do about it."""


# --------------------------------------------------------------------------- storage
def is_journal(storage: str) -> bool:
    """Whether the Zoo treats ``storage`` as a journal file (a path ending in ``.log``) rather than a database URL."""
    return storage.endswith(".log")


def mask_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (for messages)."""
    try:
        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


def _where(url: sqlalchemy.engine.URL) -> str:
    """The server a URL names, as ``host:port`` (or the socket directory / the SQLite file)."""
    if url.get_backend_name() == "sqlite":
        return f"the SQLite file {url.database!r}"
    default_ports = {"postgresql": "5432", "mysql": "3306", "mariadb": "3306"}
    host = url.host or url.query.get("host") or "localhost (the default socket)"
    port = url.port or default_ports.get(url.get_backend_name(), "default port")
    return f"{host if isinstance(host, str) else host[0]}:{port}"


def heartbeat_settings() -> tuple[int | None, int | None]:
    """Heartbeat interval and grace period in seconds, from :data:`HEARTBEAT_VARIABLE` and :data:`GRACE_PERIOD_VARIABLE`."""

    def read(name: str, default: int | None) -> int | None:
        text = os.environ.get(name, "").strip()
        if not text:
            return default
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f"Invalid {name}={text!r}: expected a whole number of seconds (0: off)") from None
        if value < 0:
            raise ValueError(f"Invalid {name}={text!r}: expected a whole number of seconds >= 0 (0: off)")
        return value or None

    interval = read(HEARTBEAT_VARIABLE, DEFAULT_HEARTBEAT)
    grace = read(GRACE_PERIOD_VARIABLE, None)
    return interval, (grace if interval is not None else None)


def worker_name() -> str:
    """``host:pid`` of this process: the value of the trials' ``worker`` attribute."""
    return f"{socket.gethostname()}:{os.getpid()}"


class ZooRDBStorage(RDBStorage):
    """
    Optuna's ``RDBStorage`` that labels every trial it beats for with the ``worker`` user attribute
    (``host:pid``), so a study shows which worker ran, or abandoned, which trial.

    It also stands in for the ``--storage`` string inside the Zoo's ``ExperimentManager``, which only asks it
    ``endswith(".log")`` and prints it: both answer as the URL would (the password masked in ``str``).

    :param url: the database URL
    :param worker: the value of the ``worker`` attribute (default: :func:`worker_name`)
    :param kwargs: ``RDBStorage`` keyword arguments (``heartbeat_interval``, ``grace_period``, ``engine_kwargs``)
    """

    def __init__(self, url: str, worker: str | None = None, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        self.worker = worker or worker_name()
        self._labelled: set[int] = set()

    def record_heartbeat(self, trial_id: int) -> None:
        # Optuna's heartbeat thread calls this as the trial starts (then every heartbeat_interval seconds)
        super().record_heartbeat(trial_id)
        if trial_id not in self._labelled:
            self._labelled.add(trial_id)
            self.set_trial_user_attr(trial_id, WORKER_ATTR, self.worker)

    def __getstate__(self) -> dict[Any, Any]:  # the Zoo pickles the study into its report
        state = super().__getstate__()
        state["_labelled"] = set()
        return state

    def endswith(self, suffix: str | tuple[str, ...]) -> bool:
        return self.url.endswith(suffix)

    def __str__(self) -> str:
        return mask_url(self.url)


def _engine_kwargs(url: sqlalchemy.engine.URL) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"pool_pre_ping": True}  # a trial can outlast an idle connection's life (firewalls)
    if url.get_backend_name() == "postgresql" and "connect_timeout" not in url.query:
        kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT}
    return kwargs


def _is_creation_race(error: sqlalchemy.exc.DBAPIError) -> bool:
    """Whether ``error`` comes from another worker creating Optuna's tables at the same moment."""
    reason = str(error.orig).lower()
    if isinstance(error, sqlalchemy.exc.IntegrityError | sqlalchemy.exc.ProgrammingError):
        return "permission denied" not in reason  # duplicate type/table/alembic_version row (PostgreSQL, MySQL)
    return "locked" in reason or "already exists" in reason  # SQLite: database is locked, table ... already exists


def open_storage(
    storage: str, heartbeat_interval: int | None = None, grace_period: int | None = None, attempts: int = 6
) -> JournalStorage | ZooRDBStorage:
    """
    Open ``storage`` as the Zoo would (a path ending in ``.log``: a journal file; anything else: a database URL),
    with clear errors (:class:`StorageError`) instead of SQLAlchemy tracebacks, and a heartbeat for databases.

    Workers that start together on an empty database race to create Optuna's tables (PostgreSQL: ``duplicate
    key value ... pg_type``; SQLite: ``database is locked``, ``table ... already exists``); the losers wait a
    moment and try again, up to ``attempts`` times.

    :param storage: the ``--storage`` value
    :param heartbeat_interval: seconds between heartbeats (``None``: no heartbeat)
    :param grace_period: seconds without a heartbeat after which a running trial is stale (``None``: twice the interval)
    :param attempts: tries at creating the tables
    :return: the storage
    """
    if is_journal(storage):
        Path(storage).parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(optuna.storages.journal.JournalFileBackend(storage))  # type: ignore[attr-defined]
    try:
        url = sqlalchemy.engine.make_url(storage)
    except sqlalchemy.exc.ArgumentError:
        raise StorageError(
            f"--storage {storage!r} is neither a journal file (a path ending in .log) nor a database URL "
            "(dialect[+driver]://user:password@host:port/database, e.g. postgresql://user@db-host/optuna)"
        ) from None
    masked = mask_url(storage)
    try:
        dialect: Any = url.get_dialect()
        (getattr(dialect, "import_dbapi", None) or dialect.dbapi)()  # the driver module (SQLAlchemy 2 / 1.4)
    except sqlalchemy.exc.NoSuchModuleError:
        raise StorageError(
            f"--storage {masked}: SQLAlchemy knows no database {url.drivername!r} "
            "(e.g. postgresql://, mysql+pymysql://, sqlite:///file.db; a journal file must end in .log)"
        ) from None
    except ImportError as error:
        module = error.name or str(error)
        hint = DRIVER_HINTS.get(module.split(".")[0], f"pip install the module {module!r}")
        raise StorageError(
            f"--storage {masked}: the driver for {url.drivername}:// (Python module {module!r}) is not installed. {hint}"
        ) from None
    for attempt in range(attempts):
        try:
            with warnings.catch_warnings():
                # heartbeat_interval is "experimental" in Optuna (since 2.9): we use it on purpose
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return ZooRDBStorage(
                    storage,
                    engine_kwargs=_engine_kwargs(url),
                    heartbeat_interval=heartbeat_interval,
                    grace_period=grace_period,
                )
        except sqlalchemy.exc.DBAPIError as error:
            if attempt + 1 < attempts and _is_creation_race(error) and not error.connection_invalidated:
                time.sleep(random.uniform(0.2, 1.0) * (attempt + 1))
                continue
            reason = str(error.orig).strip().splitlines()[0] if error.orig is not None else str(error)
            if isinstance(error, sqlalchemy.exc.OperationalError) and not _is_creation_race(error):
                raise StorageError(
                    f"--storage {masked}: cannot connect to the database server at {_where(url)}: {reason}"
                ) from None
            raise StorageError(f"--storage {masked}: the database at {_where(url)} failed: {reason}") from None
    raise AssertionError("unreachable")  # pragma: no cover
