"""
Export a trained policy to ONNX: one graph from raw observations to the actions ``model.predict(obs,
deterministic=True)`` returns, with the observation statistics inside, checked against ``predict`` with
ONNX Runtime after it is written.

    from sb3_trpo_plus import export_onnx
    check = export_onnx(model, "policy.onnx")   # raises ExportCheckError when the file disagrees with predict
    print(check)

    python -m sb3_trpo_plus export model.zip policy.onnx --env HalfCheetah-v5

The graph holds, in order: ``VecNormalize``'s observation statistics when they live outside the model (folded in,
see ``vec_normalize``), SB3's preprocessing (image scaling, one-hot encoding), the policy's own normalization and
network, the mode of its action distribution, and ``predict``'s clipping (or unscaling, for squashed policies) to
the action space. It is traced from the policy's own methods (``_predict``, ``predict_values``), so a custom
policy exports as it computes; one that does not trace gets :class:`ExportError`, naming the part.

Exporter: PyTorch's ``torch.export``-based exporter (``torch.onnx.export(..., dynamo=True)``), the default and
supported one since PyTorch 2.9; the TorchScript-based one is deprecated (it warns that it will be removed).
It needs ``onnxscript``; ``onnx`` and ``onnxruntime`` write the metadata and run the check. All three are in the
``export`` extra: ``pip install 'sb3-trpo-plus[export]'``.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import pickle
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.distributions import DiagGaussianDistribution, StateDependentNoiseDistribution
from stable_baselines3.common.policies import BaseModel, BasePolicy
from stable_baselines3.common.preprocessing import is_image_space
from stable_baselines3.common.vec_env import VecEnv, VecNormalize, unwrap_vec_wrapper

from sb3_trpo_plus import families
from sb3_trpo_plus.normalization import observation_normalizers

EXTRA = "pip install 'sb3-trpo-plus[export]'"
#: the names of the graph's inputs and outputs besides the observations (a Dict's keys name its inputs)
ACTION_MASK, EPISODE_START, STATE_H, STATE_C = "action_mask", "episode_start", "lstm_h", "lstm_c"
CRITIC_H, CRITIC_C = "critic_lstm_h", "critic_lstm_c"
ACTIONS, VALUE, LOG_STD = "actions", "value", "log_std"
#: ``metadata_props`` keys written into the file
METADATA_KEYS = ("observation_space", "action_space", "inputs", "outputs", "producer", "vec_normalize")


class ExportError(ValueError):
    """The policy (or an argument) cannot be exported as asked; the message names the part."""


class ExportCheckError(RuntimeError):
    """The written file disagrees with ``predict`` beyond the tolerance (the file is removed)."""


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
            + (f". Note: {self.note}" if self.note else "")
        )


def _require() -> tuple[Any, Any]:
    """``onnx`` and ``onnxruntime``, or one line naming the extra."""
    try:
        import onnx
        import onnxruntime
        import onnxscript  # noqa: F401  (torch's exporter needs it)
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(
            f"export_onnx needs {error.name}, which is not installed: {EXTRA}", name=error.name
        ) from error
    return onnx, onnxruntime


# ---------------------------------------------------------------------------------------------------- spaces
def space_to_json(space: spaces.Space) -> dict[str, Any]:
    """A JSON description of a Gymnasium space (bounds that are all equal are written once)."""

    def bound(values: np.ndarray) -> Any:
        flat = np.asarray(values).ravel()
        if flat.size and np.all(flat == flat[0]):
            return flat[0].item()
        return np.asarray(values).tolist()

    if isinstance(space, spaces.Box):
        return {
            "type": "Box",
            "shape": list(space.shape),
            "dtype": str(space.dtype),
            "low": bound(space.low),
            "high": bound(space.high),
        }
    if isinstance(space, spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, spaces.MultiDiscrete):
        return {"type": "MultiDiscrete", "nvec": space.nvec.tolist(), "start": space.start.tolist()}
    if isinstance(space, spaces.MultiBinary):
        return {"type": "MultiBinary", "n": np.asarray(space.n).tolist()}
    if isinstance(space, spaces.Dict):
        return {"type": "Dict", "spaces": {key: space_to_json(sub) for key, sub in space.spaces.items()}}
    raise ExportError(
        f"Cannot export observation or action space {space}: allowed are Box, Discrete, MultiDiscrete, "
        "MultiBinary and Dict of those"
    )


# ---------------------------------------------------------------------------------------------- the graph
@contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The exporter logs a warning per torchvision operator it cannot register (torchvision is not needed here)."""
    logger = logging.getLogger("torch.onnx._internal.exporter._registration")
    before = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(before)


