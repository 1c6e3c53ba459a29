"""Speed benchmark: TRPOPlus against sb3_contrib.TRPO, side by side, in one process.

Sub-benchmarks (all run by default; pick some with ``--only``):

``step``    the natural-gradient step alone: ``train()`` with ``n_critic_updates=0`` on identical rollout
            buffers and identical initial weights; 25 CG iterations for both (residual tolerance 0),
            damping 0.1 and target_kl 0.01 per dimension (sb3-contrib) = 0.6 and 0.06 joint (TRPOPlus, 6 dims):
            the two compute the same update (the correctness check below shows it).
            Cases: N=2048 with a 64x64 tanh MLP, N=16384 with 256x256 (obs dim 17, action dim 6).
``train``   the whole ``train()`` at the RL Zoo HalfCheetah settings (2 envs x 1024 steps, batch 128,
            20 critic epochs, 25 CG steps, damping 0.1, lr 1e-3, 64x64 tanh, target_kl 0.04 per dim = 0.24 joint)
            on identical buffers.
``e2e``     ``learn()`` on HalfCheetah-v5 (2 DummyVecEnv envs + VecNormalize, Zoo settings converted, library
            defaults otherwise: both stop CG on their default residual tolerance), and the same VecEnv stack
            stepped with random actions (the floor).
``threads`` ``learn()`` as in ``e2e`` but with torch's default thread count, as a new user runs it: sb3-contrib,
            TRPOPlus with ``torch_threads=None`` (torch's count) and TRPOPlus's default (``"auto"``: 1 thread for
            MLP policies), as found and with one CPU-bound process beside it (a busy machine); appended to
            ``threads.csv``. Not in the default set.
``memory``  peak resident memory of the large step case (N=16384, 256x256), each algorithm in a fresh
            subprocess: the peak during one step (``VmHWM``, reset after setup) minus the resident memory after setup.
``--fisher-sub-sampling K`` (default 5; 0 disables) adds TRPOPlus(fisher_sub_sampling=K) to ``step`` and ``train``.

Timings alternate the algorithms inside each repetition (order rotated every repetition) after warm-up
runs, with ``torch.set_num_threads(1)``; medians are reported and ratios are sb3-contrib time / TRPOPlus time.
Before each timed ``train()`` the policy weights and the optimizer state are restored, so every repetition
does the same work.

A correctness check runs first (not a timing assert): from identical weights and data, both steps must
succeed their line search, stay inside the trust region and improve the surrogate, and their parameter
updates must point the same way. It exits with status 1 when that check fails.

Usage::

    python -m benchmarks.speed.bench_speed                  # everything (~3 min on 2 cores)
    python -m benchmarks.speed.bench_speed --runs 3 --readme  # three full runs: min/median/max ratios, README table
    python -m benchmarks.speed.bench_speed --only threads --readme   # the default thread count, idle and busy
    python -m benchmarks.speed.bench_speed --hog --no-write         # the timings with one CPU-bound process beside
    python -m benchmarks.speed.bench_speed --only step,train --reps 15
    python -m benchmarks.speed.bench_speed --profile        # where TRPOPlus's time goes (no results written)
    python -m benchmarks.speed.bench_speed --code-ref HEAD  # the committed TRPOPlus, not the working tree's
"""

from __future__ import annotations

import argparse
import copy
import csv
import datetime
import functools
import gc
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import warnings
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
import torch as th

from benchmarks.common.provenance import provenance
from benchmarks.common.table import append_rows

if TYPE_CHECKING:
    from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent

SB3 = "sb3_contrib"
PLUS = "trpo_plus"
OBS_DIM, ACT_DIM = 17, 6  # HalfCheetah shapes
CG_STEPS, DAMPING = 25, 0.1
TARGET_KL_PER_DIM = {"step": 0.01, "train": 0.04}  # sb3-contrib's (per action dimension)
STEP_TARGET = 3.0
E2E_TARGET = 1.5

# torch's intra-op thread count as torch set it at start (main() then runs everything but ``threads`` on one thread)
DEFAULT_THREADS = th.get_num_threads()

# Which TRPOPlus code is measured: the installed (editable) package, or a git revision exported by --code-ref.
CODE: dict[str, str] = {}


def use_code_ref(ref: str) -> None:
    """
    Measure ``sb3_trpo_plus`` as committed at git revision ``ref`` instead of the working tree: export it with
    ``git archive`` to a temporary folder put first on ``sys.path`` (the memory subprocesses get ``--code-ref`` too).
    Must run before anything imports ``sb3_trpo_plus``.
    """
    assert "sb3_trpo_plus" not in sys.modules, "sb3_trpo_plus was imported before --code-ref took effect"
    sha = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", ref], capture_output=True, text=True, check=True
    ).stdout.strip()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", sha, "sb3_trpo_plus"], capture_output=True, check=True)
    target = tempfile.mkdtemp(prefix=f"sb3_trpo_plus_{sha}_")
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(target, filter="data")
    sys.path.insert(0, target)
    CODE["ref"] = sha
    CODE["label"] = f"commit {sha} (`--code-ref {ref}`, exported with git archive)"


# Counts sb3-contrib's CG iterations; set by the patched solver below.
_SB3_CG: dict[str, int] = {"iterations": -1, "force": 1}


def patch_sb3_contrib_cg() -> None:
    """
    Make sb3-contrib's CG run exactly ``max_iter`` iterations (``residual_tol=0``: its tests are ``< tol``)
    while ``_SB3_CG["force"]`` is set (``step`` and ``train``; ``learn()`` keeps its default tolerance), and count
    them. sb3-contrib's solver starts from ``x0 = 1e-4 * randn`` and so spends one extra
    Hessian-vector product on the initial residual; its step size costs one more. Those are part of its cost.
    """
    from sb3_contrib.common import utils as contrib_utils
    from sb3_contrib.trpo import trpo as contrib_trpo

    original = contrib_utils.conjugate_gradient_solver

    def solver(matrix_vector_dot_fn: Callable, b: th.Tensor, max_iter: int = 10, residual_tol: float = 1e-10):
        calls = [0]

        def counted(vector: th.Tensor) -> th.Tensor:
            calls[0] += 1
            return matrix_vector_dot_fn(vector)

        x = original(counted, b, max_iter=max_iter, residual_tol=0.0 if _SB3_CG["force"] else residual_tol)
        _SB3_CG["iterations"] = calls[0] - 1  # minus the initial-residual product
        return x

    contrib_trpo.conjugate_gradient_solver = solver


# ----------------------------------------------------------------------------------------- setup
class ShapeEnv(gym.Env):
    """An environment with HalfCheetah's spaces, only used to build the models (never stepped in timings)."""

    def __init__(self, obs_dim: int = OBS_DIM, act_dim: int = ACT_DIM):
        self.obs_dim = obs_dim
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (act_dim,), np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        return np.zeros(self.obs_dim, np.float32), {}

    def step(self, action):
        return np.zeros(self.obs_dim, np.float32), 0.0, False, False, {}


@dataclass
class Case:
    name: str
    n_envs: int
    n_steps: int
    hidden: int
    n_critic_updates: int
    target_kl_per_dim: float
    batch_size: int = 128

    @property
    def n_samples(self) -> int:
        return self.n_envs * self.n_steps


