"""Does TRPOPlus make sb3-contrib's update all along a training run, not only on the first rollout?

Trains TRPOPlus (the driver) with the RL Zoo's TRPO settings for a MuJoCo task, converted to our units
(``target_kl`` and ``cg_damping`` times the action dimensions: the same update by construction), and at every
update hands a copy of the driver's state (policy weights, the critic's Adam state, the rollout buffer) to an
``sb3_contrib.TRPO`` "shadow" that runs its own ``train()`` on it. Per update it records how the two actor
steps compare (cosine, norm ratio), the KL each reached (sb3-contrib's converted to the joint KL), line-search
outcomes, and each critic's loss on the whole batch after its regression. The shadow's result is thrown away:
the run follows TRPOPlus only.

Usage::

    python -m benchmarks.learning.shadow_parity --env Hopper-v5 --steps 200000 --seed 0 --out shadow.csv
    # the shipped Ant-v5 entry's settings (gSDE, gamma 0.98, a 256x256 actor, no contact forces)
    python -m benchmarks.learning.shadow_parity --env Ant-v5 --steps 100000 --drop-contact-forces --out ant.csv \
        --set gamma=0.98 use_sde=true sde_sample_freq=4 \
        "policy_kwargs=dict(log_std_init=-4, net_arch=dict(pi=[256, 256], vf=[64, 64]))"

The Zoo's TRPO MuJoCo entry (2 envs x 1024 steps, batch 128, 25 CG steps, 20 critic epochs at 1e-3,
gamma 0.99, GAE 0.95, VecNormalize) is written out below rather than read through the Zoo, to keep this
a self-contained check of the update; ``--set`` changes entries of it (a ``policy_kwargs`` string is
evaluated as the Zoo does, with ``nn`` in scope) and ``--drop-contact-forces`` wraps each env in
``sb3_trpo_plus.wrappers.DropContactForces``.
"""

from __future__ import annotations

import argparse
import copy
import csv
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
from sb3_contrib import TRPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import configure
from stable_baselines3.common.vec_env import VecNormalize
from torch.nn.utils import parameters_to_vector

from benchmarks.learning.run import parse_overrides
from sb3_trpo_plus import TRPOPlus
from sb3_trpo_plus.wrappers import DropContactForces

ZOO_MUJOCO: dict[str, Any] = {
    "n_steps": 1024,
    "batch_size": 128,
    "gamma": 0.99,
    "gae_lambda": 0.95,
    "sub_sampling_factor": 1,
    "cg_max_steps": 25,
    "n_critic_updates": 20,
    "learning_rate": 1e-3,
}


def actor_vector(model: Any) -> th.Tensor:
    """sb3-contrib's own choice of actor parameters (every parameter without "value" in its name)."""
    return parameters_to_vector([p for n, p in model.policy.named_parameters() if "value" not in n]).detach().clone()


def critic_mse(model: Any, buffer: Any) -> float:
    """Mean squared error of the model's value function on the buffer's returns."""
    with th.no_grad():
        obs = th.as_tensor(buffer.observations.reshape(-1, *buffer.obs_shape), device=model.device)
        values = model.policy.predict_values(obs).flatten()
        returns = th.as_tensor(buffer.returns.flatten(), device=model.device)
        return float(((values - returns) ** 2).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default="Hopper-v5")
    parser.add_argument("--steps", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kl", type=float, default=0.01, help="sb3-contrib's target_kl (per action dimension)")
    parser.add_argument("--out", type=Path, required=True, help="CSV, one row per update")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="change entries of the settings")
    parser.add_argument("--drop-contact-forces", action="store_true", help="wrap each env in DropContactForces")
    args = parser.parse_args()
    th.set_num_threads(1)

    settings = {**ZOO_MUJOCO, **parse_overrides(args.set)}
    if isinstance(settings.get("policy_kwargs"), str):
        settings["policy_kwargs"] = eval(settings["policy_kwargs"], {"dict": dict, "nn": th.nn})  # as the Zoo does
    wrapper = DropContactForces if args.drop_contact_forces else None
    env = VecNormalize(make_vec_env(args.env, n_envs=2, seed=args.seed, wrapper_class=wrapper), gamma=settings["gamma"])
    assert env.action_space.shape is not None  # a Box: MuJoCo tasks only
    dims = int(np.prod(env.action_space.shape))
    shadow = TRPO("MlpPolicy", env, target_kl=args.kl, cg_damping=0.1, seed=args.seed, **settings)
    shadow.set_logger(configure(None, []))
    rows: list[dict[str, float]] = []

    class Driver(TRPOPlus):
        def train(self) -> None:
            shadow.policy.load_state_dict(self.policy.state_dict())
            # a deep copy: load_state_dict keeps the very tensors it is given, and the shadow's Adam would
            # then update the driver's moments and step counts in place before the driver's own critic step
            shadow.policy.optimizer.load_state_dict(copy.deepcopy(self.policy.optimizer.state_dict()))
            shadow.rollout_buffer = copy.deepcopy(self.rollout_buffer)
            shadow._current_progress_remaining = self._current_progress_remaining
            buffer = copy.deepcopy(self.rollout_buffer)
            start = actor_vector(self)
            shadow.train()
            super().train()
            ours, theirs = actor_vector(self) - start, actor_vector(shadow) - start
            norms = float(ours.norm()), float(theirs.norm())
            log, their_log = self.logger.name_to_value, shadow.logger.name_to_value
            rows.append(
                {
                    "timesteps": self.num_timesteps,
                    "cosine": float(ours @ theirs) / (norms[0] * norms[1]) if min(norms) > 0 else math.nan,
                    "norm_ratio": norms[0] / norms[1] if norms[1] > 0 else math.nan,
                    "kl_ours": log["train/kl"],
                    "kl_theirs_joint": their_log["train/kl_divergence_loss"] * dims,
                    "ls_ours": log["train/is_line_search_success"],
                    "ls_theirs": their_log["train/is_line_search_success"],
                    "ls_steps_ours": log["train/line_search_steps"],
                    "cg_iterations": log["train/cg_iterations"],
                    "critic_mse_ours": critic_mse(self, buffer),
                    "critic_mse_theirs": critic_mse(shadow, buffer),
                    "std": log["train/std"],
                }
            )
            if len(rows) % 10 == 0:
                recent = rows[-10:]
                print(
                    f"{self.num_timesteps:>8} cos {np.mean([r['cosine'] for r in recent]):.4f} "
                    f"norm {np.mean([r['norm_ratio'] for r in recent]):.3f} "
                    f"kl {np.mean([r['kl_ours'] for r in recent]):.4f}/{np.mean([r['kl_theirs_joint'] for r in recent]):.4f} "
                    f"ls {np.mean([r['ls_ours'] for r in recent]):.2f}/{np.mean([r['ls_theirs'] for r in recent]):.2f} "
                    f"mse {np.mean([r['critic_mse_ours'] for r in recent]):.4f}/"
                    f"{np.mean([r['critic_mse_theirs'] for r in recent]):.4f} "
                    f"ep_ret {np.mean([e['r'] for e in self.ep_info_buffer]) if self.ep_info_buffer else math.nan:.0f}",
                    flush=True,
                )

    model = Driver("MlpPolicy", env, target_kl=args.kl * dims, cg_damping=0.1 * dims, seed=args.seed, **settings)
    model.learn(args.steps)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


if __name__ == "__main__":
    main()