@contextmanager
def _distributions_unchecked() -> Iterator[None]:
    """torch.distributions' argument checks branch on data, which ``torch.export`` cannot trace; they only check
    that the network's outputs are valid parameters, which the comparison with ``predict`` covers."""
    before = th.distributions.Distribution._validate_args
    th.distributions.Distribution.set_default_validate_args(False)
    try:
        yield
    finally:
        th.distributions.Distribution.set_default_validate_args(before)


class FoldedVecNormalize(th.nn.Module):
    """``VecNormalize.normalize_obs`` as a module: ``clip((obs - mean) / sqrt(var + eps), +-clip_obs)`` on the keys it
    normalizes, in float64 as VecNormalize computes it, then back to the observation's dtype."""

    def __init__(self, vec_normalize: VecNormalize, observation_space: spaces.Space) -> None:
        super().__init__()
        self.clip = float(vec_normalize.clip_obs)
        self.epsilon = float(vec_normalize.epsilon)
        statistics = vec_normalize.obs_rms
        if isinstance(observation_space, spaces.Dict):
            keys = list(vec_normalize.norm_obs_keys or observation_space.spaces)
            assert isinstance(statistics, dict)
            self.keys = keys
            chosen: dict[str, Any] = {key: statistics[key] for key in keys}
        else:
            self.keys = [""]
            chosen = {"": statistics}
        for index, key in enumerate(self.keys):
            self.register_buffer(f"mean_{index}", th.as_tensor(np.asarray(chosen[key].mean, dtype=np.float64)))
            self.register_buffer(
                f"std_{index}", th.as_tensor(np.sqrt(np.asarray(chosen[key].var, dtype=np.float64) + self.epsilon))
            )

    def normalize(self, obs: th.Tensor, index: int) -> th.Tensor:
        mean, std = getattr(self, f"mean_{index}"), getattr(self, f"std_{index}")
        return th.clamp((obs.double() - mean) / std, -self.clip, self.clip)


