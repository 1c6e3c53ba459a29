"""Inference latency of an exported policy: ONNX Runtime against ``model.predict``, side by side in one process.

Two policies: the HalfCheetah-v5 MLP (TRPOPlus's defaults, observation statistics in the policy) and a CNN on
84x84x4 uint8 images with 6 discrete actions (NatureCNN, an Atari-like input). For one observation and a batch of
256, each runtime is timed in alternation (``--reps`` rounds of ``--calls`` calls each; one torch thread and one
ONNX Runtime thread). One row per round is appended to ``latency.csv``; the summary is the median per call.

    python -m benchmarks.export.latency            # append rounds, print and write RESULTS.md
    python -m benchmarks.export.latency --report   # only the summary of latency.csv
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common.provenance import provenance
from benchmarks.common.table import append_rows

HERE = Path(__file__).resolve().parent
TABLE = HERE / "latency.csv"


def policies() -> dict[str, Any]:
    import gymnasium as gym
    from stable_baselines3.common.envs import FakeImageEnv

    from sb3_trpo_plus import TRPOPlus

    return {
        "HalfCheetah-v5 MLP": TRPOPlus("MlpPolicy", gym.make("HalfCheetah-v5"), seed=0),
        "84x84x4 CNN": TRPOPlus("CnnPolicy", FakeImageEnv(screen_height=84, screen_width=84, n_channels=4), seed=0),
    }


def measure(reps: int, calls: int) -> list[dict[str, Any]]:
    import numpy as np
    import onnxruntime as ort
    import torch as th

    from sb3_trpo_plus import export_onnx

    th.set_num_threads(1)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    run_id = time.strftime("%Y%m%dT%H%M%S")
    machine = provenance().machine_summary
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name, model in policies().items():
            path = Path(folder) / "policy.onnx"
            print(export_onnx(model, path, n_sampled=64))
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            space = model.policy.observation_space
            space.seed(0)
            for batch in (1, 256):
                obs = np.stack([space.sample() for _ in range(batch)])
                runtimes = {
                    "predict": lambda obs=obs, model=model: model.predict(obs, deterministic=True),
                    "onnxruntime": lambda obs=obs, session=session: session.run(None, {"obs": obs}),
                }
                count = max(calls // batch, 20) if batch > 1 else calls
                for call in runtimes.values():  # warm up
                    for _ in range(10):
                        call()
                for round_ in range(reps):
                    for runtime, call in runtimes.items():
                        start = time.perf_counter()
                        for _ in range(count):
                            call()
                        elapsed = time.perf_counter() - start
                        rows.append(
                            {
                                "run": run_id,
                                "policy": name,
                                "batch": batch,
                                "runtime": runtime,
                                "round": round_,
                                "calls": count,
                                "us_per_call": round(1e6 * elapsed / count, 2),
                                "machine": machine,
                                "load_1min": round(os.getloadavg()[0], 2),
                            }
                        )
    return rows


def report(table: Path = TABLE) -> str:
    """The summary of ``table`` as markdown (``RESULTS.md``)."""
    import pandas as pd

    data = pd.read_csv(table)
    lines = [
        "# ONNX Runtime against `model.predict`: latency per call",
        "",
        "Written by `latency.py` from `latency.csv` (median over each run's rounds; one torch thread, one ONNX Runtime "
        "thread; `load` is the machine's 1-minute load average during the run).",
        "",
        "| run | policy | batch | `predict` (µs) | ONNX Runtime (µs) | speed-up | load |",
        "|---|---|---|---|---|---|---|",
    ]
    for (run, policy, batch), group in data.groupby(["run", "policy", "batch"], sort=False):
        medians = group.groupby("runtime").us_per_call.median()
        lines.append(
            f"| {run} | {policy} | {batch} | {medians['predict']:.0f} | {medians['onnxruntime']:.0f} | "
            f"{medians['predict'] / medians['onnxruntime']:.1f}x | {group.load_1min.median():.1f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--report", action="store_true")
    parser.add_argument("--table", type=Path, default=TABLE, help="the table (RESULTS.md is written beside it)")
    args = parser.parse_args()
    if not args.report:
        append_rows(args.table, measure(args.reps, args.calls))
    text = report(args.table)
    (args.table.parent / "RESULTS.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
