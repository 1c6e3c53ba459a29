"""Run the learning benchmark's queue: every (env, seed, algo) whose result is missing, one at a time.

Usage::

    python benchmarks/learning/run_queue.py --algo sb3_contrib_trpo            # everything for one algo (its seeds:
                                                                                # 0-9 classic control, 0-4 MuJoCo)
    python benchmarks/learning/run_queue.py --env HalfCheetah-v5 --seeds 0 1 2  # one task, both algos
    python benchmarks/learning/run_queue.py --dry-run                           # list what would run

(Named ``run_queue.py``, not ``queue.py``: a script's folder comes first on ``sys.path`` and a
``queue.py`` there would shadow the standard library's ``queue`` module.)

Order: classic control first (cheap), then the MuJoCo v5 tasks; within a task, seed by seed with the
algorithms alternating, so that a partial queue gives comparable pairs. Each run is a fresh
``run.py`` subprocess with one torch thread (``OMP_NUM_THREADS=1``, ``torch.set_num_threads(1)``);
its log goes to ``logs/<algo>_<env>_seed<k>.log``. A run whose result JSON exists is skipped, so the
queue can be killed and restarted at any time (an interrupted run restarts from scratch).
With ``--commit``, every finished run is followed by ``report.py`` and a ``git commit`` of
the benchmark's outputs only (``results/``, ``results.csv``, ``RESULTS.md``, ``plots/``), retried while
another process holds the index lock.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys
import time
from pathlib import Path

from run import ALGOS, ENVS, RESULTS_DIR, result_paths, seeds_for

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
LOGS = HERE / "logs"


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


# What a finished run changes (the scripts themselves are committed by hand).
OUTPUTS = ["results", "results.csv", "RESULTS.md", "plots"]


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--algo", nargs="+", choices=ALGOS, default=ALGOS)
    parser.add_argument("--env", nargs="+", default=ENVS, help="tasks, run in the order given")
    parser.add_argument("--seeds", nargs="+", type=int, default=None, help="default: 0-9 classic control, 0-4 MuJoCo")
    parser.add_argument("--dry-run", action="store_true")
    parser.add_argument("--commit", action="store_true", help="report + git commit after each finished run")
    args = parser.parse_args()

    todo = [
        (algo, env, seed)
        for env in args.env
        for seed in (args.seeds if args.seeds is not None else seeds_for(env))
        for algo in args.algo
        if not result_paths(RESULTS_DIR, algo, env, seed)[0].exists()
    ]
    print(f"[{now()}] {len(todo)} runs to do", flush=True)
    for algo, env, seed in todo:
        print(f"  {algo} {env} seed{seed}", flush=True)
    if args.dry_run:
        return

    LOGS.mkdir(exist_ok=True)
    child_env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    for algo, env, seed in todo:
        if result_paths(RESULTS_DIR, algo, env, seed)[0].exists():  # finished meanwhile by someone else
            continue
        log = LOGS / f"{algo}_{env}_seed{seed}.log"
        cmd = [sys.executable, str(HERE / "run.py"), "--algo", algo, "--env", env, "--seed", str(seed)]
        print(f"[{now()}] start {algo} {env} seed{seed} -> {log.relative_to(REPO)}", flush=True)
        t0 = time.perf_counter()
        with open(log, "w") as f:
            rc = subprocess.call(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT, env=child_env)
        print(f"[{now()}] end {algo} {env} seed{seed}: rc={rc} in {time.perf_counter() - t0:.0f}s", flush=True)
        if rc == 0 and args.commit:
            subprocess.call([sys.executable, str(HERE / "report.py")], cwd=REPO, env=child_env)
            commit(f"learning benchmark: {algo} {env} seed{seed}")


if __name__ == "__main__":
    main()
