"""A throwaway PostgreSQL server for tests: ``initdb`` + ``pg_ctl`` on a temporary data directory, 127.0.0.1 only.

PostgreSQL refuses to run as root; as root (CI), the server runs as the ``postgres`` user that Debian's
``postgresql`` package creates (``runuser -u postgres --``). ``.ci/run`` installs that package when the server
binaries are missing. :func:`unavailable` says why no server can be started; tests skip on it, except under
``CI`` (set by ``.ci/run``), where they fail instead.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SERVER_USER = "postgres"


def bin_dir() -> Path | None:
    """Folder holding ``initdb`` and ``pg_ctl``: on PATH, else Debian's ``/usr/lib/postgresql/<version>/bin`` (newest)."""
    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb"):
        return Path(on_path).resolve().parent  # /usr/local/bin/pg_ctl may link to /usr/lib/postgresql/15/bin

    def version(path: Path) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", path.parent.parent.name))

    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=version)
    return found[-1].parent if found and (found[-1].parent / "initdb").exists() else None


def _runs_as_root() -> bool:
    return os.geteuid() == 0


def unavailable() -> str | None:
    """Why a server cannot be started here (``None``: it can)."""
    if bin_dir() is None:
        return "PostgreSQL's server programs (initdb, pg_ctl) are not installed: apt-get install postgresql"
    if _runs_as_root():
        try:
            pwd.getpwnam(SERVER_USER)
        except KeyError:
            return f"running as root, and there is no {SERVER_USER!r} user to run the server as (PostgreSQL refuses root)"
        if shutil.which("runuser") is None:
            return "running as root, and runuser (util-linux) is missing to start the server as another user"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "the driver psycopg is not installed: pip install 'sb3-trpo-plus[distributed]'"
    return None


def require() -> None:
    """Skip the calling test when no server can be started, with the reason; under ``CI``, fail instead."""
    reason = unavailable()
    if reason is None:
        return
    if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        pytest.fail(f"CI is set, so this test may not skip: {reason} (.ci/run installs it)")
    pytest.skip(f"needs a PostgreSQL server: {reason}")


@dataclass
class Server:
    """A running server: its URL for the database ``database``, its data directory, and its postmaster's PID."""

    url: str
    data_dir: Path
    pid: int
    port: int


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def running_server(database: str = "optuna") -> Iterator[Server]:
    """
    Start a server on a temporary data directory (fsync off: a test database), create ``database``, yield the
    :class:`Server`; on exit (also on error) stop it (``pg_ctl stop -m immediate``) and remove the directory.
    """
    programs = bin_dir()
    assert programs is not None, unavailable()
    prefix = ["runuser", "-u", SERVER_USER, "--"] if _runs_as_root() else []
    root = Path(tempfile.mkdtemp(prefix="sb3-trpo-plus-pg-"))
    data_dir = root / "data"
    if _runs_as_root():
        entry = pwd.getpwnam(SERVER_USER)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    port = _free_port()
    options = f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories='' -c fsync=off -c full_page_writes=off"

    def run(*command: str) -> None:
        done = subprocess.run([*prefix, *command], capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}): {done.stdout[-2000:]}{done.stderr[-2000:]}")

    started = False
    try:
        run(str(programs / "initdb"), "-D", str(data_dir), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        run(str(programs / "pg_ctl"), "-D", str(data_dir), "-o", options, "-l", str(root / "server.log"), "-w", "start")
        started = True
        import psycopg

        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres", autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{database}"')
        pid = int((data_dir / "postmaster.pid").read_text().splitlines()[0])
        yield Server(f"postgresql://postgres@127.0.0.1:{port}/{database}", data_dir, pid, port)
    finally:
        if started:
            run(str(programs / "pg_ctl"), "-D", str(data_dir), "-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)
