"""What goes into the export: the CPU copy of the policy that is traced, the observation statistics to fold in,
the example inputs of the trace, and sb3-contrib's action-mask layout (with random masks for the check)."""

from __future__ import annotations

import copy
import os
import pickle
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.vec_env import VecEnv, VecNormalize, unwrap_vec_wrapper

from sb3_trpo_plus.export.errors import ExportError


# ------------------------------------------------------------------------------------------------ action masks
def mask_groups(action_space: spaces.Space) -> list[int]:
    """The choices of each action dimension, in sb3-contrib's mask layout: n, each of nvec, or 2 per binary action."""
    if isinstance(action_space, spaces.Discrete):
        return [int(action_space.n)]
    if isinstance(action_space, spaces.MultiDiscrete):
        return [int(n) for n in action_space.nvec.ravel()]
    if isinstance(action_space, spaces.MultiBinary):
        return [2] * int(np.prod(action_space.shape))
    raise ExportError(f"Cannot export action masks for action space {action_space}")


def mask_size(action_space: spaces.Space) -> int:
    """The length of an action mask (sb3-contrib's layout)."""
    return sum(mask_groups(action_space))


def random_masks(action_space: spaces.Space, count: int, rng: np.random.Generator) -> np.ndarray:
    """Random action masks with at least one allowed choice per action dimension."""
    parts = []
    for size in mask_groups(action_space):
        part = rng.random((count, size)) < 0.5
        part[np.arange(count), rng.integers(0, size, count)] = True
        parts.append(part)
    return np.concatenate(parts, axis=1)


# ---------------------------------------------------------------------------------------------- recurrent parts
def actor_lstm(policy: BasePolicy) -> th.nn.LSTM:
    """The actor's LSTM of a recurrent policy (sb3-contrib's ``lstm_actor``)."""
    lstm = getattr(policy, "lstm_actor", None)
    assert isinstance(lstm, th.nn.LSTM)
    return lstm


def critic_lstm(policy: BasePolicy) -> th.nn.LSTM | None:
    """The critic's own LSTM of a recurrent policy (``None``: shared with the actor, or a Linear critic)."""
    lstm = getattr(policy, "lstm_critic", None)
    return lstm if isinstance(lstm, th.nn.LSTM) else None


# ------------------------------------------------------------------------------------------ the traced inputs
#: the dtypes :func:`~sb3_trpo_plus.export.export_onnx`'s ``obs_dtype`` allows for float observations
OBS_DTYPES = ("float32", "float64")


def check_obs_dtype(obs_dtype: Any) -> np.dtype | None:
    """``obs_dtype`` as a NumPy dtype (``None``: each observation space's own), or :class:`ExportError` naming the
    allowed values."""
    if obs_dtype is None:
        return None
    try:
        dtype = np.dtype(obs_dtype)
    except TypeError:
        dtype = None
    if dtype is None or dtype.name not in OBS_DTYPES:
        raise ExportError(
            f"Invalid obs_dtype={obs_dtype!r}: expected None (each observation space's own dtype) or one of "
            f"{', '.join(map(repr, OBS_DTYPES))}"
        )
    return dtype


def observation_dtypes(space: spaces.Space, obs_dtype: np.dtype | None) -> dict[str, np.dtype]:
    """The graph's observation inputs (``obs``, or one per key of a Dict) and their dtypes: the space's own, or
    ``obs_dtype`` for a float Box (images, integer and discrete observations keep theirs)."""
    subspaces = dict(space.spaces) if isinstance(space, spaces.Dict) else {"obs": space}
    dtypes = {}
    for name, sub in subspaces.items():
        own = np.dtype(sub.dtype) if sub.dtype is not None else np.dtype(np.float32)
        chosen = obs_dtype is not None and isinstance(sub, spaces.Box) and np.issubdtype(own, np.floating)
        dtypes[name] = obs_dtype if chosen and obs_dtype is not None else own
    return dtypes


