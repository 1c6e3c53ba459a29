"""The tidy table: one CSV per question, one row per observation, rows only ever appended.

:func:`append_rows` holds an exclusive ``fcntl.flock`` on ``<table>.lock`` (beside the table, git-ignored) while it
reads the header and writes, so several runs may finish at once; it refuses rows whose columns differ from the
table's header (a renamed or added column needs a migration of the table first, not a silently shifted row).
"""

from __future__ import annotations

import csv
import fcntl
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def header(table: Path) -> list[str] | None:
    """
    The table's columns.

    :param table: path of the CSV
    :return: its header, or ``None`` where the table does not exist yet (or is empty)
    """
    if not table.exists():
        return None
    with open(table, newline="") as handle:
        return next(csv.reader(handle), None)


def lock_path(table: Path) -> Path:
    """The lock file of ``table`` (``runs.csv`` -> ``runs.lock``)."""
    return table.with_suffix(".lock")


def append_rows(table: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """
    Append ``rows`` to ``table`` under an exclusive lock; a new table gets the rows' columns as its header.

    :param table: path of the CSV (its folder must exist)
    :param rows: the rows, each with the same keys in the same order: the table's columns where it exists
    :raises ValueError: a row's columns differ from the table's header or from the first row's
    """
    if not rows:
        return
    columns = list(rows[0])
    for row in rows[1:]:
        if list(row) != columns:
            raise ValueError(f"rows for {table} have different columns: {columns} and {list(row)}")
    with open(lock_path(table), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        existing = header(table)
        if existing is not None and existing != columns:
            raise ValueError(f"{table}'s columns are {existing}, the row's {columns}")
        with open(table, "a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            if existing is None:
                writer.writeheader()
            writer.writerows(rows)


def append_row(table: Path, row: Mapping[str, Any]) -> None:
    """
    Append one row to ``table`` under an exclusive lock (:func:`append_rows`).

    :param table: path of the CSV
    :param row: the row; its keys, in order, must be the table's columns where the table exists
    """
    append_rows(table, [row])
