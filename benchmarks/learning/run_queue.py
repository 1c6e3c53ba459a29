"""Run the learning benchmark's queue: every (env, seed, algo) whose result is missing, one at a time.

Usage::

    python -m benchmarks.learning.run_queue --algo sb3_contrib_trpo            # everything for one algo (its seeds:
                                                                                # 0-9 classic control, 0-4 MuJoCo)
    python -m benchmarks.learning.run_queue --env HalfCheetah-v5 --seeds 0 1 2  # one task, both algos
    python -m benchmarks.learning.run_queue --dry-run                           # list what would run

Order: classic control first (cheap), then the MuJoCo v5 tasks; within a task, seed by seed with the
algorithms alternating, so that a partial queue gives comparable pairs. Each run is a fresh
``run.py`` subprocess with one torch thread (``OMP_NUM_THREADS=1``, ``torch.set_num_threads(1)``);
its log goes to ``logs/<algo>_<env>_seed<k>.log``. Each finished run appends its row to ``data/runs.csv`` and
its curve to ``data/curves.csv.gz`` (``store.py``); a run whose row exists is skipped, so the queue can be killed
and restarted at any time (an interrupted run restarts from scratch).

With ``--commit``, the queue commits in batches: after every ``--commit-every`` (10) finished runs, and once
more when it ends (also when it is interrupted), ``report.py`` runs and a ``git commit`` takes the benchmark's
record and outputs only (``data/runs.csv``, ``data/curves.csv.gz``, ``results.csv``, ``RESULTS.md``, ``plots/``),
retried while another process holds the index lock. A commit thus holds a batch of runs, not one.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.learning.run import ALGOS, ENVS, seeds_for
from benchmarks.learning.store import BENCHMARK_TABLE, CURVES, DATA_DIR, Store, run_id

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
LOGS = HERE / "logs"


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


# What a finished run changes (the scripts themselves are committed by hand).
OUTPUTS = [f"data/{BENCHMARK_TABLE}", f"data/{CURVES}", "results.csv", "RESULTS.md", "plots"]


def commit(message: str, paths: list[str] | None = None, attempts: int = 30) -> None:
    """Commit the benchmark's outputs only (``paths`` under benchmarks/learning, default ``OUTPUTS``),
    retrying while the index is locked by someone else."""
    wanted = paths or OUTPUTS
    for _ in range(attempts):
        existing = [str(Path("benchmarks/learning") / p) for p in wanted if (HERE / p).exists()]
        add = subprocess.run(["git", "add", "--", *existing], cwd=REPO, capture_output=True, text=True)
        if add.returncode == 0:
            done = subprocess.run(
                ["git", "commit", "-q", "-m", message, "--", *existing],
                cwd=REPO,
                capture_output=True,
                text=True,
            )
            if done.returncode == 0 or "nothing to commit" in done.stdout + done.stderr:
                print(f"[{now()}] committed: {message}", flush=True)
                return
            err = done.stdout + done.stderr
        else:
            err = add.stderr
        if "index.lock" not in err:
            print(f"[{now()}] commit failed: {err.strip()}", flush=True)
            return
        time.sleep(10)
    print(f"[{now()}] commit gave up (index locked)", flush=True)


class Batches:
    """Commits finished runs in batches: :meth:`finished` after each run, :meth:`flush` at the end. Before each
    commit, ``before`` (e.g. the report) runs; ``every`` runs make a batch; ``enabled`` False: never commits."""

    def __init__(
        self, enabled: bool, every: int, message: str, paths: list[str] | None, before: Callable[[], None] | None = None
    ) -> None:
        if every < 1:
            raise SystemExit(f"--commit-every must be at least 1, got {every}")
        self.enabled, self.every, self.message, self.paths, self.before = enabled, every, message, paths, before
        self.pending: list[str] = []

    def finished(self, name: str) -> None:
        self.pending.append(name)
        if len(self.pending) >= self.every:
            self.flush()

    def flush(self) -> None:
        if not self.enabled or not self.pending:
            return
        if self.before is not None:
            self.before()
        names = self.pending if len(self.pending) <= 3 else [*self.pending[:2], "...", self.pending[-1]]
        commit(f"{self.message}: {len(self.pending)} runs ({', '.join(names)})", paths=self.paths)
        self.pending = []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--algo", nargs="+", choices=ALGOS, default=ALGOS)
    parser.add_argument("--env", nargs="+", default=ENVS, help="tasks, run in the order given")
    parser.add_argument("--seeds", nargs="+", type=int, default=None, help="default: 0-9 classic control, 0-4 MuJoCo")
    parser.add_argument("--dry-run", action="store_true")
    parser.add_argument("--commit", action="store_true", help="report + git commit, in batches of --commit-every runs")
    parser.add_argument("--commit-every", type=int, default=10, help="finished runs per commit (and one at the end)")
    args = parser.parse_args()

    store = Store(DATA_DIR, BENCHMARK_TABLE)
    done = store.done()
    todo = [
        (algo, env, seed)
        for env in args.env
        for seed in (args.seeds if args.seeds is not None else seeds_for(env))
        for algo in args.algo
        if run_id(algo, env, seed) not in done
    ]
    print(f"[{now()}] {len(todo)} runs to do", flush=True)
    for algo, env, seed in todo:
        print(f"  {algo} {env} seed{seed}", flush=True)
    if args.dry_run:
        return

    LOGS.mkdir(exist_ok=True)
    child_env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

    def report() -> None:
        subprocess.call([sys.executable, "-m", "benchmarks.learning.report"], cwd=REPO, env=child_env)

    batches = Batches(args.commit, args.commit_every, "learning benchmark", None, report)
    try:
        for algo, env, seed in todo:
            if run_id(algo, env, seed) in store.done():  # finished meanwhile by someone else
                continue
            log = LOGS / f"{algo}_{env}_seed{seed}.log"
            cmd = [sys.executable, "-m", "benchmarks.learning.run", "--algo", algo, "--env", env, "--seed", str(seed)]
            print(f"[{now()}] start {algo} {env} seed{seed} -> {log.relative_to(REPO)}", flush=True)
            t0 = time.perf_counter()
            with open(log, "w") as f:
                rc = subprocess.call(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT, env=child_env)
            print(f"[{now()}] end {algo} {env} seed{seed}: rc={rc} in {time.perf_counter() - t0:.0f}s", flush=True)
            if rc == 0:
                batches.finished(f"{algo} {env} seed{seed}")
    finally:
        batches.flush()


if __name__ == "__main__":
    main()