class PolicyGraph(th.nn.Module):
    """The exported computation: raw observations (and mask or LSTM state) in, ``predict``'s outputs out.

    :param policy: a CPU copy of the policy, in evaluation mode
    :param folded: VecNormalize's statistics to apply first, or ``None``
    :param kind: ``"plain"``, ``"masked"`` or ``"recurrent"``
    :param value: also output the value head's estimate (``predict_values``)
    :param log_std: also output the log standard deviation of the Gaussian action distribution
    """

    def __init__(self, policy: BasePolicy, folded: FoldedVecNormalize | None, kind: str, value: bool, log_std: bool) -> None:
        super().__init__()
        self.policy = policy
        self.folded = folded
        self.kind = kind
        self.value = value
        self.log_std = log_std
        space = policy.observation_space
        self.keys = list(space.spaces) if isinstance(space, spaces.Dict) else None
        action_space = policy.action_space
        self.box = isinstance(action_space, spaces.Box)
        if self.box:
            assert isinstance(action_space, spaces.Box)
            self.register_buffer("low", th.as_tensor(action_space.low, dtype=th.float32))
            self.register_buffer("high", th.as_tensor(action_space.high, dtype=th.float32))
        self.squash = bool(getattr(policy, "squash_output", False))

    def _observation(self, inputs: tuple[th.Tensor, ...]) -> Any:
        if self.keys is None:
            obs = inputs[0]
            if self.folded is not None and self.folded.keys == [""]:
                obs = self.folded.normalize(obs, 0)
            return obs
        result = {}
        for key, tensor in zip(self.keys, inputs[: len(self.keys)], strict=True):
            if self.folded is not None and key in self.folded.keys:
                tensor = self.folded.normalize(tensor, self.folded.keys.index(key))
            result[key] = tensor
        return result

    def _finish(self, actions: th.Tensor) -> th.Tensor:
        """``predict``'s last steps: the action space's shape, then unscaling (squashed) or clipping (Box)."""
        shape = self.policy.action_space.shape or ()
        actions = actions.reshape((-1, *shape))
        if self.box:
            low, high = self.low, self.high
            assert isinstance(low, th.Tensor) and isinstance(high, th.Tensor)
            if self.squash:
                return low + 0.5 * (actions + 1.0) * (high - low)
            return th.clamp(actions.float(), low, high)
        return actions

    def forward(self, *inputs: th.Tensor) -> tuple[th.Tensor, ...]:
        n_obs = len(self.keys) if self.keys is not None else 1
        obs = self._observation(inputs)
        policy: Any = self.policy
        outputs: list[th.Tensor] = []
        value: th.Tensor | None = None
        critic_states: list[th.Tensor] = []
        if self.kind == "recurrent":
            h, c, episode_start = inputs[n_obs], inputs[n_obs + 1], inputs[n_obs + 2]
            features = BaseModel.extract_features(policy, obs, policy.pi_features_extractor)
            keep = (1.0 - episode_start).view(1, -1, 1)
            # sb3-contrib's _process_sequence for one step: the states of new episodes are zeroed, then one LSTM step
            output, (h_out, c_out) = policy.lstm_actor(features.unsqueeze(0), (keep * h, keep * c))
            latent = policy.mlp_extractor.forward_actor(output.squeeze(0))
            distribution = policy._get_action_dist_from_latent(latent)
            outputs = [self._finish(distribution.get_actions(deterministic=True)), h_out, c_out]
            if self.value:  # sb3-contrib's predict_values: the critic's own LSTM, the actor's (shared), or a Linear
                vf_features = BaseModel.extract_features(policy, obs, policy.vf_features_extractor)
                if policy.lstm_critic is not None:
                    critic_h, critic_c = inputs[n_obs + 3], inputs[n_obs + 4]
                    critic_output, (critic_h, critic_c) = policy.lstm_critic(
                        vf_features.unsqueeze(0), (keep * critic_h, keep * critic_c)
                    )
                    latent_vf = critic_output.squeeze(0)
                    critic_states = [critic_h, critic_c]
                elif policy.shared_lstm:
                    latent_vf = output.squeeze(0)
                else:
                    latent_vf = policy.critic(vf_features)
                value = policy.value_net(policy.mlp_extractor.forward_critic(latent_vf))
        elif self.kind == "masked":
            mask = inputs[n_obs]
            distribution = policy.get_distribution(obs, action_masks=mask)
            outputs = [self._finish(distribution.get_actions(deterministic=True))]
        else:
            outputs = [self._finish(policy._predict(obs, deterministic=True))]
            distribution = policy.get_distribution(obs) if self.log_std else None
        if self.value:
            outputs.append(policy.predict_values(obs) if value is None else value)
            outputs += critic_states
        if self.log_std:
            assert distribution is not None
            outputs.append(th.log(distribution.distribution.stddev))
        return tuple(outputs)


# ---------------------------------------------------------------------------------------------------- inputs
def _kind(policy: BasePolicy) -> str:
    """``"recurrent"``, ``"masked"`` (sb3-contrib's policies) or ``"plain"``."""
    return families.policy_family(policy)


def _lstm(policy: BasePolicy) -> th.nn.LSTM:
    """The actor's LSTM of a recurrent policy (sb3-contrib's ``lstm_actor``)."""
    lstm = getattr(policy, "lstm_actor", None)
    assert isinstance(lstm, th.nn.LSTM)
    return lstm


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


def _find_vec_normalize(model: Any) -> VecNormalize | None:
    env = model.get_env() if isinstance(model, BaseAlgorithm) else None
    found = unwrap_vec_wrapper(env, VecNormalize) if isinstance(env, VecEnv) else None
    return found if isinstance(found, VecNormalize) else None


def _resolve_vec_normalize(model: Any, vec_normalize: VecNormalize | str | os.PathLike | bool | None) -> VecNormalize | None:
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


def _critic_lstm(policy: BasePolicy) -> th.nn.LSTM | None:
    """The critic's own LSTM of a recurrent policy (``None``: shared with the actor, or a Linear critic)."""
    lstm = getattr(policy, "lstm_critic", None)
    return lstm if isinstance(lstm, th.nn.LSTM) else None


