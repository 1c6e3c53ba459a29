"""torch's thread count for each policy family: ``learn()`` steps per second with one thread against torch's default
(one per core), alternating in one process, for a recurrent (sb3-contrib's default LSTM, CartPoleNoVel-v1 as the
Zoo registers it), a masked (InvalidActionEnvDiscrete) and a CNN policy (84x84 images), on the machine as found.
Appends to ``family_threads.csv``; ``--hog`` runs one CPU-bound process beside the timings (a busy machine).

    python -m benchmarks.speed.family_threads --reps 2
"""

from __future__ import annotations

import argparse
import multiprocessing
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch as th

from benchmarks.common.provenance import provenance
from benchmarks.common.table import append_row

HERE = Path(__file__).resolve().parent
DEFAULT_THREADS = th.get_num_threads()


def _cases() -> dict[str, tuple[Callable[[], Any], int]]:
    import gymnasium as gym
    from sb3_contrib.common.envs import InvalidActionEnvDiscrete
    from stable_baselines3.common.envs import FakeImageEnv

    from sb3_trpo_plus import MaskableTRPOPlus, RecurrentTRPOPlus, TRPOPlus

    def recurrent() -> Any:
        import rl_zoo3.import_envs  # noqa: F401  (registers CartPoleNoVel-v1)

        return RecurrentTRPOPlus("MlpLstmPolicy", gym.make("CartPoleNoVel-v1"), n_steps=256, batch_size=128, seed=0)

    def masked() -> Any:
        return MaskableTRPOPlus("MlpPolicy", InvalidActionEnvDiscrete(dim=20, n_invalid_actions=10), n_steps=512, seed=0)

    def cnn() -> Any:
        env = FakeImageEnv(screen_height=84, screen_width=84, n_channels=4)
        return TRPOPlus("CnnPolicy", env, n_steps=128, batch_size=64, n_critic_updates=2, seed=0)

    return {"recurrent": (recurrent, 512), "masked": (masked, 2048), "cnn": (cnn, 256)}


def _hog(stop: Any) -> None:
    while not stop.is_set():
        sum(i * i for i in range(10_000))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--hog", action="store_true")
    parser.add_argument("--table", type=Path, default=HERE / "family_threads.csv")
    args = parser.parse_args()
    stop = multiprocessing.Event()
    hog = multiprocessing.Process(target=_hog, args=(stop,)) if args.hog else None
    if hog is not None:
        hog.start()
    where = provenance()
    try:
        for family, (make, steps) in _cases().items():
            for rep in range(args.reps):
                for threads in (1, DEFAULT_THREADS):
                    model = make()
                    model.torch_threads = threads
                    start = time.perf_counter()
                    model.learn(steps)
                    seconds = time.perf_counter() - start
                    row = {
                        "family": family,
                        "threads": threads,
                        "default_threads": DEFAULT_THREADS,
                        "rep": rep,
                        "steps": steps,
                        "seconds": round(seconds, 3),
                        "steps_per_s": round(steps / seconds, 1),
                        "hog": args.hog,
                        "code_rev": where.code_rev,
                        "machine": where.machine_summary,
                    }
                    append_row(args.table, row)
                    print(f"{family} threads={threads} rep {rep}: {steps / seconds:.0f} steps/s", flush=True)
    finally:
        if hog is not None:
            stop.set()
            hog.join()


if __name__ == "__main__":
    main()