STEP_SMALL = Case("N2048_64x64", 2, 1024, 64, 0, TARGET_KL_PER_DIM["step"])
STEP_LARGE = Case("N16384_256x256", 2, 8192, 256, 0, TARGET_KL_PER_DIM["step"])
TRAIN_ZOO = Case("zoo_halfcheetah_N2048_64x64", 2, 1024, 64, 20, TARGET_KL_PER_DIM["train"])


def algo_kwargs(case: Case) -> dict[str, Any]:
    hidden = [case.hidden, case.hidden]
    return {
        "learning_rate": 1e-3,
        "n_steps": case.n_steps,
        "batch_size": case.batch_size,
        "gamma": 0.99,
        "gae_lambda": 0.95,
        "cg_max_steps": CG_STEPS,
        "cg_damping": DAMPING,
        "n_critic_updates": case.n_critic_updates,
        "sub_sampling_factor": 1,
        "policy_kwargs": {"net_arch": {"pi": hidden, "vf": hidden}},  # tanh: SB3's default activation
        "seed": 0,
        "device": "cpu",
    }


def variant_kwargs(algo: str) -> dict[str, Any]:
    """TRPOPlus arguments encoded in an algorithm label: ``trpo_plus_fss5`` -> ``fisher_sub_sampling=5``,
    ``trpo_plus_damping0.6`` -> ``cg_damping=0.6``, ``trpo_plus_threadsNone`` -> ``torch_threads=None``."""
    kwargs: dict[str, Any] = {}
    for token in algo.removeprefix(PLUS).split("_"):
        if token.startswith("fss"):
            kwargs["fisher_sub_sampling"] = int(token[3:])
        elif token.startswith("damping"):
            kwargs["cg_damping"] = float(token[7:])
        elif token == "threadsNone":
            kwargs["torch_threads"] = None
    return kwargs


#: TRPOPlus's switch to sb3-contrib's update (no normalization inside the policy), so that both compute the same
SAME_UPDATE = {"normalize_observations": False, "normalize_values": False}


def make_model(algo: str, env, kwargs: dict[str, Any], target_kl_per_dim: float):
    """A model of ``algo`` ('sb3_contrib', 'trpo_plus' or a variant label) with the KL bound and damping converted."""
    from stable_baselines3.common.logger import Logger

    model: OnPolicyAlgorithm
    if algo == SB3:
        from sb3_contrib import TRPO

        model = TRPO("MlpPolicy", env, target_kl=target_kl_per_dim, **kwargs)
    else:
        from sb3_trpo_plus import TRPOPlus

        act_dim = int(np.prod(env.action_space.shape))
        kwargs = {**kwargs, "cg_damping": kwargs["cg_damping"] * act_dim, **SAME_UPDATE, **variant_kwargs(algo)}
        model = TRPOPlus("MlpPolicy", env, target_kl=target_kl_per_dim * act_dim, **kwargs)
    model.set_logger(Logger(folder=None, output_formats=[]))
    return model


def fill_buffer(model, seed: int) -> None:
    """Fill ``model.rollout_buffer`` with synthetic transitions drawn with the model's own policy."""
    buffer, policy = model.rollout_buffer, model.policy
    n_steps, n_envs = buffer.buffer_size, buffer.n_envs
    rng = np.random.default_rng(seed)
    th.manual_seed(seed)
    obs = rng.standard_normal((n_steps + 1, n_envs, OBS_DIM)).astype(np.float32)
    rewards = rng.standard_normal((n_steps, n_envs)).astype(np.float32)
    starts = rng.random((n_steps + 1, n_envs)) < 1.0 / 1000  # episodes of ~1000 steps, like HalfCheetah
    starts[0] = True
    buffer.reset()
    with th.no_grad():
        flat = th.as_tensor(obs[:n_steps].reshape(-1, OBS_DIM))
        actions, values, log_probs = policy(flat)
        actions = actions.reshape(n_steps, n_envs, ACT_DIM).numpy()
        values = values.reshape(n_steps, n_envs)
        log_probs = log_probs.reshape(n_steps, n_envs)
        last_values = policy.predict_values(th.as_tensor(obs[n_steps])).flatten()
    for t in range(n_steps):
        buffer.add(obs[t], actions[t], rewards[t], starts[t], values[t], log_probs[t])
    buffer.compute_returns_and_advantage(last_values=last_values, dones=starts[n_steps])


@dataclass
class Contestant:
    """One model with a frozen initial state, restored before every timed ``train()``."""

    algo: str
    model: Any
    policy_state: dict = field(default_factory=dict)
    optimizer_state: dict = field(default_factory=dict)

    def snapshot(self) -> None:
        self.policy_state = copy.deepcopy(self.model.policy.state_dict())
        self.optimizer_state = copy.deepcopy(self.model.policy.optimizer.state_dict())

    def restore(self) -> None:
        self.model.policy.load_state_dict(self.policy_state)
        # a copy each time: load_state_dict keeps the tensors it is given, which the next step updates in place
        self.model.policy.optimizer.load_state_dict(copy.deepcopy(self.optimizer_state))


def build_contestants(case: Case, algos: list[str], seed: int = 0) -> list[Contestant]:
    """Models of ``algos`` with identical initial weights and identical rollout buffers."""
    from stable_baselines3.common.vec_env import DummyVecEnv

    env = DummyVecEnv([ShapeEnv] * case.n_envs)
    kwargs = algo_kwargs(case)
    contestants = []
    for algo in algos:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = make_model(algo, env, kwargs, case.target_kl_per_dim)
        if algo != SB3:
            model.cg_residual_tol = 0.0  # exactly cg_max_steps iterations
        contestants.append(Contestant(algo, model))
    reference = contestants[0].model
    fill_buffer(reference, seed)
    for contestant in contestants[1:]:
        missing = contestant.model.policy.load_state_dict(reference.policy.state_dict())
        assert not missing.missing_keys and not missing.unexpected_keys
        contestant.model.rollout_buffer = copy.deepcopy(reference.rollout_buffer)
    for contestant in contestants:
        contestant.snapshot()
    return contestants


def timed_train(contestant: Contestant, seed: int) -> float:
    contestant.restore()
    np.random.seed(seed)
    th.manual_seed(seed)
    gc.collect()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sb3-contrib: mean of an empty list when n_critic_updates=0
        start = time.perf_counter()
        contestant.model.train()
        return time.perf_counter() - start


def alternate(
    contestants: list[Contestant], reps: int, warmup: int, run: Callable[[Contestant, int], float]
) -> dict[str, list[float]]:
    """Time ``run`` on every contestant, alternating, order rotated each repetition; warm-up runs discarded."""
    times: dict[str, list[float]] = defaultdict(list)
    for rep in range(warmup + reps):
        order = contestants[rep % len(contestants) :] + contestants[: rep % len(contestants)]
        for contestant in order:
            elapsed = run(contestant, rep)
            if rep >= warmup:
                times[contestant.algo].append(elapsed)
    return times


# ----------------------------------------------------------------------------------------- checks
def actor_vector(policy) -> th.Tensor:
    return th.cat([p.detach().reshape(-1) for name, p in policy.named_parameters() if "value" not in name])