def _example_inputs(policy: BasePolicy, kind: str, batch: int, value: bool = False) -> tuple[list[str], list[th.Tensor]]:
    """Input names and example tensors (the dtypes ``predict`` would hand the policy)."""
    space = copy.deepcopy(policy.observation_space)  # samples from a copy: the user's space keeps its random stream
    space.seed(0)
    names: list[str] = []
    tensors: list[th.Tensor] = []
    subspaces = dict(space.spaces) if isinstance(space, spaces.Dict) else {"obs": space}
    for name, sub in subspaces.items():
        sample = np.stack([sub.sample() for _ in range(batch)])
        names.append(name)
        tensors.append(th.as_tensor(sample))
    if kind == "masked":
        names.append(ACTION_MASK)
        tensors.append(th.ones((batch, mask_size(policy.action_space)), dtype=th.bool))
    if kind == "recurrent":
        lstm = _lstm(policy)
        for name in (STATE_H, STATE_C):
            names.append(name)
            tensors.append(th.zeros((lstm.num_layers, batch, lstm.hidden_size)))
        names.append(EPISODE_START)
        tensors.append(th.zeros(batch))
        critic = _critic_lstm(policy) if value else None
        if critic is not None:
            for name in (CRITIC_H, CRITIC_C):
                names.append(name)
                tensors.append(th.zeros((critic.num_layers, batch, critic.hidden_size)))
    taken = set()
    for name in names:
        if name in taken:
            raise ExportError(f"Cannot export: the observation key {name!r} is also the name of another input")
        taken.add(name)
    return names, tensors


def _cpu_copy(policy: BasePolicy) -> BasePolicy:
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


