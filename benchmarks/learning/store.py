"""The learning benchmark's record: one tidy CSV of runs per table and one gzipped CSV of learning curves.

Files (under ``data/``)::

    runs.csv         the benchmark's runs (``run.py`` without ``--tag``; ``report.py`` reads it)
    sweep_runs.csv   the sweeps' runs (``run.py --tag <variant>``; ``sweep.py`` reads it)
    curves.csv.gz    every run's learning curve, long format: one row per (run, evaluation)

A run is one row of its table, named by its ``run`` column (``results/<algo>/<env>/seed<k>`` for a benchmark
run, ``sweeps/<variant>/<algo>/<env>/seed<k>`` for a sweep run: the paths its JSON had before the record was
consolidated). Scalars are columns of their own; the nested entries (the hyperparameters, the ``--set``
overrides, the ``VecNormalize`` kwargs, the versions, the final evaluation's returns and lengths) are compact
JSON. An empty cell is a field the run did not record (e.g. ``cpu_time_s`` before it was added).
:func:`row_to_record` turns a row back into the dict ``run.py`` builds, and :func:`record_to_row` is its
inverse, so a run's record reads back exactly as it was written (floats by their ``repr``).

Appending (:meth:`Store.append`) holds an exclusive ``fcntl.flock`` on ``data/.lock`` while it writes the
run's curve (a new gzip member at the end of ``curves.csv.gz``: gzip readers read concatenated members as one
stream) and then its row (last: the row is the run's "done" marker), so two processes may append at once;
reads hold a shared lock, so they never see half an append. A curve left without its row (an append cut short)
is replaced by the run's next append. ``--force`` reruns go through :meth:`Store.remove`, which rewrites both
files atomically without the run.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import gzip
import io
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DATA_DIR = HERE / "data"
SMOKE_DIR = HERE / "results_smoke"  # runs with a shortened budget (git-ignored)
BENCHMARK_TABLE = "runs.csv"
SWEEP_TABLE = "sweep_runs.csv"
CURVES = "curves.csv.gz"

CURVE_FIELDS = [
    "timesteps",
    "eval_mean",
    "eval_std",
    "eval_min",
    "eval_max",
    "eval_mean_length",
    "train_ep_return_mean",
    "train_time_s",
]

# (column, type, where it lives in the record). Types: str, int, float, bool, json (compact JSON).
# Where: a key of the record, or "outer.inner" for a key of a nested dict.
COLUMNS: list[tuple[str, str, str]] = [
    ("run", "str", ""),
    ("variant", "str", ""),
    ("algo", "str", "algo"),
    ("env", "str", "env"),
    ("seed", "int", "seed"),
    ("tag", "str", "tag"),
    ("final_mean", "float", "final_eval.mean"),
    ("final_std", "float", "final_eval.std"),
    ("final_episodes", "int", "final_eval.n_episodes"),
    ("final_deterministic", "bool", "final_eval.deterministic"),
    ("final_returns", "json", "final_eval.returns"),
    ("final_lengths", "json", "final_eval.lengths"),
    ("train_ep_return_mean_last100", "float", "train_ep_return_mean_last100"),
    ("n_timesteps", "int", "n_timesteps"),
    ("timesteps_done", "int", "timesteps_done"),
    ("n_envs", "int", "n_envs"),
    ("eval_freq", "int", "eval_freq"),
    ("curve_eval_episodes", "int", "curve_eval_episodes"),
    ("n_eval_envs", "int", "n_eval_envs"),
    ("wall_time_s", "float", "wall_time_s"),
    ("train_time_s", "float", "train_time_s"),
    ("eval_time_s", "float", "eval_time_s"),
    ("cpu_time_s", "float", "cpu_time_s"),
    ("started_utc", "str", "started_utc"),
    ("finished_utc", "str", "finished_utc"),
    ("load_avg_1min_start_end", "json", "load_avg_1min_start_end"),
    ("hyperparams_source", "str", "hyperparams_source"),
    ("overrides", "json", "overrides"),
    ("hyperparams", "json", "hyperparams"),
    ("normalize_kwargs", "json", "normalize_kwargs"),
    ("algo_class", "str", "algo_class"),
    ("torch_threads", "int", "torch_threads"),
    ("git_commit", "str", "git.commit"),
    ("sb3_trpo_plus_dirty", "bool", "git.sb3_trpo_plus_dirty"),
    ("git_commit_at_end", "str", "git_at_end.commit"),
    ("sb3_trpo_plus_dirty_at_end", "bool", "git_at_end.sb3_trpo_plus_dirty"),
    ("versions", "json", "versions"),
    ("platform", "str", "machine.platform"),
    ("cpu", "str", "machine.cpu"),
    ("n_cpus", "int", "machine.n_cpus"),
    ("command", "str", "command"),
]
RUN_FIELDS = [name for name, _, _ in COLUMNS]
# The record's keys in the order run.py writes them (nested dicts: their keys in order too).
RECORD_ORDER = [
    "algo",
    "algo_class",
    "env",
    "seed",
    "final_eval",
    "train_ep_return_mean_last100",
    "n_timesteps",
    "timesteps_done",
    "n_envs",
    "eval_freq",
    "curve_eval_episodes",
    "n_eval_envs",
    "wall_time_s",
    "train_time_s",
    "eval_time_s",
    "cpu_time_s",
    "started_utc",
    "load_avg_1min_start_end",
    "finished_utc",
    "hyperparams_source",
    "overrides",
    "tag",
    "hyperparams",
    "normalize_kwargs",
    "torch_threads",
    "versions",
    "git",
    "git_at_end",
    "machine",
    "command",
]
NESTED_ORDER = {
    "final_eval": ["n_episodes", "deterministic", "mean", "std", "returns", "lengths"],
    "git": ["commit", "sb3_trpo_plus_dirty"],
    "git_at_end": ["commit", "sb3_trpo_plus_dirty"],
    "machine": ["platform", "cpu", "n_cpus"],
}
# Fields every run has, where an empty cell means the value None (not "not recorded").
NULLABLE = {"train_ep_return_mean_last100", "normalize_kwargs"}


def run_id(algo: str, env: str, seed: int, tag: str = "") -> str:
    """A run's name: the path (without ``.json``) its record had under ``benchmarks/learning`` before consolidation."""
    return f"sweeps/{tag}/{algo}/{env}/seed{seed}" if tag else f"results/{algo}/{env}/seed{seed}"


