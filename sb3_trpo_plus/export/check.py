"""The check of a written file against the policy: ONNX Runtime's outputs against ``predict`` (and
``predict_values``, the distribution's standard deviation) on sampled observations and, optionally, a rollout's."""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.preprocessing import maybe_transpose
from stable_baselines3.common.vec_env import VecNormalize

from sb3_trpo_plus.export.errors import require
from sb3_trpo_plus.export.family import ExportFamily, export_family
from sb3_trpo_plus.export.metadata import ACTIONS


@dataclass
class ExportCheck:
    """What :func:`export_onnx` compared: ONNX Runtime's outputs against the policy's own methods.

    :param path: the ONNX file
    :param sampled: observations sampled from the observation space
    :param rollout: observations of a rollout of the deterministic policy (0 without ``rollout_env``)
    :param max_abs_error: each float output's largest absolute difference
    :param mismatches: each discrete output's count of entries that differ (must be 0)
    :param atol: absolute tolerance; an entry passes when ``|onnx - torch| <= atol + rtol * |torch|``
    :param rtol: relative tolerance
    :param failures: what failed (empty when the check passed)
    :param note: what the graph expects that a user could miss (e.g. observations normalized outside it)
    :param inputs: each input of the graph with its dtype and shape, e.g. ``{"obs": "float64 (batch, 17)"}``
    """

    path: str
    sampled: int
    rollout: int
    max_abs_error: dict[str, float] = field(default_factory=dict)
    mismatches: dict[str, int] = field(default_factory=dict)
    atol: float = 1e-5
    rtol: float = 1e-5
    failures: list[str] = field(default_factory=list)
    note: str = ""
    inputs: dict[str, str] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return not self.failures

    def __str__(self) -> str:
        parts = [f"{name}: max |error| {error:.2g}" for name, error in self.max_abs_error.items()]
        parts += [f"{name}: {count} differ" for name, count in self.mismatches.items()]
        verdict = "matches predict" if self.passed else "DOES NOT match predict: " + "; ".join(self.failures)
        return (
            f"{self.path} {verdict} on {self.sampled} sampled and {self.rollout} rollout observations "
            f"({', '.join(parts)}; tolerance {self.atol:g} + {self.rtol:g} x |value|, exact for discrete actions)"
            + (f". It takes {'; '.join(f'{name}: {text}' for name, text in self.inputs.items())}" if self.inputs else "")
            + (f". Note: {self.note}" if self.note else "")
        )

    def compare(self, name: str, have: np.ndarray | None, want: np.ndarray, exact: bool) -> None:
        """Add one output's comparison: ONNX Runtime's ``have`` against the policy's ``want``.

        :param name: the output's name
        :param have: ONNX Runtime's output (``None``: the file has no such output)
        :param want: the policy's
        :param exact: whether the entries must be equal (discrete actions, integers)
        """
        if have is None or have.shape != want.shape:
            self.failures.append(f"{name}: shape {None if have is None else have.shape}, predict's {want.shape}")
            return
        if exact or np.issubdtype(want.dtype, np.integer):
            count = int(np.sum(have != want))
            self.mismatches[name] = self.mismatches.get(name, 0) + count
            if count:
                self.failures.append(f"{name}: {count} entries differ")
            return
        error = np.abs(have.astype(np.float64) - want.astype(np.float64))
        self.max_abs_error[name] = max(self.max_abs_error.get(name, 0.0), float(np.max(error, initial=0.0)))
        if not np.all(error <= self.atol + self.rtol * np.abs(want)):
            self.failures.append(f"{name}: max |error| {float(np.max(error)):.3g} above the tolerance")


def input_types(session: Any) -> dict[str, tuple[np.dtype, str]]:
    """Each input of an ONNX Runtime ``session``: its NumPy dtype and a description, e.g. ``float64 (batch, 17)``."""
    names = {"float": "float32", "double": "float64"}  # ONNX's names of the two; the others are NumPy's own
    types = {}
    for node in session.get_inputs():
        element = node.type.removeprefix("tensor(").removesuffix(")")
        dtype = np.dtype(names.get(element, element))
        shape = ", ".join(str(dim) for dim in node.shape)
        types[node.name] = (dtype, f"{dtype.name} ({shape})")
    return types


def _stack(observations: list[Any]) -> Any:
    if isinstance(observations[0], dict):
        return {key: np.stack([obs[key] for obs in observations]) for key in observations[0]}
    return np.stack(observations)


def _batch(obs: Any) -> Any:
    return {key: value[None] for key, value in obs.items()} if isinstance(obs, dict) else obs[None]