def check_steps(case: Case, algos: list[str]) -> list[dict[str, Any]]:
    """
    From identical weights and data, one step of each algorithm (``n_critic_updates=0``): line-search success,
    joint KL(old || new) reached (recomputed here the same way for both), surrogate gain, CG iterations,
    and the cosine between each parameter update and sb3-contrib's.
    """
    contestants = build_contestants(case, algos)
    rows = []
    deltas = {}
    for contestant in contestants:
        model = contestant.model
        contestant.restore()
        np.random.seed(0)
        th.manual_seed(0)
        samples = next(model.rollout_buffer.get(batch_size=None))
        obs, actions = samples.observations, samples.actions
        adv = samples.advantages
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        theta_old = actor_vector(model.policy)
        with th.no_grad():
            old = copy.copy(model.policy.get_distribution(obs)).distribution
            surrogate_old = (adv * th.exp(old.log_prob(actions).sum(-1) - samples.old_log_prob)).mean().item()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.train()
        with th.no_grad():
            new = model.policy.get_distribution(obs).distribution
            kl = th.distributions.kl_divergence(old, new).sum(-1).mean().item()
            surrogate_new = (adv * th.exp(new.log_prob(actions).sum(-1) - samples.old_log_prob)).mean().item()
        deltas[contestant.algo] = actor_vector(model.policy) - theta_old
        logged = model.logger.name_to_value
        rows.append(
            {
                "case": case.name,
                "algo": contestant.algo,
                "line_search_success": bool(logged["train/is_line_search_success"] > 0.5),
                "kl_joint": kl,
                "kl_bound_joint": case.target_kl_per_dim * ACT_DIM,
                "logged_kl": float(logged["train/kl_divergence_loss"]),
                "surrogate_gain": surrogate_new - surrogate_old,
                "cg_iterations": _SB3_CG["iterations"] if contestant.algo == SB3 else int(logged["train/cg_iterations"]),
                "line_search_steps": int(logged.get("train/line_search_steps", -1)),
            }
        )
    reference = deltas[SB3]
    for row in rows:
        delta = deltas[row["algo"]]
        row["cosine_vs_sb3"] = float(th.nn.functional.cosine_similarity(delta, reference, dim=0))
        row["step_norm_ratio_vs_sb3"] = float(delta.norm() / reference.norm())
        row["ok"] = (
            row["line_search_success"]
            and row["kl_joint"] <= row["kl_bound_joint"] * (1 + 1e-4)
            and row["surrogate_gain"] > 0
            and (row["cosine_vs_sb3"] > 0.99 or "fss" in row["algo"])  # the same update, but for the sub-sampled Fisher
            and row["cg_iterations"] == CG_STEPS
        )
    return rows


# ----------------------------------------------------------------------------------------- benchmarks
def summarize(benchmark: str, case: Case | str, times: dict[str, list[float]], **extra) -> list[dict[str, Any]]:
    name = case if isinstance(case, str) else case.name
    sb3_median = statistics.median(times[SB3]) if SB3 in times else float("nan")
    rows = []
    for algo, values in sorted(times.items(), key=lambda item: (item[0] != SB3, item[0] != PLUS, item[0])):
        median = statistics.median(values)
        rows.append(
            {
                "benchmark": benchmark,
                "case": name,
                "algo": algo,
                "median_s": median,
                "n_reps": len(values),
                "min_s": min(values),
                "max_s": max(values),
                "speedup_vs_sb3": sb3_median / median,
                **extra.get(algo, {}),
            }
        )
    return rows


def bench_train_cases(
    cases: list[tuple[str, Case, int, int]], fss: int, log: Callable, variants: tuple[str, ...] = ()
) -> list[dict[str, Any]]:
    rows = []
    for benchmark, case, reps, warmup in cases:
        algos = [SB3, PLUS] + ([f"{PLUS}_fss{fss}"] if fss > 1 else []) + list(variants)
        contestants = build_contestants(case, algos)
        times = alternate(contestants, reps, warmup, timed_train)
        new_rows = summarize(benchmark, case, times)
        for row in new_rows:
            log(
                f"  {benchmark:6s} {row['case']:30s} {row['algo']:18s} median {row['median_s'] * 1e3:9.1f} ms "
                f"(n={row['n_reps']}, min {row['min_s'] * 1e3:.1f}, max {row['max_s'] * 1e3:.1f})  "
                f"speedup {row['speedup_vs_sb3']:.2f}x"
            )
        rows += new_rows
        del contestants
        gc.collect()
    return rows


def make_halfcheetah_stack(seed: int):
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    env = make_vec_env("HalfCheetah-v5", n_envs=2, seed=seed, vec_env_cls=DummyVecEnv)
    return VecNormalize(env, gamma=0.99)  # RL Zoo: normalize: true, gamma from the hyperparameters


def e2e_kwargs() -> dict[str, Any]:
    """RL Zoo ``trpo.yml`` HalfCheetah-v4 (mujoco defaults): default MlpPolicy (64x64 tanh), target_kl 0.04."""
    return {
        "learning_rate": 1e-3,
        "n_steps": 1024,
        "batch_size": 128,
        "gamma": 0.99,
        "gae_lambda": 0.95,
        "cg_max_steps": CG_STEPS,
        "cg_damping": DAMPING,
        "n_critic_updates": 20,
        "sub_sampling_factor": 1,
        "device": "cpu",
    }


def timed_learn(algo: str, env, rep: int, steps: int) -> tuple[float, dict[str, Any]]:
    """Seconds ``learn(steps)`` of ``algo`` (``e2e`` settings, seed ``rep``) takes on ``env``, and its last logs."""
    from stable_baselines3.common.logger import Logger

    model = make_model(algo, env, dict(e2e_kwargs(), seed=rep), TARGET_KL_PER_DIM["train"])
    model.set_logger(Logger(folder=None, output_formats=[]))
    gc.collect()
    start = time.perf_counter()
    model.learn(total_timesteps=steps)
    return time.perf_counter() - start, model.logger.name_to_value.copy()