# ---------------------------------------------------------------------------------------------------- export
def export_onnx(
    model: BaseAlgorithm | BasePolicy,
    path: str | os.PathLike,
    *,
    vec_normalize: VecNormalize | str | os.PathLike | bool | None = None,
    value: bool = False,
    log_std: bool = False,
    check: bool = True,
    rollout_env: str | gym.Env | None = None,
    n_sampled: int = 256,
    rollout_steps: int = 256,
    atol: float = 1e-5,
    rtol: float = 1e-5,
    seed: int = 0,
    opset_version: int | None = None,
) -> ExportCheck | None:
    """
    Write ``model``'s deterministic policy as one ONNX graph, from raw observations to ``predict``'s actions, and
    check it against ``predict`` with ONNX Runtime.

    Inputs: ``obs`` (or one input per key of a Dict observation, named by the key), in the policy's observation
    space (images channel-first, as ``VecTransposeImage`` gives them) and its dtype, with a batch dimension; then
    ``action_mask`` (bool, sb3-contrib's layout) for ``MaskableTRPOPlus``; ``lstm_h``, ``lstm_c`` (``(layers,
    batch, hidden)``) and ``episode_start`` (float, 1 where an episode starts) for ``RecurrentTRPOPlus``, as
    ``predict(..., state=(h, c), episode_start=...)`` takes them. Outputs: ``actions``, then ``lstm_h_out`` and
    ``lstm_c_out`` (recurrent), ``value`` and ``log_std`` when asked for. A recurrent policy whose critic has its own
    LSTM also takes ``critic_lstm_h``, ``critic_lstm_c`` and outputs ``critic_lstm_h_out``, ``critic_lstm_c_out``
    with ``value=True``. The file's ``metadata_props`` (:data:`METADATA_KEYS`) hold the spaces (JSON), the inputs and
    outputs, and where the observation statistics came from.

    :param model: a trained model (TRPOPlus, MaskableTRPOPlus, RecurrentTRPOPlus or any SB3 actor-critic) or its policy
    :param path: where to write the ``.onnx`` file
    :param vec_normalize: observation statistics that live outside the model, folded into the graph so that it takes
        raw observations. ``None`` (default): the model's env's ``VecNormalize``, if it has one; a ``VecNormalize``
        or the path of the file ``VecNormalize.save`` wrote (models trained behind ``VecNormalize``, including
        every model of earlier versions); ``False``: none (the graph then takes normalized observations).
        Statistics normalized inside the policy (``normalize_observations``) are always in the graph.
    :param value: also output the value estimate (``predict_values``; recurrent: as sb3-contrib's ``forward`` computes
        it, with the critic's own LSTM state when it has one)
    :param log_std: also output the log standard deviation of a Gaussian action distribution
    :param check: run the file with ONNX Runtime and compare with ``predict``; on a mismatch the file is removed and
        :class:`ExportCheckError` raised
    :param rollout_env: an env id or ``gym.Env`` whose rollout (``rollout_steps`` deterministic steps) adds its
        observations to the check; ``None``: sampled observations only
    :param n_sampled: observations sampled from the observation space for the check
    :param rollout_steps: steps of the rollout
    :param atol: absolute tolerance of the check on float outputs
    :param rtol: relative tolerance of the check on float outputs (discrete actions must be equal)
    :param seed: seed of the sampled observations, masks, states and the rollout
    :param opset_version: the ONNX opset (``None``: the exporter's default)
    :return: what the check compared (``None`` with ``check=False``)
    """
    onnx, _ = _require()
    policy = model.policy if isinstance(model, BaseAlgorithm) else model
    if not isinstance(policy, BasePolicy):
        raise ExportError(f"Invalid model: expected an SB3 algorithm or policy, got {type(model).__name__}")
    kind = _kind(policy)
    if value and not hasattr(policy, "predict_values"):
        raise ExportError(f"Invalid value=True: {type(policy).__name__} has no predict_values")
    statistics = _resolve_vec_normalize(model, vec_normalize)
    exported = _cpu_copy(policy)
    folded = FoldedVecNormalize(statistics, exported.observation_space) if statistics is not None else None
    graph = PolicyGraph(exported, folded, kind, value, log_std).eval()
    names, tensors = _example_inputs(exported, kind, batch=2, value=value)
    output_names = [ACTIONS]
    if kind == "recurrent":
        output_names += [f"{STATE_H}_out", f"{STATE_C}_out"]
    if value:
        output_names.append(VALUE)
        if kind == "recurrent" and _critic_lstm(exported) is not None:
            output_names += [f"{CRITIC_H}_out", f"{CRITIC_C}_out"]
    if log_std:
        output_names.append(LOG_STD)

    distribution = getattr(policy, "action_dist", None)
    if log_std and not isinstance(distribution, DiagGaussianDistribution | StateDependentNoiseDistribution):
        raise ExportError(
            f"Invalid log_std=True: the action distribution is {type(distribution).__name__}; allowed "
            "only for Gaussian ones (DiagGaussianDistribution, StateDependentNoiseDistribution: Box actions)"
        )
    with _distributions_unchecked(), th.no_grad(), _quiet_exporter():
        batch = th.export.Dim("batch", min=1)
        shapes = tuple({1: batch} if name in (STATE_H, STATE_C, CRITIC_H, CRITIC_C) else {0: batch} for name in names)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                program = th.onnx.export(
                    graph,
                    tuple(tensors),
                    dynamo=True,
                    input_names=names,
                    output_names=output_names,
                    dynamic_shapes=(shapes,),
                    opset_version=opset_version,
                    verbose=False,
                )
        except Exception as error:  # torch.export's own errors say which line did not trace
            raise ExportError(
                f"Cannot export {type(policy).__name__}: torch.export could not trace {_explain(error, exported)}"
            ) from error
    assert program is not None
    proto = program.model_proto
    metadata = {
        "observation_space": json.dumps(space_to_json(exported.observation_space)),
        "action_space": json.dumps(space_to_json(exported.action_space)),
        "inputs": json.dumps(names),
        "outputs": json.dumps(output_names),
        "producer": f"sb3_trpo_plus.export_onnx ({type(model).__name__}, deterministic actions as predict returns them)",
        "vec_normalize": "folded into the graph" if folded is not None else "none",
    }
    assert tuple(metadata) == METADATA_KEYS
    del proto.metadata_props[:]
    for key, text in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, text
    path = Path(path)
    onnx.save_model(proto, str(path))
    if not check:
        return None
    result = check_onnx(
        model,
        path,
        vec_normalize=statistics,
        value=value,
        log_std=log_std,
        rollout_env=rollout_env,
        n_sampled=n_sampled,
        rollout_steps=rollout_steps,
        atol=atol,
        rtol=rtol,
        seed=seed,
    )
    if not result.passed:
        path.unlink()
        raise ExportCheckError(f"{result} (the file was removed)")
    if statistics is None and _has_vector_box(exported.observation_space) and not observation_normalizers(exported):
        result.note = (
            "no observation statistics are in the graph (none in the policy, no VecNormalize folded): it takes "
            "observations exactly as the policy was given them in training. A model trained behind VecNormalize "
            "needs vec_normalize= (the file VecNormalize.save wrote) to take raw observations."
        )
    return result


def _has_vector_box(space: spaces.Space) -> bool:
    """Whether ``space`` has a Box that is not an image (what VecNormalize or the policy would normalize)."""
    if isinstance(space, spaces.Dict):
        return any(_has_vector_box(sub) for sub in space.spaces.values())
    return isinstance(space, spaces.Box) and not is_image_space(space, check_channels=False)


