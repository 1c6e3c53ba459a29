"""The critic at any reward scale: the critic's explained variance (of each rollout's returns, by the values
predicted when it was collected), averaged over the second half of ``--updates`` updates, on Pendulum-v1 with its
rewards multiplied by 0.01, 1 or 1000, with the critic on the PopArt scale (``normalize_values=True``) and on the
returns' own scale (``False``), the default learning rate. Appends to ``reward_scale.csv``.

    python -m benchmarks.defaults.reward_scale --seeds 100 101 --updates 16
"""

from __future__ import annotations

import argparse
from pathlib import Path

import gymnasium as gym
import torch as th
from stable_baselines3.common.callbacks import BaseCallback

from benchmarks.common.table import append_row
from sb3_trpo_plus import TRPOPlus

HERE = Path(__file__).resolve().parent


class ScaledReward(gym.Wrapper):
    """The env's rewards times ``scale``."""

    def __init__(self, env: gym.Env, scale: float):
        super().__init__(env)
        self.scale = scale

    def step(self, action):  # type: ignore[no-untyped-def]
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, self.scale * float(reward), terminated, truncated, info


class ExplainedVariances(BaseCallback):
    """Collects ``train/explained_variance`` after each update."""

    def __init__(self) -> None:
        super().__init__()
        self.values: list[float] = []

    def _on_rollout_start(self) -> None:
        if "train/explained_variance" in self.model.logger.name_to_value:
            self.values.append(float(self.model.logger.name_to_value["train/explained_variance"]))

    def _on_training_end(self) -> None:
        self._on_rollout_start()

    def _on_step(self) -> bool:
        return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[100, 101])
    parser.add_argument("--updates", type=int, default=16)
    parser.add_argument("--out", type=Path, default=HERE / "reward_scale.csv")
    args = parser.parse_args()
    th.set_num_threads(1)
    for seed in args.seeds:
        for scale in (0.01, 1.0, 1000.0):
            for normalize_values in (True, False):
                env = ScaledReward(gym.make("Pendulum-v1"), scale)
                model = TRPOPlus("MlpPolicy", env, n_steps=512, seed=seed, normalize_values=normalize_values)
                log = ExplainedVariances()
                model.learn(args.updates * 512, callback=log)
                second_half = log.values[args.updates // 2 :]
                explained = sum(second_half) / len(second_half)
                row = {
                    "env": "Pendulum-v1",
                    "reward_scale": scale,
                    "normalize_values": normalize_values,
                    "seed": seed,
                    "updates": args.updates,
                    "explained_variance_2nd_half": round(explained, 4),
                }
                append_row(args.out, row)
                print(f"seed {seed} scale {scale} normalize_values={normalize_values}: {explained:.3f}", flush=True)


if __name__ == "__main__":
    main()