def bench_e2e(steps: int, reps: int, log: Callable) -> list[dict[str, Any]]:
    """learn() on HalfCheetah-v5 for both algorithms and the random-action floor, alternating."""

    def run(contestant: Contestant, rep: int) -> float:
        env = make_halfcheetah_stack(seed=rep)
        if contestant.algo == "random_actions":
            rng = np.random.default_rng(rep)
            gc.collect()
            start = time.perf_counter()
            env.reset()
            for _ in range(steps // env.num_envs):
                env.step(rng.uniform(-1.0, 1.0, (env.num_envs, ACT_DIM)).astype(np.float32))
            elapsed = time.perf_counter() - start
        else:
            elapsed, diagnostics = timed_learn(contestant.algo, env, rep, steps)
            contestant.model = diagnostics  # last update's diagnostics
        env.close()
        return elapsed

    contestants = [Contestant(name, None) for name in (SB3, PLUS, "random_actions")]
    _SB3_CG["force"] = 0  # learn(): both stop CG on their default residual tolerance
    try:
        # warm-up: one short learn() each (imports, MuJoCo model load, first allocations)
        for contestant in contestants[:2]:
            env = make_halfcheetah_stack(seed=99)
            make_model(contestant.algo, env, dict(e2e_kwargs(), seed=99), TARGET_KL_PER_DIM["train"]).learn(2048)
            env.close()
        times = alternate(contestants, reps, 0, run)
    finally:
        _SB3_CG["force"] = 1
    floor = statistics.median(times["random_actions"])
    extra = {
        name: {
            "steps": steps,
            "steps_per_s": steps / statistics.median(values),
            "overhead_s": statistics.median(values) - floor,
        }
        for name, values in times.items()
    }
    rows = summarize("e2e", f"HalfCheetah-v5_2envs_{steps}steps", times, **extra)
    sb3_overhead = extra[SB3]["overhead_s"]
    for row in rows:
        row["overhead_speedup_vs_sb3"] = sb3_overhead / row["overhead_s"] if row["overhead_s"] > 0 else float("nan")
        log(
            f"  e2e    {row['algo']:18s} median {row['median_s']:.2f} s, {row['steps_per_s']:.0f} steps/s, "
            f"overhead above floor {row['overhead_s']:.2f} s, speedup {row['speedup_vs_sb3']:.2f}x "
            f"(overhead ratio {row['overhead_speedup_vs_sb3']:.2f}x)"
        )
    plus_diag = contestants[1].model
    if isinstance(plus_diag, dict):
        log(
            f"  e2e    TRPOPlus last update: cg_iterations={plus_diag.get('train/cg_iterations')}, "
            f"line_search_steps={plus_diag.get('train/line_search_steps')}, kl={plus_diag.get('train/kl')}"
        )
    return rows


THREAD_ALGOS = (SB3, f"{PLUS}_threadsNone", PLUS)


def bench_threads(steps: int, reps: int, busy: bool, log: Callable, write: bool = True) -> list[dict[str, Any]]:
    """
    ``learn()`` on HalfCheetah-v5 (``e2e`` settings) with torch's default thread count (``DEFAULT_THREADS``, as
    torch set it at start), as a user who sets nothing runs it: sb3-contrib, TRPOPlus with ``torch_threads=None``
    and TRPOPlus's default, alternating. With ``busy``, one CPU-bound process runs beside it throughout.
    """

    def run(contestant: Contestant, rep: int) -> float:
        env = make_halfcheetah_stack(seed=rep)
        th.set_num_threads(DEFAULT_THREADS)
        try:
            return timed_learn(contestant.algo, env, rep, steps)[0]
        finally:
            env.close()
            th.set_num_threads(1)

    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    _SB3_CG["force"] = 0
    try:
        contestants = [Contestant(name, None) for name in THREAD_ALGOS]
        run(contestants[0], 99), run(contestants[2], 99)  # warm-up
        times = alternate(contestants, reps, 0, run)
    finally:
        _SB3_CG["force"] = 1
        if hog is not None:
            hog.kill()
            hog.wait()
    condition = "busy" if busy else "as found"
    rows = summarize("threads", f"HalfCheetah-v5_{steps}steps_{condition}", times)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    for row in rows:
        row.update(
            steps=steps,
            steps_per_s=steps / row["median_s"],
            torch_default_threads=DEFAULT_THREADS,
            busy=busy,
            load=load,
            date=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M"),
        )
        log(
            f"  threads {condition:8s} {row['algo']:22s} median {row['median_s']:.2f} s ({row['steps_per_s']:.0f} steps/s, "
            f"min {row['min_s']:.2f}, max {row['max_s']:.2f}), speedup vs sb3-contrib {row['speedup_vs_sb3']:.2f}x"
        )
    if not write:
        return rows
    path = HERE / "threads.csv"
    columns = ["date", "case", "algo", "busy", "torch_default_threads", "steps", "median_s", "min_s", "max_s", "n_reps"]
    columns += ["steps_per_s", "speedup_vs_sb3", "load"]
    cell = lambda value: f"{value:.4g}" if isinstance(value, float) else value  # noqa: E731
    append_rows(path, [{key: cell(row[key]) for key in columns} for row in rows])
    log(f"  appended to {path}")
    return rows


def _proc_status_kb(key: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def memory_child(algo: str) -> None:
    """
    Run in a fresh process: one large-case step; print the peak resident memory above the post-setup baseline.

    On Linux the peak is the kernel's high-water mark ``VmHWM``, reset after setup by writing 5 to
    ``/proc/self/clear_refs``; the baseline is ``VmRSS`` then. (``ru_maxrss`` is no good in a subprocess: Linux
    carries the parent's high-water mark over fork and exec.) Elsewhere ``ru_maxrss`` is used.
    """
    th.set_num_threads(1)
    patch_sb3_contrib_cg()
    contestants = build_contestants(STEP_LARGE, [SB3] if algo == SB3 else [SB3, algo])
    contestant = contestants[-1]
    del contestants[:-1]
    gc.collect()
    try:
        Path("/proc/self/clear_refs").write_text("5")
        baseline, source = _proc_status_kb("VmRSS"), "VmHWM"
    except OSError:
        baseline, source = None, "ru_maxrss"
    if baseline is None:
        baseline, source = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "ru_maxrss"
    timed_train(contestant, 0)
    peak = _proc_status_kb("VmHWM") if source == "VmHWM" else None
    if peak is None:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"algo": algo, "baseline_kb": baseline, "peak_kb": peak, "source": source}))


def bench_memory(algos: list[str], repeats: int, log: Callable) -> list[dict[str, Any]]:
    results: dict[str, list[dict[str, int]]] = defaultdict(list)
    for _ in range(repeats):
        for algo in algos:
            child = [sys.executable, "-m", "benchmarks.speed.bench_speed", "--memory-child", algo]
            if "ref" in CODE:
                child += ["--code-ref", CODE["ref"]]
            out = subprocess.run(child, capture_output=True, text=True, check=True, cwd=REPO)
            results[algo].append(json.loads(out.stdout.strip().splitlines()[-1]))
    rows = []
    sb3_delta = statistics.median(r["peak_kb"] - r["baseline_kb"] for r in results[SB3])
    for algo, runs in results.items():
        delta = statistics.median(r["peak_kb"] - r["baseline_kb"] for r in runs)
        rows.append(
            {
                "benchmark": "memory",
                "case": STEP_LARGE.name,
                "algo": algo,
                "n_reps": len(runs),
                "peak_rss_above_baseline_mb": delta / 1024,
                "baseline_rss_mb": statistics.median(r["baseline_kb"] for r in runs) / 1024,
                "peak_rss_mb": statistics.median(r["peak_kb"] for r in runs) / 1024,
                "memory_ratio_vs_sb3": sb3_delta / delta if delta > 0 else float("nan"),
            }
        )
        log(
            f"  memory {algo:18s} peak RSS above baseline {delta / 1024:8.1f} MB "
            f"(baseline {rows[-1]['baseline_rss_mb']:.0f} MB, peak {rows[-1]['peak_rss_mb']:.0f} MB)"
        )
    return rows


# ----------------------------------------------------------------------------------------- profile
#: The public fast-path functions: TRPOPlus calls each through the module attribute ``sb3_trpo_plus.fast_paths.<name>``,
#: so the profiler wraps that attribute. A missing one is an error (the profile would silently lose a section).
FAST_PATH_FUNCTIONS = {
    "decide": "  fast_paths.decide (all calls)",
    "rollout_forward": " fast_paths.rollout_forward (layout, once per rollout)",
    "collect_rollouts": " fast_paths.collect_rollouts (the fast rollout loop)",
    "fisher_vector_product": "  fast_paths.fisher_vector_product (setup)",
    "fit_critic": " fast_paths.fit_critic (critic minibatch loop)",
}