# ----------------------------------------------------------------------------------------------------- check
def _random_masks(action_space: spaces.Space, count: int, rng: np.random.Generator) -> np.ndarray:
    """Random action masks with at least one allowed choice per action dimension."""
    parts = []
    for size in mask_groups(action_space):
        part = rng.random((count, size)) < 0.5
        part[np.arange(count), rng.integers(0, size, count)] = True
        parts.append(part)
    return np.concatenate(parts, axis=1)


def _stack(observations: list[Any]) -> Any:
    if isinstance(observations[0], dict):
        return {key: np.stack([obs[key] for obs in observations]) for key in observations[0]}
    return np.stack(observations)


def _rollout(
    policy: BasePolicy, kind: str, env: gym.Env, steps: int, seed: int, to_policy: Any
) -> tuple[Any, np.ndarray | None, tuple[np.ndarray, np.ndarray] | None, np.ndarray | None]:
    """Observations (raw, in the policy's layout) of ``steps`` deterministic steps, with the masks or LSTM states
    and episode starts the policy was given at each."""
    from stable_baselines3.common.preprocessing import maybe_transpose

    if kind == "masked":  # a masked policy is sb3-contrib's, so sb3-contrib is installed
        from sb3_contrib.common.maskable.utils import get_action_masks, is_masking_supported

    observations, masks, hs, cs, starts = [], [], [], [], []
    obs, _ = env.reset(seed=seed)
    state: tuple[np.ndarray, ...] | None = None
    start = True
    for _ in range(steps):
        if isinstance(obs, dict):  # image entries channel-first, as VecTransposeImage gives them to the policy
            obs = {key: maybe_transpose(np.asarray(value), policy.observation_space[key]) for key, value in obs.items()}  # type: ignore[index]
        else:
            obs = maybe_transpose(np.asarray(obs), policy.observation_space)
        observations.append(obs)
        kwargs: dict[str, Any] = {}
        if kind == "masked":  # the env's masks as sb3-contrib reads them (through wrappers); else every action allowed
            mask = (
                np.asarray(get_action_masks(env), dtype=bool)
                if is_masking_supported(env)
                else np.ones(mask_size(policy.action_space), dtype=bool)
            )
            masks.append(mask)
            kwargs["action_masks"] = mask[None]
        if kind == "recurrent":
            lstm = _lstm(policy)
            if state is None:
                state = (np.zeros((lstm.num_layers, 1, lstm.hidden_size), np.float32),) * 2
            hs.append(state[0][:, 0])
            cs.append(state[1][:, 0])
            starts.append(float(start))
            kwargs.update(state=state, episode_start=np.array([start]))
        action, state = policy.predict(_batch(to_policy(obs)), deterministic=True, **kwargs)
        obs, _, terminated, truncated, _ = env.step(action[0])
        start = terminated or truncated
        if start:
            obs, _ = env.reset()
    stacked = _stack(observations)
    lstm_states = (np.stack(hs, axis=1), np.stack(cs, axis=1)) if kind == "recurrent" else None
    return stacked, np.stack(masks) if masks else None, lstm_states, np.array(starts, np.float32) if starts else None