def _encode(kind: str, value: Any) -> str:
    if value is None:
        return ""
    if kind == "json":
        return json.dumps(value, separators=(",", ":"))
    if kind == "bool":
        return "true" if value else "false"
    if kind == "float":
        return repr(float(value))
    return str(value)


def _curve_cell(value: Any) -> str:
    """A curve value as ``run.py`` wrote it into its CSV: an int as such, a float by its ``repr``."""
    return str(value) if isinstance(value, int) else repr(float(value))


def _decode(kind: str, text: str) -> Any:
    if kind == "json":
        return json.loads(text)
    if kind == "bool":
        if text not in ("true", "false"):
            raise ValueError(f"expected true or false, got {text!r}")
        return text == "true"
    if kind == "float":
        return float(text)
    if kind == "int":
        return int(text)
    return text


def record_to_row(record: dict[str, Any], variant: str = "") -> dict[str, str]:
    """A run's record (the dict ``run.py`` builds; its ``curve`` and ``curve_csv``, if any, are left out) as a row
    of the sweep ``variant``'s runs (``""``: a benchmark run). The variant names the run; the record's own ``tag``
    is kept as recorded (a few runs were filed under another variant than the one they ran as)."""
    row = {"run": run_id(record["algo"], record["env"], record["seed"], variant), "variant": variant}
    for name, kind, where in COLUMNS[2:]:
        outer, _, inner = where.partition(".")
        holder = record.get(outer, {}) if inner else record
        key = inner or outer
        row[name] = _encode(kind, holder[key]) if isinstance(holder, dict) and key in holder else ""
    return row