def rollout(family: ExportFamily, env: gym.Env, steps: int, seed: int, to_policy: Any) -> tuple[Any, dict[str, np.ndarray]]:
    """Observations (raw, in the policy's layout) of ``steps`` deterministic steps of ``family``'s policy, with the
    graph's other inputs (masks, LSTM states and episode starts) as the policy was given them at each.

    :param family: the policy's family
    :param env: the env to step (reset with ``seed``)
    :param steps: how many steps (at least one)
    :param seed: the first reset's seed
    :param to_policy: what turns a raw observation into the policy's (VecNormalize's statistics, or the identity)
    :return: the stacked observations and the other inputs by name
    """
    policy = family.policy
    observations, inputs = [], []
    obs, _ = env.reset(seed=seed)
    state: tuple[np.ndarray, ...] | None = None
    start = True
    for _ in range(steps):
        if isinstance(obs, dict):  # image entries channel-first, as VecTransposeImage gives them to the policy
            obs = {key: maybe_transpose(np.asarray(value), policy.observation_space[key]) for key, value in obs.items()}  # type: ignore[index]
        else:
            obs = maybe_transpose(np.asarray(obs), policy.observation_space)
        observations.append(obs)
        step = family.rollout_inputs(env, state, start)
        inputs.append(step)
        action, state = policy.predict(_batch(to_policy(obs)), deterministic=True, **family.predict_kwargs(step))
        obs, _, terminated, truncated, _ = env.step(action[0])
        start = terminated or truncated
        if start:
            obs, _ = env.reset()
    stacked = {name: np.concatenate([step[name] for step in inputs], axis=family.batch_axis(name)) for name in inputs[0]}
    return _stack(observations), stacked


def check_onnx(
    model: BaseAlgorithm | BasePolicy,
    path: str | os.PathLike,
    *,
    vec_normalize: VecNormalize | None = None,
    value: bool = False,
    log_std: bool = False,
    rollout_env: str | gym.Env | None = None,
    n_sampled: int = 256,
    rollout_steps: int = 256,
    atol: float = 1e-5,
    rtol: float = 1e-5,
    seed: int = 0,
) -> ExportCheck:
    """
    Run the ONNX file at ``path`` with ONNX Runtime and compare it with the policy's own ``predict`` (and
    ``predict_values``, the distribution's standard deviation) on observations sampled from the observation space and,
    with ``rollout_env``, on a rollout's. Parameters as :func:`export_onnx`'s; ``vec_normalize`` here must be the
    statistics folded into the file (or ``None``). Nothing is raised on a mismatch: see :attr:`ExportCheck.passed`.
    """
    _, ort = require()
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    policy = model.policy if isinstance(model, BaseAlgorithm) else model
    family = export_family(policy)
    rng = np.random.default_rng(seed)
    space = copy.deepcopy(policy.observation_space)  # its own random stream: the user's space is not reseeded
    space.seed(seed)

    def to_policy(obs: Any) -> Any:
        return vec_normalize.normalize_obs(obs) if vec_normalize is not None else obs

    sets = [(_stack([space.sample() for _ in range(n_sampled)]), family.sampled_inputs(n_sampled, rng))]
    rolled = 0
    if rollout_env is not None and rollout_steps > 0:
        env = gym.make(rollout_env) if isinstance(rollout_env, str) else rollout_env
        sets.append(rollout(family, env, rollout_steps, seed, to_policy))
        rolled = rollout_steps

    types = input_types(session)
    result = ExportCheck(str(path), n_sampled, rolled, atol=atol, rtol=rtol)
    result.inputs = {name: text for name, (_, text) in types.items()}
    keys = list(policy.observation_space.spaces) if isinstance(policy.observation_space, spaces.Dict) else None
    exact_actions = not isinstance(policy.action_space, spaces.Box)
    for obs, inputs in sets:
        count = len(obs[keys[0]]) if keys is not None else len(obs)
        inputs = {**inputs, **family.unobserved_inputs(count, rng, value)}
        # the observations in the graph's dtypes (obs_dtype may differ from the space's); predict gets them as they are
        observed = {"obs": obs} if keys is None else {key: obs[key] for key in keys}
        feed = {name: np.asarray(values).astype(types[name][0]) for name, values in observed.items()}
        feed.update(inputs)
        got = dict(zip([output.name for output in session.get_outputs()], session.run(None, feed), strict=True))
        normalized = to_policy(obs)
        actions, state = policy.predict(normalized, deterministic=True, **family.predict_kwargs(inputs))
        expected = {ACTIONS: np.asarray(actions)}
        with th.no_grad():
            expected.update(family.expected(policy.obs_to_tensor(normalized)[0], inputs, state, value, log_std))
        for name, want in expected.items():
            result.compare(name, got.get(name), want, exact=name == ACTIONS and exact_actions)
    return result