def _batch(obs: Any) -> Any:
    return {key: value[None] for key, value in obs.items()} if isinstance(obs, dict) else obs[None]


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
    _, ort = _require()
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    policy = model.policy if isinstance(model, BaseAlgorithm) else model
    kind = _kind(policy)
    rng = np.random.default_rng(seed)
    space = copy.deepcopy(policy.observation_space)  # its own random stream: the user's space is not reseeded
    space.seed(seed)

    def to_policy(obs: Any) -> Any:
        return vec_normalize.normalize_obs(obs) if vec_normalize is not None else obs

    sampled = _stack([space.sample() for _ in range(n_sampled)])
    masks = _random_masks(policy.action_space, n_sampled, rng) if kind == "masked" else None
    lstm_states = None
    starts = None
    if kind == "recurrent":
        lstm = _lstm(policy)
        shape = (lstm.num_layers, n_sampled, lstm.hidden_size)
        lstm_states = (rng.normal(size=shape).astype(np.float32), rng.normal(size=shape).astype(np.float32))
        starts = (rng.random(n_sampled) < 0.3).astype(np.float32)
    sets = [(sampled, masks, lstm_states, starts)]
    rolled = 0
    if rollout_env is not None and rollout_steps > 0:
        env = gym.make(rollout_env) if isinstance(rollout_env, str) else rollout_env
        sets.append(_rollout(policy, kind, env, rollout_steps, seed, to_policy))
        rolled = rollout_steps

    result = ExportCheck(str(path), n_sampled, rolled, atol=atol, rtol=rtol)
    keys = list(policy.observation_space.spaces) if isinstance(policy.observation_space, spaces.Dict) else None
    for obs, mask, state, start in sets:
        feed: dict[str, np.ndarray] = {}
        if keys is None:
            feed["obs"] = np.asarray(obs, dtype=policy.observation_space.dtype)
        else:
            for key in keys:
                feed[key] = np.asarray(obs[key], dtype=policy.observation_space[key].dtype)  # type: ignore[index]
        kwargs: dict[str, Any] = {}
        if mask is not None:
            feed[ACTION_MASK] = mask
            kwargs["action_masks"] = mask
        critic_states = None
        if state is not None and start is not None:
            feed[STATE_H], feed[STATE_C], feed[EPISODE_START] = state[0], state[1], start
            kwargs.update(state=state, episode_start=start)
            critic = _critic_lstm(policy) if value else None
            if critic is not None:  # the critic's own LSTM state: random, as the actor's of the sampled rows
                shape = (critic.num_layers, len(start), critic.hidden_size)
                critic_states = (rng.normal(size=shape).astype(np.float32), rng.normal(size=shape).astype(np.float32))
                feed[CRITIC_H], feed[CRITIC_C] = critic_states
        got = dict(zip([output.name for output in session.get_outputs()], session.run(None, feed), strict=True))
        normalized = to_policy(obs)
        actions, new_state = policy.predict(normalized, deterministic=True, **kwargs)
        expected = {ACTIONS: np.asarray(actions)}
        methods: Any = policy  # an actor-critic policy (export_onnx checked predict_values and the distribution)
        with th.no_grad():
            tensor = policy.obs_to_tensor(normalized)[0]
            if kind == "recurrent":
                assert new_state is not None and state is not None and start is not None
                expected[f"{STATE_H}_out"], expected[f"{STATE_C}_out"] = new_state[0], new_state[1]
                from sb3_contrib.common.recurrent.type_aliases import RNNStates

                def as_tensors(pair: tuple[np.ndarray, np.ndarray]) -> tuple[th.Tensor, th.Tensor]:
                    return th.as_tensor(pair[0], device=policy.device), th.as_tensor(pair[1], device=policy.device)

                actor = as_tensors(state)
                start_tensor = th.as_tensor(start, dtype=th.float32, device=policy.device)
                # sb3-contrib's forward: values and the critic's next state (predict_values does not return it)
                _, values, _, next_states = methods.forward(
                    tensor, RNNStates(actor, as_tensors(critic_states) if critic_states else actor), start_tensor, True
                )
                if value:
                    expected[VALUE] = values.cpu().numpy()
                if critic_states is not None:
                    expected[f"{CRITIC_H}_out"] = next_states.vf[0].cpu().numpy()
                    expected[f"{CRITIC_C}_out"] = next_states.vf[1].cpu().numpy()
                if log_std:
                    distribution = methods.get_distribution(tensor, actor, start_tensor)[0]
                    expected[LOG_STD] = th.log(distribution.distribution.stddev).cpu().numpy()
            else:
                if value:
                    expected[VALUE] = methods.predict_values(tensor).cpu().numpy()
                if log_std:
                    expected[LOG_STD] = th.log(methods.get_distribution(tensor).distribution.stddev).cpu().numpy()
        for name, want in expected.items():
            have = got.get(name)
            if have is None or have.shape != want.shape:
                result.failures.append(f"{name}: shape {None if have is None else have.shape}, predict's {want.shape}")
                continue
            if np.issubdtype(want.dtype, np.integer) or (name == ACTIONS and not isinstance(policy.action_space, spaces.Box)):
                count = int(np.sum(have != want))
                result.mismatches[name] = result.mismatches.get(name, 0) + count
                if count:
                    result.failures.append(f"{name}: {count} entries differ")
                continue
            error = np.abs(have.astype(np.float64) - want.astype(np.float64))
            result.max_abs_error[name] = max(result.max_abs_error.get(name, 0.0), float(np.max(error, initial=0.0)))
            if not np.all(error <= atol + rtol * np.abs(want)):
                result.failures.append(f"{name}: max |error| {float(np.max(error)):.3g} above the tolerance")
    return result


