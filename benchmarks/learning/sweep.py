"""Hyperparameter sweeps for TRPOPlus: run the variants listed in ``sweeps.yml`` and summarize them.

Usage::

    python -m benchmarks.learning.sweep run pendulum-base pendulum-kl0.03   # named variants, missing seeds only
    python -m benchmarks.learning.sweep run --match halfcheetah-           # every variant whose name contains it
    python -m benchmarks.learning.sweep report                             # -> sweeps/SWEEPS.md
    python -m benchmarks.learning.sweep compare pendulum-gamma0.98-norm pendulum-env8 --seeds 120-139

Each variant in ``sweeps.yml`` names a task, the seeds, an optional step budget and the entries it
changes in the task's ``hyperparams/trpo_plus.yml`` entry (``set:``; values as in the Zoo's files, so
``policy_kwargs`` is a string); ``algo: sb3_contrib_trpo`` runs sb3-contrib's TRPO on the Zoo's ``trpo.yml``
entry instead, for side-by-side checks. Every run is one ``run.py --tag <variant> --set ...`` subprocess with one
torch thread; its record goes to ``data/sweep_runs.csv`` (one row, its ``run`` id
``sweeps/<variant>/<algo>/<env>/seed<k>``) and its learning curve to ``data/curves.csv.gz`` (``store.py``); a
run whose row exists is skipped, so sweeps resume. Tuning uses seeds 100+ so that the benchmark's seeds (0-9
classic control, 0-4 MuJoCo: ``run.seeds_for``) stay out of the tuning. Two ``sweep.py run`` processes may work
through the same variants (one per core): a run in progress is claimed by a file in ``runs/sweeps/`` holding its
process id, and the other process skips it; the two append their rows under a file lock. With ``--commit``,
``sweep.py run`` commits the record and ``sweeps/`` (the report) in batches: after every ``--commit-every`` (10)
finished runs of this process and once when it ends.

``compare REF VARIANT...`` pairs each variant's final returns with the reference's, seed by seed (the same
seed gives the same evaluation start states, whatever the settings), and prints the mean difference, on how
many seeds the variant is ahead, and the paired t statistic.

The report gives, per variant: the final deterministic return (mean ± std across seeds and each seed) and
the mean of the learning curve over all its evaluations (an area-under-the-curve score, less noisy
than the final return and sensitive to learning speed).
"""

from __future__ import annotations

import argparse
import ast
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from benchmarks.learning.report import plot_groups
from benchmarks.learning.run import ALGOS, SWEEPS_DIR, jsonable, parse_overrides, resolve_hyperparams, scratch_dir
from benchmarks.learning.run_queue import Batches, now
from benchmarks.learning.store import CURVES, DATA_DIR, SWEEP_TABLE, Store, run_id

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
SPEC = HERE / "sweeps.yml"
LOGS = HERE / "logs" / "sweeps"
ALGO = "trpo_plus"  # unless a variant names another (``algo:``)
STORE = Store(DATA_DIR, SWEEP_TABLE)
COMMITTED = [f"data/{SWEEP_TABLE}", f"data/{CURVES}", "sweeps"]  # what ``run --commit`` commits


def algo_of(variant: dict[str, Any]) -> str:
    return str(variant.get("algo", ALGO))


def run_name(name: str, variant: dict[str, Any], seed: int) -> str:
    """The run's id in ``data/sweep_runs.csv``: ``sweeps/<variant>/<algo>/<env>/seed<k>``."""
    return run_id(algo_of(variant), variant["env"], seed, name)


def load_spec() -> dict[str, dict[str, Any]]:
    spec = yaml.safe_load(SPEC.read_text()) or {}
    for name, variant in spec.items():
        missing = {"env", "seeds"} - set(variant)
        if missing:
            raise SystemExit(f"sweeps.yml: variant {name!r} lacks {sorted(missing)}")
        if algo_of(variant) not in ALGOS:
            raise SystemExit(f"sweeps.yml: variant {name!r} has algo {algo_of(variant)!r}; expected one of {ALGOS}")
    return spec


def set_args(variant: dict[str, Any]) -> list[str]:
    """The variant's ``set`` as ``run.py --set`` arguments (``key=value``, read back as YAML by the run)."""
    return [f"{key}={value}" for key, value in (variant.get("set") or {}).items()]