def require(owner: Any, names: Any, what: str) -> None:
    """Raise an error naming every one of ``names`` that ``owner`` lacks (``what`` names the owner)."""
    missing = [name for name in names if not hasattr(owner, name)]
    if missing:
        raise AttributeError(
            f"bench_speed.py --profile: {what} has no {', '.join(missing)}; the profile wraps these by name, "
            "update it to the code's functions"
        )


_INHERITED = object()  # an attribute that SectionTimer.patch found on the owner's class, not the owner


class SectionTimer:
    """Accumulates wall time of wrapped callables (exclusive of nothing: nested sections overlap)."""

    def __init__(self) -> None:
        self.total: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._saved: list[tuple[Any, str, Any]] = []

    def add(self, name: str, seconds: float) -> None:
        self.total[name] += seconds
        self.calls[name] += 1

    def wrap(self, name: str, fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.add(name, time.perf_counter() - start)

        return wrapper

    def patch(self, owner: Any, attribute: str, name: str | None = None, wrapper: Callable | None = None) -> None:
        """Replace ``owner.attribute`` by its timed wrapper (or by ``wrapper``) until :meth:`restore`; an error if
        ``owner`` has no such attribute."""
        require(owner, [attribute], getattr(owner, "__name__", type(owner).__name__))
        original = getattr(owner, attribute)
        self._saved.append((owner, attribute, vars(owner).get(attribute, _INHERITED)))
        setattr(owner, attribute, wrapper or self.wrap(name or attribute, original))

    def restore(self) -> None:
        """Undo every :meth:`patch`, last first (an attribute that was inherited is deleted again)."""
        for owner, attribute, own in reversed(self._saved):
            if own is _INHERITED:
                delattr(owner, attribute)
            else:
                setattr(owner, attribute, own)
        self._saved.clear()

    def report(self, whole: float, reps: int, log: Callable) -> None:
        log(f"    {'section':52s} {'ms/update':>10s} {'share':>7s} {'calls/update':>13s}")
        for name, total in sorted(self.total.items(), key=lambda item: -item[1]):
            log(f"    {name:52s} {total / reps * 1e3:10.2f} {total / whole:7.1%} {self.calls[name] / reps:13.1f}")


def patch_fast_paths(timer: SectionTimer) -> None:
    """Wrap :data:`FAST_PATH_FUNCTIONS` on ``sb3_trpo_plus.fast_paths``; the closed-form Fisher-vector product that
    ``fisher_vector_product`` returns is timed too, product by product."""
    from sb3_trpo_plus import fast_paths

    require(fast_paths, FAST_PATH_FUNCTIONS, "sb3_trpo_plus.fast_paths")
    build_fvp = fast_paths.fisher_vector_product

    @functools.wraps(build_fvp)
    def fisher_vector_product(*args, **kwargs):
        start = time.perf_counter()
        built = build_fvp(*args, **kwargs)
        timer.add(FAST_PATH_FUNCTIONS["fisher_vector_product"], time.perf_counter() - start)
        if built is None:
            return None
        ordered, fvp = built
        return ordered, timer.wrap("  fisher-vector product (closed form)", fvp)

    for name, label in FAST_PATH_FUNCTIONS.items():
        timer.patch(fast_paths, name, label, fisher_vector_product if name == "fisher_vector_product" else None)


def profile_trpo_plus(log: Callable) -> None:
    """Section timings of TRPOPlus in the step, train() and learn() benchmarks (wrapping adds ~1 us per call)."""
    from stable_baselines3.common import buffers, policies
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    import sb3_trpo_plus.trpo_plus as tp
    from sb3_trpo_plus import TRPOPlus

    # Sections inside TRPOPlus that are not a public interface: profiled where they exist, and said where not.
    internal = ("_policy_step", "_critic_step", "_non_finite_rollout", "_distribution", "_autograd_fisher_vector_product")
    absent = [name for name in internal if not hasattr(TRPOPlus, name)]
    absent += [f"trpo_plus.{name}" for name in ("conjugate_gradient", "backtracking_line_search") if not hasattr(tp, name)]
    if absent:
        log(f"  not profiled (no longer in TRPOPlus / sb3_trpo_plus.trpo_plus): {', '.join(absent)}")
    for benchmark, case, reps in (("step", STEP_SMALL, 20), ("step", STEP_LARGE, 3), ("train", TRAIN_ZOO, 10)):
        timer = SectionTimer()
        contestant = build_contestants(case, [PLUS])[0]
        timed_train(contestant, 0)  # warm-up
        model = contestant.model
        patch_fast_paths(timer)
        for attr, name in (
            ("conjugate_gradient", " conjugate_gradient (incl. FVPs)"),
            ("backtracking_line_search", " line search"),
        ):
            if hasattr(tp, attr):
                timer.patch(tp, attr, name)
        if hasattr(model, "_autograd_fisher_vector_product"):
            autograd_fvp = model._autograd_fisher_vector_product

            def timed_autograd_fvp(*args, timer=timer, build=autograd_fvp, **kwargs):
                start = time.perf_counter()
                fvp = build(*args, **kwargs)
                timer.add("  fvp setup (autograd)", time.perf_counter() - start)
                return timer.wrap("  fisher-vector product (autograd)", fvp)

            timer.patch(model, "_autograd_fisher_vector_product", wrapper=timed_autograd_fvp)
        for attr, name in (
            ("_policy_step", "_policy_step"),
            ("_critic_step", "_critic_step"),
            ("_non_finite_rollout", "_non_finite_rollout"),
            ("_distribution", "  policy.get_distribution (all calls)"),
        ):
            if hasattr(model, attr):
                timer.patch(model, attr, name)
        timer.patch(model.rollout_buffer, "get", "rollout_buffer.get")
        whole = 0.0
        try:
            for rep in range(reps):
                whole += timed_train(contestant, rep)
        finally:
            timer.restore()
        log(f"  TRPOPlus {benchmark} {case.name}: train() {whole / reps * 1e3:.1f} ms per call")
        timer.report(whole, reps, log)

    # learn(): rollout collection vs train()
    timer = SectionTimer()
    env = make_halfcheetah_stack(seed=0)
    model = make_model(PLUS, env, dict(e2e_kwargs(), seed=0), TARGET_KL_PER_DIM["train"])
    model.learn(2048)
    patch_fast_paths(timer)
    for owner, attr, name in (
        (TRPOPlus, "collect_rollouts", "collect_rollouts"),
        (TRPOPlus, "train", "train"),
        (policies.ActorCriticPolicy, "forward", " policy forward (SB3's ActorCriticPolicy.forward)"),
        (VecNormalize, "step_wait", " VecNormalize.step_wait (incl. envs)"),
        (DummyVecEnv, "step_wait", "  DummyVecEnv.step_wait (incl. envs)"),
        (type(env.venv.envs[0].unwrapped), "step", "   HalfCheetahEnv.step (MuJoCo)"),
        (buffers.RolloutBuffer, "add", " rollout_buffer.add"),
        (buffers.RolloutBuffer, "compute_returns_and_advantage", " compute_returns_and_advantage"),
        (VecNormalize, "normalize_obs", "  VecNormalize.normalize_obs"),
        (VecNormalize, "normalize_reward", "  VecNormalize.normalize_reward"),
    ):
        timer.patch(owner, attr, name)
    steps = 20480
    start = time.perf_counter()
    try:
        model.learn(steps, reset_num_timesteps=True)
    finally:
        timer.restore()
    whole = time.perf_counter() - start
    updates = steps // 2048
    log(f"  TRPOPlus learn() HalfCheetah-v5 {steps} steps: {whole:.2f} s ({steps / whole:.0f} steps/s), per update:")
    timer.report(whole, updates, log)
    env.close()


# ----------------------------------------------------------------------------------------- output
CSV_COLUMNS = [
    "benchmark",
    "case",
    "algo",
    "median_s",
    "n_reps",
    "min_s",
    "max_s",
    "speedup_vs_sb3",
    "steps",
    "steps_per_s",
    "overhead_s",
    "overhead_speedup_vs_sb3",
    "peak_rss_above_baseline_mb",
    "baseline_rss_mb",
    "peak_rss_mb",
    "memory_ratio_vs_sb3",
    "n_runs",
    "speedup_min",
    "speedup_max",
]


def machine_info() -> dict[str, str]:
    """The machine, the versions and the code measured, for RESULTS.md and the README's table."""
    stamp = provenance(REPO)
    code = f"working tree at commit {stamp.commit[:7]}" if stamp.commit else "unknown"
    if stamp.dirty:
        code += " with uncommitted changes in sb3_trpo_plus/ or hyperparams/"
    return {
        "cpu": stamp.machine["cpu"],
        "cores": str(stamp.machine["n_cpus"]),
        "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "torch": stamp.versions["torch"],
        "torch_threads": str(th.get_num_threads()),
        "stable_baselines3": stamp.versions.get("stable_baselines3", "?"),
        "sb3_contrib": stamp.versions.get("sb3_contrib", "?"),
        "sb3_trpo_plus": stamp.versions.get("sb3_trpo_plus", "?"),
        "code": CODE.get("label", code),
        "python": stamp.versions["python"],
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def fmt(value: Any, spec: str) -> str:
    return "" if value in (None, "") or (isinstance(value, float) and np.isnan(value)) else format(value, spec)


def write_outputs(rows: list[dict], checks: list[dict], info: dict[str, str], command: str, elapsed: float) -> None:
    with open(HERE / "results.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({key: (f"{value:.6g}" if isinstance(value, float) else value) for key, value in row.items()})

    lines = [
        "# Speed: TRPOPlus vs sb3_contrib.TRPO",
        "",
        f"Command: `{command}` ({elapsed / 60:.1f} min). Generated by `bench_speed.py`; numbers in `results.csv`.",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores (shared; load average at the end {info['load']}), "
        f"torch {info['torch']} CPU with `torch.set_num_threads(1)`, stable-baselines3 {info['stable_baselines3']}, "
        f"sb3-contrib {info['sb3_contrib']}, Python {info['python']}, {info['date']}.",
        "",
        f"TRPOPlus code measured: sb3-trpo-plus {info['sb3_trpo_plus']}, {info['code']}.",
        "",
        "Speedup = sb3-contrib median time / TRPOPlus median time (higher is better); with several full runs "
        "(`--runs`), each figure is the median over runs, and the speedup shows [min, max] over runs. "
        "Algorithms alternate inside "
        "every repetition after warm-up; every timed `train()` starts from the same weights, optimizer state and "
        "rollout buffer. Both run exactly 25 CG iterations in `step` and `train` (residual tolerance 0; sb3-contrib "
        "spends 27 Hessian-vector products for them: one on its random initial residual, one for the step size); "
        "`e2e` keeps both libraries' default CG tolerance. "
        "`target_kl` 0.01 per dim (sb3-contrib) = 0.06 joint (TRPOPlus) in `step`; 0.04 = 0.24 (RL Zoo HalfCheetah) "
        "in `train` and `e2e`; `cg_damping` 0.1 per dim = 0.6 joint everywhere, so both compute the same update. "
        "`fss5` = TRPOPlus with `fisher_sub_sampling=5` (Fisher on every 5th sample; gradient "
        "and line search on all).",
        "",
        "| benchmark | case | algo | median | reps | speedup vs sb3-contrib | target |",
        "|---|---|---|---:|---:|---:|---|",
    ]
    for row in rows:
        if row["benchmark"] == "memory":
            continue
        target = ""
        if row["algo"] == PLUS:
            goal = E2E_TARGET if row["benchmark"] == "e2e" else STEP_TARGET
            target = f"≥{goal:g}x: {'met' if row['speedup_vs_sb3'] >= goal else 'NOT met'}"
        median = row["median_s"]
        shown = f"{median:.2f} s" if median >= 1 else f"{median * 1e3:.1f} ms"
        speedup = "(floor)" if row["algo"] == "random_actions" else _ratio(row)
        lines.append(
            f"| {row['benchmark']} | {row['case']} | {row['algo']} | {shown} | {row['n_reps']} | {speedup} | {target} |"
        )
    e2e = [row for row in rows if row["benchmark"] == "e2e"]
    if e2e:
        lines += [
            "",
            "End to end (`learn()`; the floor is the same VecEnv stack stepped with random actions):",
            "",
            "| algo | median | steps/s | overhead above floor | overhead ratio sb3-contrib / algo |",
            "|---|---:|---:|---:|---:|",
        ]
        for row in e2e:
            lines.append(
                f"| {row['algo']} | {row['median_s']:.2f} s | {row['steps_per_s']:.0f} | {row['overhead_s']:.2f} s | "
                f"{fmt(row.get('overhead_speedup_vs_sb3'), '.2f')} |"
            )
    memory = [row for row in rows if row["benchmark"] == "memory"]
    if memory:
        lines += [
            "",
            f"Memory, step case {STEP_LARGE.name} (fresh subprocess each; peak resident memory during one step "
            "(`VmHWM`, reset after setup) minus the resident memory after setup):",
            "",
            "| algo | peak RSS above baseline | baseline RSS | peak RSS | sb3-contrib / algo |",
            "|---|---:|---:|---:|---:|",
        ]
        for row in memory:
            lines.append(
                f"| {row['algo']} | {row['peak_rss_above_baseline_mb']:.0f} MB | {row['baseline_rss_mb']:.0f} MB | "
                f"{row['peak_rss_mb']:.0f} MB | {fmt(row['memory_ratio_vs_sb3'], '.2f')}x |"
            )
    if checks:
        lines += [
            "",
            "Correctness check (one step from identical weights and data, `n_critic_updates=0`; KL recomputed here as "
            "the joint KL(old‖new) averaged over states; cosine = between this algorithm's parameter update and "
            "sb3-contrib's):",
            "",
            "| case | algo | line search | KL reached (joint) | bound | surrogate gain | CG iterations | "
            "cosine vs sb3 | step norm / sb3 | ok |",
            "|---|---|---|---:|---:|---:|---:|---:|---:|---|",
        ]
        for row in checks:
            lines.append(
                f"| {row['case']} | {row['algo']} | {'success' if row['line_search_success'] else 'FAILED'} | "
                f"{row['kl_joint']:.4f} | {row['kl_bound_joint']:.2f} | {row['surrogate_gain']:.4f} | "
                f"{row['cg_iterations']} | {row['cosine_vs_sb3']:.4f} | {row['step_norm_ratio_vs_sb3']:.3f} | "
                f"{'yes' if row['ok'] else 'NO'} |"
            )
    (HERE / "RESULTS.md").write_text("\n".join(lines) + "\n")
    plot(rows)


def combine_runs(runs: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """
    One row per (benchmark, case, algo) over several full runs: the median over runs of every number, and the
    smallest and largest speedup (``speedup_min``, ``speedup_max``; memory: of the memory ratio).
    """
    grouped: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for rows in runs:
        for row in rows:
            grouped[(row["benchmark"], row["case"], row["algo"])].append(row)
    combined = []
    for rows in grouped.values():
        row = dict(rows[0])
        for key, value in rows[0].items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                row[key] = statistics.median(other[key] for other in rows)
        ratio = "memory_ratio_vs_sb3" if row["benchmark"] == "memory" else "speedup_vs_sb3"
        ratios = [other.get(ratio, float("nan")) for other in rows]
        row.update(n_runs=len(rows), speedup_min=min(ratios), speedup_max=max(ratios))
        combined.append(row)
    return combined


def _ratio(row: dict[str, Any], key: str = "speedup_vs_sb3") -> str:
    """``3.39x`` for one run; ``3.39x [3.20, 3.51]`` (median [min, max] over runs) for several."""
    shown = f"{row[key]:.2f}x"
    if row.get("n_runs", 1) > 1:
        shown += f" [{row['speedup_min']:.2f}, {row['speedup_max']:.2f}]"
    return shown


README_LABELS = {
    ("step", STEP_SMALL.name): "natural-gradient step, N = 2048, 64x64 (RL Zoo MuJoCo size)",
    ("step", STEP_LARGE.name): "natural-gradient step, N = 16384, 256x256",
    ("train", TRAIN_ZOO.name): "whole `train()`, RL Zoo HalfCheetah settings",
    ("e2e", None): "`learn()` on HalfCheetah-v5, 20k steps",
}


def replace_readme_block(name: str, lines: list[str]) -> None:
    """Replace the README's ``<!-- name -->`` ... ``<!-- /name -->`` block by ``lines``."""
    readme = REPO / "README.md"
    text = readme.read_text()
    start, end = f"<!-- {name} -->", f"<!-- /{name} -->"
    if start not in text or end not in text:
        raise SystemExit(f"{readme} has no {start} ... {end} block to rewrite")
    before, rest = text.split(start, 1)
    readme.write_text(before + "\n".join([start, *lines, end]) + rest.split(end, 1)[1])


def write_readme_table(rows: list[dict[str, Any]], info: dict[str, str], command: str) -> None:
    """Rewrite the README's ``<!-- speed-table -->`` block with TRPOPlus's ratios from ``rows``."""
    runs = max(int(row.get("n_runs", 1)) for row in rows)
    lines = [
        f"Speedup = sb3-contrib's time / TRPOPlus's, both computing the same update (`target_kl` and `cg_damping` "
        f"converted), one torch thread, {'median [min, max] over ' + str(runs) + ' full runs' if runs > 1 else 'one run'} "
        f"of `{command}` on a {info['cores']}-core {info['cpu']} (details: "
        "[benchmarks/speed/RESULTS.md](benchmarks/speed/RESULTS.md)):",
        "",
        "| measured | sb3-contrib | TRPOPlus | speedup |",
        "|---|---:|---:|---:|",
    ]
    by_key = {(row["benchmark"], row["case"], row["algo"]): row for row in rows}
    for (benchmark, case), label in README_LABELS.items():
        matches = [row for row in rows if row["benchmark"] == benchmark and (case is None or row["case"] == case)]
        plus = next((row for row in matches if row["algo"] == PLUS), None)
        sb3 = next((row for row in matches if row["algo"] == SB3), None)
        if plus is None or sb3 is None:
            continue
        shown = [f"{r['median_s']:.2f} s" if r["median_s"] >= 1 else f"{r['median_s'] * 1e3:.1f} ms" for r in (sb3, plus)]
        lines.append(f"| {label} | {shown[0]} | {shown[1]} | {_ratio(plus)} |")
    memory = by_key.get(("memory", STEP_LARGE.name, PLUS)) or next(
        (row for row in rows if row["benchmark"] == "memory" and row["algo"] == PLUS), None
    )
    sb3_memory = next((row for row in rows if row["benchmark"] == "memory" and row["algo"] == SB3), None)
    if memory is not None and sb3_memory is not None:
        lines.append(
            f"| peak memory of the large step | {sb3_memory['peak_rss_above_baseline_mb']:.0f} MB | "
            f"{memory['peak_rss_above_baseline_mb']:.0f} MB | {_ratio(memory, 'memory_ratio_vs_sb3')} less |"
        )
    replace_readme_block("speed-table", lines)


def write_readme_threads(rows: list[dict[str, Any]], command: str) -> None:
    """Rewrite the README's ``<!-- threads-table -->`` block with steps/s at torch's default thread count."""
    lines = [
        f"`learn()` on HalfCheetah-v5 (Zoo settings) at torch's default thread count ({DEFAULT_THREADS} here), "
        f"steps/s (median of {rows[0]['n_reps']}), from `{command}`:",
        "",
        '| machine | sb3-contrib | TRPOPlus, `torch_threads=None` | TRPOPlus (default, `"auto"`) |',
        "|---|---:|---:|---:|",
    ]
    for busy in (False, True):
        by_algo = {row["algo"]: row for row in rows if row["busy"] == busy}
        if len(by_algo) == len(THREAD_ALGOS):
            cells = [f"{by_algo[algo]['steps_per_s']:.0f}" for algo in THREAD_ALGOS]
            label = "one CPU-bound process beside it" if busy else "as found"
            lines.append(f"| {label} | {' | '.join(cells)} |")
    replace_readme_block("threads-table", lines)


def plot(rows: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bars = [row for row in rows if row["benchmark"] != "memory" and row["algo"] not in (SB3, "random_actions")]
    if not bars:
        return
    short = {"step": "step", "train": "train()", "e2e": "learn()"}
    newline = "\n"
    labels = [
        f"{short[row['benchmark']]}\n"
        f"{row['case'].replace('zoo_halfcheetah_', 'Zoo ').replace('_2envs_', newline + '2 envs ').replace('_', ' ')}"
        f"\n{row['algo'].replace('trpo_plus', 'TRPOPlus').replace('_fss', ' fss=')}"
        for row in bars
    ]
    values = [row["speedup_vs_sb3"] for row in bars]
    colors = ["tab:blue" if row["algo"] == PLUS else "tab:cyan" for row in bars]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.5 * len(bars)), 4.8))
    ax.bar(range(len(bars)), values, color=colors)
    ax.set_yscale("log")
    for index, value in enumerate(values):
        ax.text(index, value, f"{value:.2f}x", ha="center", va="bottom", fontsize=9)
    ax.axhline(STEP_TARGET, color="tab:red", linestyle="--", label=f"target {STEP_TARGET:g}x (step, train)")
    ax.axhline(E2E_TARGET, color="tab:orange", linestyle=":", label=f"target {E2E_TARGET:g}x (end to end)")
    ax.axhline(1.0, color="gray", linewidth=0.8)
    top = max([*values, STEP_TARGET]) * 1.6
    ax.set_ylim(0.5, top)
    ticks = [tick for tick in (0.5, 1, 1.5, 2, 3, 5, 10, 20, 50, 100) if tick <= top]
    ax.set_yticks(ticks, [f"{tick:g}" for tick in ticks])
    ax.minorticks_off()
    ax.set_xticks(range(len(bars)), labels, fontsize=7)
    ax.set_ylabel("speedup: sb3-contrib time / TRPOPlus time (log)")
    ax.set_title("TRPOPlus vs sb3_contrib.TRPO (medians, 1 torch thread; dark: defaults, light: fisher_sub_sampling)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(HERE / "speedup.png", dpi=120)
    plt.close(fig)


# ----------------------------------------------------------------------------------------- main
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default="step,train,e2e,memory", help="comma-separated subset of the benchmarks")
    parser.add_argument("--reps", type=int, default=15, help="timed repetitions of the small step and train()")
    parser.add_argument("--large-reps", type=int, default=3, help="timed repetitions of the large step case")
    parser.add_argument("--e2e-reps", type=int, default=3, help="learn() repetitions per algorithm")
    parser.add_argument("--e2e-steps", type=int, default=20480, help="environment steps per learn()")
    parser.add_argument("--memory-reps", type=int, default=2, help="fresh subprocesses per algorithm")
    parser.add_argument("--fisher-sub-sampling", type=int, default=5, help="extra TRPOPlus variant; 0 or 1: none")
    parser.add_argument("--no-write", action="store_true", help="print only; do not overwrite the committed results")
    parser.add_argument("--profile", action="store_true", help="section timings of TRPOPlus instead of the benchmark")
    parser.add_argument(
        "--code-ref", help="measure sb3_trpo_plus as committed at this git revision (e.g. HEAD) instead of the working tree"
    )
    parser.add_argument("--replot", action="store_true", help="redraw speedup.png from results.csv and exit")
    parser.add_argument("--runs", type=int, default=1, help="full runs of the timings; ratios as median [min, max]")
    parser.add_argument("--readme", action="store_true", help="also rewrite the README's speed-table block")
    parser.add_argument("--threads-steps", type=int, default=4096, help="threads: environment steps per learn()")
    parser.add_argument(
        "--variants", default="", help="extra TRPOPlus labels timed in step and train, e.g. trpo_plus_damping0.1"
    )
    parser.add_argument("--hog", action="store_true", help="one CPU-bound process runs beside the timings (busy machine)")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.replot:
        with open(HERE / "results.csv", newline="") as handle:
            saved = [
                {key: (float(value) if key.endswith(("_s", "_sb3")) and value else value) for key, value in row.items()}
                for row in csv.DictReader(handle)
            ]
        plot(saved)
        return 0
    if args.code_ref:
        use_code_ref(args.code_ref)

    import sb3_trpo_plus  # noqa: F401  (imported before the thread count changes: its torch_threads="auto" sees the default)

    if args.memory_child:
        memory_child(args.memory_child)
        return 0
    th.set_num_threads(1)
    patch_sb3_contrib_cg()
    log = functools.partial(print, flush=True)
    if args.profile:
        profile_trpo_plus(log)
        return 0

    started = time.perf_counter()
    only = set(args.only.split(","))
    fss = args.fisher_sub_sampling if args.fisher_sub_sampling > 1 else 0
    checks: list[dict] = []
    rows: list[dict] = []
    if only & {"step", "train"}:
        log("correctness check (one step each from identical weights and data):")
        for case in (STEP_SMALL, STEP_LARGE):
            checks += check_steps(case, [SB3, PLUS] + ([f"{PLUS}_fss{fss}"] if fss else []))
        for row in checks:
            log(
                f"  {row['case']:16s} {row['algo']:18s} line search {'ok' if row['line_search_success'] else 'FAIL'}"
                f", KL {row['kl_joint']:.4f} (bound {row['kl_bound_joint']:.2f}), gain {row['surrogate_gain']:.4f}, "
                f"CG {row['cg_iterations']}, cos vs sb3 {row['cosine_vs_sb3']:.4f}, "
                f"|step|/sb3 {row['step_norm_ratio_vs_sb3']:.3f} -> {'ok' if row['ok'] else 'NOT OK'}"
            )
    cases = []
    if "step" in only:
        cases += [("step", STEP_SMALL, args.reps, 3), ("step", STEP_LARGE, args.large_reps, 1)]
    if "train" in only:
        cases += [("train", TRAIN_ZOO, args.reps, 2)]
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if args.hog else None
    runs = []
    try:
        for run in range(args.runs):
            log(f"full run {run + 1} of {args.runs}:")
            rows = []
            if cases:
                log("timings (train() on identical buffers):")
                rows += bench_train_cases(cases, fss, log, tuple(filter(None, args.variants.split(","))))
            if "e2e" in only:
                log("end to end (learn() on HalfCheetah-v5):")
                rows += bench_e2e(args.e2e_steps, args.e2e_reps, log)
            if "memory" in only:
                log("memory (fresh subprocess per run):")
                rows += bench_memory([SB3, PLUS] + ([f"{PLUS}_fss{fss}"] if fss else []), args.memory_reps, log)
            runs.append(rows)
    finally:
        if hog is not None:
            hog.kill()
            hog.wait()
    rows = combine_runs(runs) if args.runs > 1 else runs[0]
    if args.runs > 1:
        for row in rows:
            if row["algo"] != SB3:
                key = "memory_ratio_vs_sb3" if row["benchmark"] == "memory" else "speedup_vs_sb3"
                log(f"  over {args.runs} runs: {row['benchmark']:6s} {row['case']:32s} {row['algo']:18s} {_ratio(row, key)}")
    thread_rows = []
    if "threads" in only:
        log(f"default thread count ({DEFAULT_THREADS} threads; learn() on HalfCheetah-v5):")
        for busy in (False, True):
            thread_rows += bench_threads(args.threads_steps, args.e2e_reps, busy, log, write=not args.no_write)
        if args.readme and not args.no_write:
            command = "python -m benchmarks.speed.bench_speed" + "".join(f" {arg}" for arg in sys.argv[1:])
            write_readme_threads(thread_rows, command)
            log("rewrote the README's threads-table block")
    elapsed = time.perf_counter() - started
    if not args.no_write and rows:
        command = "python -m benchmarks.speed.bench_speed" + "".join(f" {arg}" for arg in sys.argv[1:])
        info = machine_info()
        write_outputs(rows, checks, info, command, elapsed)
        log(f"wrote {HERE / 'results.csv'}, {HERE / 'RESULTS.md'}, {HERE / 'speedup.png'}")
        if args.readme:
            write_readme_table(rows, info, command)
            log("rewrote the README's speed-table block")
    log(f"total {elapsed / 60:.1f} min")
    return 0 if all(row["ok"] for row in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