def _explain(error: BaseException, policy: BasePolicy) -> str:
    """Why ``torch.export`` failed, naming the part: the module whose code raised it (found from the call the
    exporter reports) and the line, plus the exception's own summary."""
    import inspect
    import re

    text = "\n".join(str(part) for part in (error, error.__cause__) if part is not None)
    summary = re.search(r"## Exception summary\s*\n\s*\n(.+)", text)
    reason = summary.group(1).strip() if summary else next((line for line in text.splitlines() if line.strip()), "")
    call = re.search(r'The following call raised this error:\s*\n\s*File "([^"]+)", line (\d+), in (\w+)\n\s*(.+)', text)
    if call is None:
        return reason[:400]
    file, line, function, code = call.group(1), int(call.group(2)), call.group(3), call.group(4).strip()
    part = f"{Path(file).name} line {line} in {function}"
    for name, module in policy.named_modules():
        method = getattr(type(module), function, None)
        try:
            lines, first = inspect.getsourcelines(method)  # type: ignore[arg-type]
            where = inspect.getsourcefile(method)  # type: ignore[arg-type]
        except (TypeError, OSError):
            continue
        if where is not None and Path(where).resolve() == Path(file).resolve() and first <= line < first + len(lines):
            part = f"{name or 'the policy'} ({type(module).__name__}.{function}, {Path(file).name} line {line})"
            break
    return f"{part}: `{code}`: {reason[:300]}"


# ----------------------------------------------------------------------------------------------- command line
def load_model(path: str | os.PathLike) -> BaseAlgorithm:
    """Load a saved TRPOPlus, MaskableTRPOPlus or RecurrentTRPOPlus, whichever its policy class says, on the CPU."""
    from stable_baselines3.common.save_util import load_from_zip_file

    data, _, _ = load_from_zip_file(str(path), device="cpu", print_system_info=False)
    policy_class = data.get("policy_class") if data else None
    family = families.policy_family(policy_class) if isinstance(policy_class, type) else "plain"
    algorithm: type[BaseAlgorithm] = families.algorithm_class(family)
    return algorithm.load(str(path), device="cpu")


def main(argv: list[str] | None = None) -> int:
    """``python -m sb3_trpo_plus export MODEL.zip POLICY.onnx``: export, check, and print the comparison."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m sb3_trpo_plus export",
        description="Export a saved TRPOPlus model's deterministic policy to ONNX (observation statistics included) "
        "and check the file against predict with ONNX Runtime.",
    )
    parser.add_argument("model", help="the .zip that model.save wrote (TRPOPlus, MaskableTRPOPlus or RecurrentTRPOPlus)")
    parser.add_argument("output", help="the .onnx file to write")
    parser.add_argument(
        "--vec-normalize",
        default=None,
        metavar="PATH",
        help="VecNormalize.save's file, for models trained behind VecNormalize (folded into the graph)",
    )
    parser.add_argument(
        "--env", default=None, help="env id whose rollout is added to the check (default: sampled observations only)"
    )
    parser.add_argument("--value", action="store_true", help="also output the value estimate")
    parser.add_argument("--log-std", action="store_true", help="also output the Gaussian's log standard deviation")
    parser.add_argument("--samples", type=int, default=256, help="observations sampled for the check (default: 256)")
    parser.add_argument("--rollout-steps", type=int, default=256, help="steps of the --env rollout (default: 256)")
    parser.add_argument("--atol", type=float, default=1e-5, help="absolute tolerance on float outputs (default: 1e-5)")
    parser.add_argument("--rtol", type=float, default=1e-5, help="relative tolerance on float outputs (default: 1e-5)")
    args = parser.parse_args(argv)
    try:
        model = load_model(args.model)
        result = export_onnx(
            model,
            args.output,
            vec_normalize=args.vec_normalize,
            value=args.value,
            log_std=args.log_std,
            rollout_env=args.env,
            n_sampled=args.samples,
            rollout_steps=args.rollout_steps,
            atol=args.atol,
            rtol=args.rtol,
        )
    except (ExportError, ExportCheckError, ModuleNotFoundError) as error:
        print(f"error: {error}")
        return 1
    print(result)
    return 0