def example_inputs(
    policy: BasePolicy, family_inputs: Sequence[tuple[str, th.Tensor]], batch: int, obs_dtype: np.dtype | None = None
) -> tuple[list[str], list[th.Tensor]]:
    """Input names and example tensors: the observations (``obs``, or one per key of a Dict) in the dtypes of
    :func:`observation_dtypes`, then the family's own inputs.

    :param policy: the policy that is traced
    :param family_inputs: the family's own inputs after the observations (``ExportFamily.example_inputs``)
    :param batch: the example batch size (of the observations; the family's inputs have it already)
    :param obs_dtype: the dtype of float Box observations (``None``: the space's own, as ``predict`` takes them)
    """
    space = copy.deepcopy(policy.observation_space)  # samples from a copy: the user's space keeps its stream
    space.seed(0)
    names: list[str] = []
    tensors: list[th.Tensor] = []
    subspaces = dict(space.spaces) if isinstance(space, spaces.Dict) else {"obs": space}
    dtypes = observation_dtypes(space, obs_dtype)
    for name, sub in subspaces.items():
        sample = np.stack([sub.sample() for _ in range(batch)]).astype(dtypes[name])
        names.append(name)
        tensors.append(th.as_tensor(sample))
    for name, tensor in family_inputs:
        names.append(name)
        tensors.append(tensor)
    taken = set()
    for name in names:
        if name in taken:
            raise ExportError(f"Cannot export: the observation key {name!r} is also the name of another input")
        taken.add(name)
    return names, tensors


def cpu_copy(policy: BasePolicy) -> BasePolicy:
    """A CPU copy of ``policy`` in evaluation mode, built the way ``load`` builds one (its class, its constructor
    parameters, its state dict), so that tracing never touches the user's object; a policy whose constructor
    parameters do not rebuild it is deep-copied instead."""
    try:
        parameters = policy._get_constructor_parameters()
        for name in ("observation_space", "action_space"):  # NatureCNN samples its space: the user's keeps its stream
            if name in parameters:
                parameters[name] = copy.deepcopy(parameters[name])
        copied = type(policy)(**parameters).to("cpu")
        copied.load_state_dict({key: value.detach().to("cpu") for key, value in policy.state_dict().items()})
    except Exception as error:  # a custom policy with other constructor parameters
        try:
            with th.no_grad():
                copied = copy.deepcopy(policy).to("cpu")
        except Exception as deep_error:
            raise ExportError(
                f"Cannot export {type(policy).__name__}: it could not be rebuilt from "
                f"_get_constructor_parameters() ({error}) nor deep-copied ({deep_error})"
            ) from deep_error
    copied.set_training_mode(False)
    return copied


# --------------------------------------------------------------------------------- statistics outside the model
def _find_vec_normalize(model: Any) -> VecNormalize | None:
    env = model.get_env() if isinstance(model, BaseAlgorithm) else None
    found = unwrap_vec_wrapper(env, VecNormalize) if isinstance(env, VecEnv) else None
    return found if isinstance(found, VecNormalize) else None


def resolve_vec_normalize(model: Any, vec_normalize: VecNormalize | str | os.PathLike | bool | None) -> VecNormalize | None:
    """The observation statistics to fold into the graph (``None``: none), from :func:`export_onnx`'s argument.

    :param model: the algorithm or policy being exported (an algorithm's env is searched for ``VecNormalize``)
    :param vec_normalize: ``None`` (the env's, if any), ``True`` (the env's, required), ``False`` (none), a
        ``VecNormalize`` or the path of the file ``VecNormalize.save`` wrote
    """
    if vec_normalize is False:
        return None
    if vec_normalize is None or vec_normalize is True:
        found = _find_vec_normalize(model)
        if vec_normalize is True and found is None:
            raise ExportError(
                "Invalid vec_normalize=True: the model has no env with a VecNormalize; pass the "
                "VecNormalize object or the path of its saved statistics"
            )
        return found if found is not None and found.norm_obs else None
    if isinstance(vec_normalize, VecNormalize):
        return vec_normalize if vec_normalize.norm_obs else None
    if isinstance(vec_normalize, str | os.PathLike):
        with open(vec_normalize, "rb") as handle:
            loaded = pickle.load(handle)
        if not isinstance(loaded, VecNormalize):
            raise ExportError(
                f"Invalid vec_normalize={str(vec_normalize)!r}: the file holds a {type(loaded).__name__}, "
                "expected the statistics VecNormalize.save writes"
            )
        return loaded if loaded.norm_obs else None
    raise ExportError(
        f"Invalid vec_normalize={vec_normalize!r}: expected None (the model's env's, if any), False, a "
        "VecNormalize or the path of VecNormalize.save's file"
    )