def row_to_record(row: dict[str, str]) -> dict[str, Any]:
    """A row of a runs table as the run's record, its keys in ``run.py``'s order; empty cells are left out
    (or None for the fields in ``NULLABLE``)."""
    if list(row) != RUN_FIELDS:
        raise ValueError(f"a runs table's columns must be {RUN_FIELDS}, got {list(row)}")
    flat: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for name, kind, where in COLUMNS[2:]:
        text = row[name]
        outer, _, inner = where.partition(".")
        if text == "" and (inner or outer not in NULLABLE):
            if kind == "str" and outer == "tag":
                flat[outer] = ""
            continue
        value = None if text == "" else _decode(kind, text)
        if inner:
            nested.setdefault(outer, {})[inner] = value
        else:
            flat[outer] = value
    for outer, values in nested.items():
        flat[outer] = {key: values[key] for key in NESTED_ORDER[outer] if key in values}
    return {key: flat[key] for key in RECORD_ORDER if key in flat}


@contextlib.contextmanager
def _locked(path: Path, exclusive: bool) -> Iterator[None]:
    """``fcntl.flock`` on ``path`` (created if need be): exclusive to write, shared to read. Where the folder is
    not writable (a read-only checkout: nobody can be appending), reads go on without a lock."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a")  # noqa: SIM115  (closed below)
    except OSError:
        if exclusive:
            raise
        yield
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _append_bytes(path: Path, data: bytes) -> None:
    with open(path, "ab") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _replace_bytes(path: Path, data: bytes) -> None:
    """Write ``path`` anew, atomically (a reader sees the old file or the new one)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _csv_text(fields: list[str], rows: list[dict[str, Any]], header: bool) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    if header:
        writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _gzip(text: str) -> bytes:
    """One gzip member, without a timestamp (the same rows give the same bytes)."""
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as f:
        f.write(text.encode())
    return buffer.getvalue()