def command(name: str, variant: dict[str, Any], seed: int) -> list[str]:
    cmd = [sys.executable, "-m", "benchmarks.learning.run", "--algo", algo_of(variant), "--env", variant["env"]]
    cmd += ["--seed", str(seed)]
    cmd += ["--tag", name]
    if variant.get("n_timesteps"):
        cmd += ["--n-timesteps", str(int(variant["n_timesteps"]))]
    settings = set_args(variant)
    if settings:
        cmd += ["--set", *settings]
    return cmd


def planned_hyperparams(variant: dict[str, Any]) -> dict[str, Any]:
    """The entry a new run of ``variant`` would use: the task's current YAML entry with the variant's ``set``."""
    entry, _ = resolve_hyperparams(algo_of(variant), variant["env"])
    entry.update(parse_overrides(set_args(variant)))  # as the run itself reads its --set
    return dict(jsonable(entry))


def _spelled(node: ast.expr) -> Any:
    """A ``dict(...)`` expression as a dict (nested ones too), literals as values, anything else (``nn.ReLU``)
    as its source text."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict" and not node.args:
        return {kw.arg: _spelled(kw.value) for kw in node.keywords}
    try:
        return ast.literal_eval(node)
    except ValueError:
        return ast.unparse(node)


def comparable(key: str, value: Any) -> Any:
    """A hyperparameter in a form where spellings the Zoo treats alike compare equal: ``normalize`` absent or
    False is no normalization, and True, a dict or the string of one is normalization with those kwargs, less the
    ``gamma`` the Zoo writes into them from the entry's own ``gamma`` (compared as a key of its own);
    ``policy_kwargs`` absent is ``dict()``."""
    if key in ("normalize", "policy_kwargs") and isinstance(value, str):
        try:
            value = _spelled(ast.parse(value, mode="eval").body)
        except SyntaxError:
            return value
    if key == "normalize":
        if value is None or value is False:
            return False
        if value is True:
            return {}
        if isinstance(value, dict):
            return {k: v for k, v in value.items() if k != "gamma"}
    if key == "policy_kwargs" and value is None:
        return {}
    return value


def setting_drift(name: str, variant: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """``{key: (recorded, planned)}`` where the variant's finished runs used other hyperparameters than a new
    run would. A variant's ``set`` is relative to the task's entry, so when the entry changes, a variant that
    does not pin the changed keys would silently run something else on its new seeds. ``n_timesteps`` is left
    out (a variant's budget is passed on the command line, not through the entry); values are compared as
    :func:`comparable` spells them, and reported as written."""
    planned = planned_hyperparams(variant)
    finished = {record["run"]: record for record in STORE.records()}
    for seed in variant["seeds"]:
        record = finished.get(run_name(name, variant, seed))
        if record is not None:
            recorded = record.get("hyperparams", {})
            return {
                key: (recorded.get(key), planned.get(key))
                for key in sorted((set(recorded) | set(planned)) - {"n_timesteps"})
                if comparable(key, recorded.get(key)) != comparable(key, planned.get(key))
            }
    return {}


def claim_path(name: str, variant: dict[str, Any], seed: int) -> Path:
    """Beside the run's scratch folder."""
    return scratch_dir(algo_of(variant), variant["env"], seed, name).with_name(f"seed{seed}.claim")


def claim(name: str, variant: dict[str, Any], seed: int) -> bool:
    """Claim a run for this process; False if a live process holds it (a dead one's claim is taken over)."""
    path = claim_path(name, variant, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            with open(path, "x") as f:
                f.write(str(os.getpid()))
            return True
        except FileExistsError:
            try:
                os.kill(int(path.read_text() or 0), 0)
                return False  # its process is alive
            except (ProcessLookupError, ValueError, OSError):
                path.unlink(missing_ok=True)  # stale: retry once
    return False


def require_known(spec: dict[str, dict[str, Any]], names: list[str]) -> None:
    """Stop, naming the variants that sweeps.yml has, unless it has every one of ``names``."""
    unknown = [n for n in names if n not in spec]
    if unknown:
        raise SystemExit(f"unknown variants {unknown}; sweeps.yml has {sorted(spec)}")


def run(names: list[str], match: str, commit: bool, commit_every: int = 10) -> None:
    spec = load_spec()
    require_known(spec, names)
    chosen = names or [n for n in spec if match and match in n]
    done = STORE.done()
    todo = [(name, seed) for name in chosen for seed in spec[name]["seeds"] if run_name(name, spec[name], seed) not in done]
    for name in dict.fromkeys(name for name, _ in todo):
        drift = setting_drift(name, spec[name])
        if drift:
            changes = ", ".join(f"{key}: {old!r} -> {new!r}" for key, (old, new) in drift.items())
            raise SystemExit(
                f"sweeps.yml: variant {name!r} would run its new seeds with other hyperparameters than its "
                f"finished ones ({changes}); the task's entry has changed since. Pin the old values in its `set`."
            )
    print(f"[{now()}] {len(todo)} sweep runs to do: {todo}", flush=True)
    LOGS.mkdir(parents=True, exist_ok=True)
    child_env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    batches = Batches(commit, commit_every, "sweep", COMMITTED)
    try:
        for name, seed in todo:
            variant = spec[name]
            if not claim(name, variant, seed):
                continue  # running in another process
            if run_name(name, variant, seed) in STORE.done():  # finished by another process meanwhile
                claim_path(name, variant, seed).unlink(missing_ok=True)
                continue
            log = LOGS / f"{name}_seed{seed}.log"
            print(f"[{now()}] start {name} seed{seed}", flush=True)
            t0 = time.perf_counter()
            try:
                with open(log, "w") as f:
                    cmd = command(name, variant, seed)
                    rc = subprocess.call(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT, env=child_env)
            finally:
                claim_path(name, variant, seed).unlink(missing_ok=True)
            print(f"[{now()}] end {name} seed{seed}: rc={rc} in {time.perf_counter() - t0:.0f}s", flush=True)
            if rc == 0:
                report()
                batches.finished(f"{name} seed{seed}")
    finally:
        batches.flush()


def _row(name: str, variant: dict[str, Any], runs: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """A variant's summary from its finished runs (``runs``: the sweep table's records with curves, by id)."""
    finals, cpu, curves = [], [], []
    seeds_done = []
    for seed in variant["seeds"]:
        found = runs.get(run_name(name, variant, seed))
        if found is None:
            continue
        result = found
        seeds_done.append(seed)
        finals.append(result["final_eval"]["mean"])
        cpu.append(result.get("cpu_time_s", float("nan")) / 60)
        curves.append(result["curve"])
    if not finals:
        return None
    return {
        "name": name,
        "env": variant["env"],
        "steps": result["timesteps_done"],
        "set": variant.get("set") or {},
        "algo": algo_of(variant),
        "seeds": seeds_done,
        "finals": finals,
        "final_mean": float(np.mean(finals)),
        "final_std": float(np.std(finals, ddof=1)) if len(finals) > 1 else float("nan"),
        "auc_mean": float(np.mean([np.mean([row["eval_mean"] for row in curve]) for curve in curves])),
        "cpu_min": float(np.mean(cpu)),
        "note": variant.get("note", ""),
        "curves": curves,
    }


def report() -> None:
    spec = load_spec()
    runs = {record["run"]: record for record in STORE.load()}
    rows = [row for name, variant in spec.items() if (row := _row(name, variant, runs)) is not None]
    lines = [
        "# TRPOPlus hyperparameter sweeps",
        "",
        "Generated by `python -m benchmarks.learning.sweep report` from `data/sweep_runs.csv` (variants defined in "
        "`sweeps.yml`; run with `python -m benchmarks.learning.sweep run <variant> ...`). Each run: the Zoo env "
        "stack and this repository's `hyperparams/trpo_plus.yml` entry for the task, with the variant's `set` "
        "entries changed; one torch thread; tuning seeds 100+ (the benchmark's seeds, 0-9 classic control "
        "and 0-4 MuJoCo, are kept out). "
        "final = mean return of 10 deterministic episodes after training (mean ± std across seeds, then each "
        "seed); curve mean = the mean of every learning-curve evaluation (area under the curve / length).",
        "",
    ]
    for env in dict.fromkeys(row["env"] for row in rows):
        lines += [
            f"## {env}",
            "",
            "| variant | steps | changes | seeds | final | each seed | curve mean | CPU min/run | note |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        env_rows = [r for r in rows if r["env"] == env]
        for row in env_rows:
            changes = ", ".join(f"`{k}={v}`" for k, v in row["set"].items()) or "(YAML entry as is)"
            if row["algo"] != ALGO:
                changes = f"**{row['algo']}** (Zoo's trpo.yml entry): {changes}"
            each = ", ".join(f"{x:.0f}" if abs(x) >= 100 else f"{x:.1f}" for x in row["finals"])
            lines.append(
                f"| {row['name']} | {row['steps']:,} | {changes} | {len(row['seeds'])} | "
                f"{row['final_mean']:.1f} ± {row['final_std']:.1f} | {each} | {row['auc_mean']:.1f} | "
                f"{row['cpu_min']:.1f} | {row['note']} |"
            )
        plot = SWEEPS_DIR / "plots" / f"{env}.png"
        plot_groups({r["name"]: r["curves"] for r in env_rows}, f"{env}: TRPOPlus sweeps", plot, {})
        lines += ["", f"![{env}](plots/{plot.name})", ""]
    out = SWEEPS_DIR / "SWEEPS.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text("\n".join(lines))
    print(f"wrote {os.path.relpath(out, REPO)} ({len(rows)} variants)", flush=True)


def parse_seeds(text: str) -> list[int]:
    """``"120-139"`` or ``"100,105,110-112"`` -> a list of seeds."""
    seeds: list[int] = []
    for part in text.split(","):
        low, _, high = part.partition("-")
        seeds += list(range(int(low), int(high or low) + 1))
    return seeds


def paired(reference: dict[int, float], variant: dict[int, float]) -> dict[str, Any]:
    """Paired comparison of two {seed: final return} maps on their common seeds."""
    seeds = sorted(set(reference) & set(variant))
    diffs = np.array([variant[s] - reference[s] for s in seeds])
    n = len(diffs)
    mean = float(diffs.mean()) if n else float("nan")
    std = float(diffs.std(ddof=1)) if n > 1 else 0.0
    t = mean / (std / np.sqrt(n)) if std > 0 else float("nan")
    return {"seeds": seeds, "diffs": diffs, "mean": mean, "ahead": int((diffs > 0).sum()), "t": t}


def compare(reference: str, names: list[str], seeds: list[int] | None) -> None:
    spec = load_spec()
    require_known(spec, [reference, *names])
    runs = {record["run"]: record for record in STORE.load()}

    def finals(name: str) -> dict[int, float]:
        row = _row(name, spec[name], runs) or {"seeds": [], "finals": []}
        by_seed = dict(zip(row["seeds"], row["finals"], strict=True))
        return {s: f for s, f in by_seed.items() if seeds is None or s in seeds}

    ref = finals(reference)
    print(f"reference {reference}: {len(ref)} seeds, mean {np.mean(list(ref.values())):.1f}")
    for name in names:
        result = paired(ref, finals(name))
        n = len(result["seeds"])
        each = ", ".join(f"{s}: {d:+.1f}" for s, d in zip(result["seeds"], result["diffs"], strict=True))
        print(
            f"{name}: {n} paired seeds, mean difference {result['mean']:+.2f}, ahead on {result['ahead']} of {n}, "
            f"paired t {result['t']:.2f}\n    {each}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    run_parser = sub.add_parser("run", help="run the missing seeds of the named variants, then report")
    run_parser.add_argument("names", nargs="*")
    run_parser.add_argument("--match", default="", help="every variant whose name contains this")
    run_parser.add_argument("--commit", action="store_true", help="git commit the record and sweeps/ in batches of runs")
    run_parser.add_argument("--commit-every", type=int, default=10, help="finished runs per commit (and one at the end)")
    sub.add_parser("report", help="write sweeps/SWEEPS.md")
    compare_parser = sub.add_parser("compare", help="pair variants' final returns with a reference's, seed by seed")
    compare_parser.add_argument("reference")
    compare_parser.add_argument("names", nargs="+")
    compare_parser.add_argument("--seeds", type=parse_seeds, default=None, help="e.g. 120-139 (default: all shared)")
    args = parser.parse_args()
    if args.cmd == "run":
        if not args.names and not args.match:
            parser.error("name variants or give --match")
        run(args.names, args.match, args.commit, args.commit_every)
    elif args.cmd == "compare":
        compare(args.reference, args.names, args.seeds)
    else:
        report()


if __name__ == "__main__":
    main()
