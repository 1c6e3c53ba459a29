"""The golden record: what two updates leave behind, for configurations that cover every path of the update.

A move of code (the redesign of issue 40) must keep behaviour bit for bit: the same parameters, optimizer state,
observation and return statistics and logged values after two updates, including the order of random draws.
``tests/test_golden.py`` compares a fresh record with the stored one using ``torch.equal``.

Write the stored record again only when behaviour changes on purpose (and say so in the commit)::

    python -m tests.golden --write
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.envs import SimpleMultiObsEnv
from stable_baselines3.common.utils import set_random_seed

PATH = Path(__file__).resolve().parent / "data" / "golden_two_updates.pt"


def _algorithm(family: str) -> type:
    import sb3_trpo_plus

    return {
        "plain": sb3_trpo_plus.TRPOPlus,
        "masked": sb3_trpo_plus.MaskableTRPOPlus,
        "recurrent": sb3_trpo_plus.RecurrentTRPOPlus,
    }[family]


def _masked_env() -> gym.Env:
    from sb3_contrib.common.envs import InvalidActionEnvDiscrete

    return InvalidActionEnvDiscrete(dim=10, n_invalid_actions=6)


def _pendulum() -> gym.Env:
    return gym.make("Pendulum-v1")


#: name -> (family, policy, env factory, constructor arguments): the fast and the generic paths, gSDE, Dict
#: observations, the masked family, both recurrent critic layouts, normalization off (the Categorical fast path),
#: the Fisher on a sub-sample with two envs
CASES: dict[str, tuple[str, str, Callable[[], Any], dict[str, Any]]] = {
    "mlp_fast": ("plain", "MlpPolicy", _pendulum, {}),
    "mlp_generic": ("plain", "MlpPolicy", _pendulum, {"fast_paths": False}),
    "gsde": ("plain", "MlpPolicy", _pendulum, {"use_sde": True, "sde_sample_freq": 4}),
    "dict": (
        "plain",
        "MultiInputPolicy",
        lambda: SimpleMultiObsEnv(random_start=False),
        {"policy_kwargs": {"features_extractor_kwargs": {"cnn_output_dim": 8}}},
    ),
    "masked": ("masked", "MlpPolicy", _masked_env, {}),
    "lstm_own_critic": (
        "recurrent",
        "MlpLstmPolicy",
        _pendulum,
        {"policy_kwargs": {"lstm_hidden_size": 8, "enable_critic_lstm": True}},
    ),
    "lstm_shared": (
        "recurrent",
        "MlpLstmPolicy",
        _pendulum,
        {"policy_kwargs": {"lstm_hidden_size": 8, "enable_critic_lstm": False, "shared_lstm": True}},
    ),
    "no_normalization": (
        "plain",
        "MlpPolicy",
        lambda: gym.make("CartPole-v1"),
        {"normalize_observations": False, "normalize_values": False},
    ),
    "fisher_sub_sampling": (
        "plain",
        "MlpPolicy",
        lambda: make_vec_env("Pendulum-v1", n_envs=2, seed=3),
        {"fisher_sub_sampling": 4},
    ),
}

#: logged keys that repeat another logged key under a clearer name (alias -> key): each must equal its key
ALIASES = {"train/trust_region_kl": "train/kl"}

#: the small budget every case shares: two updates of 128 steps per env
COMMON: dict[str, Any] = {
    "n_steps": 128,
    "batch_size": 32,
    "n_critic_updates": 3,
    "seed": 0,
    "device": "cpu",
    "torch_threads": 1,
}


def _tensors(value: Any, prefix: str, out: dict[str, th.Tensor]) -> None:
    """Every tensor, array and number of a nested state (an optimizer's ``state_dict``), under flat keys."""
    if isinstance(value, dict):
        for key, item in value.items():
            _tensors(item, f"{prefix}.{key}", out)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _tensors(item, f"{prefix}.{index}", out)
    elif isinstance(value, th.Tensor):
        out[prefix] = value.detach().clone()
    elif isinstance(value, np.ndarray):
        out[prefix] = th.as_tensor(value.copy())
    elif isinstance(value, bool | int | float):
        out[prefix] = th.tensor(value, dtype=th.float64)


def record(name: str) -> dict[str, th.Tensor]:
    """Two updates of case ``name``: parameters and buffers (the observation statistics), optimizer state, the return
    statistics, and the ``train/`` values logged by the second update."""
    family, policy, make_env, kwargs = CASES[name]
    set_random_seed(COMMON["seed"])  # SimpleMultiObsEnv draws its images from NumPy's global generator when built
    model = _algorithm(family)(policy, make_env(), **COMMON, **kwargs)
    n_envs = model.n_envs
    model.learn(2 * COMMON["n_steps"] * n_envs, log_interval=10_000)  # no dump: the logged values stay readable
    out: dict[str, th.Tensor] = {}
    _tensors(model.policy.state_dict(), "policy", out)
    _tensors(model.policy.optimizer.state_dict(), "optimizer", out)
    if model.value_normalizer is not None:
        _tensors({"mean": model.value_normalizer.mean, "var": model.value_normalizer.var}, "returns", out)
        out["returns.count"] = th.tensor(float(model.value_normalizer.count), dtype=th.float64)
    logged = {key: value for key, value in model.logger.name_to_value.items() if key.startswith("train/")}
    for alias, source in ALIASES.items():  # checked here, bit for bit, and left out of the record
        assert logged.pop(alias) == logged[source], f"{name}: {alias} is not {source}"
    assert logged, f"{name}: nothing logged under train/"
    _tensors(logged, "logged", out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", action="store_true", help=f"store the record in {PATH}")
    args = parser.parse_args()
    th.set_num_threads(1)
    records = {name: record(name) for name in CASES}
    for name, values in records.items():
        print(f"{name}: {len(values)} tensors")
    if args.write:
        PATH.parent.mkdir(exist_ok=True)
        th.save(records, PATH)
        print(f"written: {PATH}")


if __name__ == "__main__":
    main()
