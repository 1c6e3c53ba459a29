"""Writing the ONNX file: :func:`export_onnx` traces the policy's graph with PyTorch's ``torch.export``-based
exporter, writes the metadata, and (by default) checks the file against ``predict`` (:mod:`.check`)."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.distributions import DiagGaussianDistribution, StateDependentNoiseDistribution
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.preprocessing import is_image_space
from stable_baselines3.common.vec_env import VecNormalize

from sb3_trpo_plus.export.check import ExportCheck, check_onnx
from sb3_trpo_plus.export.errors import ExportCheckError, ExportError, require
from sb3_trpo_plus.export.family import export_family
from sb3_trpo_plus.export.graph import FoldedVecNormalize, PolicyGraph
from sb3_trpo_plus.export.inputs import check_obs_dtype, cpu_copy, example_inputs, resolve_vec_normalize
from sb3_trpo_plus.export.metadata import write_metadata
from sb3_trpo_plus.normalization import observation_normalizers


def export_onnx(
    model: BaseAlgorithm | BasePolicy,
    path: str | os.PathLike,
    *,
    vec_normalize: VecNormalize | str | os.PathLike | bool | None = None,
    obs_dtype: str | np.dtype | type | None = None,
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
    space (images channel-first, as ``VecTransposeImage`` gives them) and its dtype (``obs_dtype`` chooses another
    for float observations), with a batch dimension; then
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
    :param obs_dtype: the dtype of the graph's float (Box) observation inputs: ``None`` (default) the observation
        space's own, as the env gives them (float64 for MuJoCo tasks, float32 for most others); ``"float32"`` or
        ``"float64"`` that dtype instead (the network computes in float32 either way; folded ``VecNormalize``
        statistics in float64, as ``VecNormalize`` does). The check feeds the graph the observations cast to it and
        compares with ``predict`` on the observations as they were. Images and integer observations keep their dtype
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
    onnx, _ = require()
    policy = model.policy if isinstance(model, BaseAlgorithm) else model
    if not isinstance(policy, BasePolicy):
        raise ExportError(f"Invalid model: expected an SB3 algorithm or policy, got {type(model).__name__}")
    if value and not hasattr(policy, "predict_values"):
        raise ExportError(f"Invalid value=True: {type(policy).__name__} has no predict_values")
    dtype = check_obs_dtype(obs_dtype)
    statistics = resolve_vec_normalize(model, vec_normalize)
    family = export_family(cpu_copy(policy))
    exported = family.policy
    folded = FoldedVecNormalize(statistics, exported.observation_space) if statistics is not None else None
    graph = PolicyGraph(family, folded, value, log_std).eval()
    names, tensors = example_inputs(family.policy, family.example_inputs(2, value), batch=2, obs_dtype=dtype)
    output_names = family.output_names(value, log_std)

    distribution = getattr(policy, "action_dist", None)
    if log_std and not isinstance(distribution, DiagGaussianDistribution | StateDependentNoiseDistribution):
        raise ExportError(
            f"Invalid log_std=True: the action distribution is {type(distribution).__name__}; allowed "
            "only for Gaussian ones (DiagGaussianDistribution, StateDependentNoiseDistribution: Box actions)"
        )
    with _distributions_unchecked(), th.no_grad(), _quiet_exporter():
        batch = th.export.Dim("batch", min=1)
        shapes = tuple({family.batch_axis(name): batch} for name in names)
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
    write_metadata(
        proto, exported.observation_space, exported.action_space, names, output_names, type(model).__name__, folded is not None
    )
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