def _read_csv(path: Path, expected: list[str], compressed: bool = False) -> list[dict[str, str]]:
    """The rows of a table written by this module (absent or empty: none); stops if its columns are not ``expected``."""
    if not path.exists() or path.stat().st_size == 0:
        return []
    with gzip.open(path, "rt", newline="") if compressed else open(path, newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames != expected:
            raise ValueError(f"{path}: columns {reader.fieldnames}, expected {expected}")
        return list(reader)


CURVE_COLUMNS = ["run", *CURVE_FIELDS]


class Store:
    """A folder holding the two runs tables and the curves file; ``table`` is the one this store's runs go to
    (``BENCHMARK_TABLE`` or ``SWEEP_TABLE``). Reads take a shared lock, writes an exclusive one."""

    def __init__(self, folder: Path = DATA_DIR, table: str = BENCHMARK_TABLE) -> None:
        if table not in (BENCHMARK_TABLE, SWEEP_TABLE):
            raise ValueError(f"table must be {BENCHMARK_TABLE!r} or {SWEEP_TABLE!r}, got {table!r}")
        self.folder = folder
        self.table = table

    @property
    def runs_path(self) -> Path:
        return self.folder / self.table

    @property
    def curves_path(self) -> Path:
        return self.folder / CURVES

    @property
    def lock_path(self) -> Path:
        return self.folder / ".lock"

    def locked(self) -> contextlib.AbstractContextManager[None]:
        """The store's exclusive lock: hold it (and pass ``lock=False``) to check, remove and append as one step."""
        return _locked(self.lock_path, exclusive=True)

    def _shared(self, lock: bool) -> contextlib.AbstractContextManager[None]:
        return _locked(self.lock_path, exclusive=False) if lock else contextlib.nullcontext()

    def rows(self, lock: bool = True) -> list[dict[str, str]]:
        """The table's rows as written (strings), in the order they were appended."""
        with self._shared(lock):
            return _read_csv(self.runs_path, RUN_FIELDS)

    def records(self) -> list[dict[str, Any]]:
        """Every run of the table as its record (without curves), with its ``run`` id and ``variant``."""
        return [{"run": row["run"], "variant": row["variant"], **row_to_record(row)} for row in self.rows()]

    def done(self, lock: bool = True) -> set[str]:
        """The ids of the table's runs."""
        return {row["run"] for row in self.rows(lock)}

    def curves(self, ids: set[str] | None = None, lock: bool = True) -> dict[str, list[dict[str, float]]]:
        """The learning curves (rows of floats, ``CURVE_FIELDS``) of the runs ``ids`` (default: every run)."""
        out: dict[str, list[dict[str, float]]] = {}
        with self._shared(lock):
            rows = _read_csv(self.curves_path, CURVE_COLUMNS, compressed=True)
        for row in rows:
            name = row.pop("run")
            if ids is None or name in ids:
                out.setdefault(name, []).append({k: float(v) for k, v in row.items()})
        return out

    def load(self) -> list[dict[str, Any]]:
        """Every run of the table as its record, with its learning curve under ``"curve"``."""
        with self._shared(True):
            rows = self.rows(lock=False)
            curves = self.curves({row["run"] for row in rows}, lock=False)
        records = [{"run": row["run"], "variant": row["variant"], **row_to_record(row)} for row in rows]
        for record in records:
            if record["run"] not in curves:
                raise ValueError(f"{self.curves_path} has no learning curve for {record['run']}")
            record["curve"] = curves[record["run"]]
        return records

    def remove(self, ids: set[str], lock: bool = True) -> None:
        """Drop the runs ``ids`` (their rows and their curves), e.g. to rerun them."""
        with self.locked() if lock else contextlib.nullcontext():
            rows = self.rows(lock=False)
            if any(row["run"] in ids for row in rows):
                kept = [row for row in rows if row["run"] not in ids]
                _replace_bytes(self.runs_path, _csv_text(RUN_FIELDS, kept, header=True).encode())
            self._drop_curves(ids)

    def _drop_curves(self, ids: set[str]) -> None:
        curves = _read_csv(self.curves_path, CURVE_COLUMNS, compressed=True)
        if any(row["run"] in ids for row in curves):
            kept = [row for row in curves if row["run"] not in ids]
            _replace_bytes(self.curves_path, _gzip(_csv_text(CURVE_COLUMNS, kept, header=True)))

    def append(self, record: dict[str, Any], curve: list[dict[str, Any]], variant: str = "", lock: bool = True) -> str:
        """Append a finished run of the sweep ``variant`` (``""``: a benchmark run): its curve to ``curves.csv.gz``
        (as a gzip member of its own), then its row to the table (its "done" marker). Returns the run's id.
        A curve left without a row by an interrupted append is replaced. ``lock=False`` when the caller holds
        :meth:`locked` already."""
        row = record_to_row(record, variant)
        curve_rows = [{"run": row["run"], **{k: _curve_cell(point[k]) for k in CURVE_FIELDS}} for point in curve]
        with self.locked() if lock else contextlib.nullcontext():
            if row["run"] in self.done(lock=False):
                raise ValueError(f"{self.runs_path} has {row['run']} already (rerun with --force to replace it)")
            self._drop_curves({row["run"]})
            header = not self.curves_path.exists() or self.curves_path.stat().st_size == 0
            _append_bytes(self.curves_path, _gzip(_csv_text(CURVE_COLUMNS, curve_rows, header)))
            header = not self.runs_path.exists() or self.runs_path.stat().st_size == 0
            _append_bytes(self.runs_path, _csv_text(RUN_FIELDS, [row], header).encode())
        return row["run"]


def find_run(name: str, folder: Path = DATA_DIR) -> dict[str, Any]:
    """One run of either table, with its curve under ``"curve"``, by its id (``results/<algo>/<env>/seed<k>`` or
    ``sweeps/<variant>/<algo>/<env>/seed<k>``); the path its JSON had (``benchmarks/learning/results/...json``)
    names it too."""
    name = name.removesuffix(".json")
    for prefix in ("results/", "sweeps/"):
        if f"/{prefix}" in name and not name.startswith(prefix):
            name = prefix + name.split(f"/{prefix}", 1)[1]
    store = Store(folder, SWEEP_TABLE if name.startswith("sweeps/") else BENCHMARK_TABLE)
    for record in store.records():
        if record["run"] == name:
            record["curve"] = store.curves({name}).get(name, [])
            return record
    raise SystemExit(f"no run {name!r} in {store.runs_path}")
