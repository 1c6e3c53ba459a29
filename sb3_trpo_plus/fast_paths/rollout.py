"""The rollout forward: ``policy.forward(obs)`` (actions, values, log-probabilities) in closed form, in torch or in
float32 NumPy on weights laid out once per rollout."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.distributions import (
    CategoricalDistribution,
    DiagGaussianDistribution,
)
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.preprocessing import is_image_space, preprocess_obs
from stable_baselines3.common.torch_layers import CombinedExtractor
from stable_baselines3.common.type_aliases import PyTorchObs
from torch import nn

from sb3_trpo_plus import fast_paths as switches  # NUMPY and NUMPY_MAX_ENVS, read at each call
from sb3_trpo_plus.fast_paths.chains import LinearChain
from sb3_trpo_plus.fast_paths.decision import Declined, Plan
from sb3_trpo_plus.normalization import ObservationNormalizer, normalize
from sb3_trpo_plus.validation import NON_FINITE_OBSERVATION, NonFiniteObservationError

LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)

FeatureMap = Callable[[PyTorchObs], th.Tensor]


def _normalizer(plan: Plan) -> ObservationNormalizer:
    """The shared extractor's normalizer (its key's, for a Dict), for a plan whose ``features`` is ``"normalized"``."""
    extractor: nn.Module = plan.policy.pi_features_extractor
    if plan.key is not None:
        assert isinstance(extractor, CombinedExtractor)
        extractor = extractor.extractors[plan.key]
    normalizer = extractor.normalizer
    assert isinstance(normalizer, ObservationNormalizer)
    return normalizer


def _feature_map(plan: Plan) -> FeatureMap | None:
    """
    The features of a batch of preprocessed observations (their :attr:`Plan.key`'s entry, for a Dict) as one function
    (:attr:`Plan.features`): a flatten, or a flatten then :func:`~sb3_trpo_plus.normalization.normalize` with the
    statistics read now, which do not change during a rollout; ``None`` for any other extractor (the policy's own
    ``extract_features`` is called instead).
    """
    key = plan.key
    flat: Callable[[PyTorchObs], th.Tensor] = (lambda x: x[key].flatten(1)) if key is not None else (lambda x: x.flatten(1))  # type: ignore[index,union-attr]
    if plan.features == "flatten":
        return flat
    if plan.features == "normalized":
        normalizer = _normalizer(plan)
        with th.no_grad():
            mean, std, clip_obs = normalizer.mean.clone(), normalizer.std(), normalizer.clip_obs
        return lambda x: normalize(flat(x), mean, std, clip_obs)
    return None


# ------------------------------------------------------------------------------------------- rollouts
RolloutForward = Callable[[PyTorchObs], tuple[th.Tensor, th.Tensor, th.Tensor]]


def rollout_forward(plan: Plan, n_envs: int = 1) -> RolloutForward | Declined:
    """
    ``policy.forward(obs)`` (actions, values, log-probabilities; stochastic actions) in closed form, for a policy
    that :func:`supports` accepts, with a diagonal Gaussian (not squashed) or categorical distribution; ``None``
    for any other. Sampling consumes torch's random stream exactly as SB3's distributions do, so a rollout is the
    one SB3 would collect up to float rounding. Built once per rollout (the parameters, the observation statistics
    and the standard deviation change only in ``train()``): on the CPU, for Box observations through SB3's
    ``FlattenExtractor`` or our shared ``NormalizedFlattenExtractor`` (or a Dict of one such Box entry through
    ``CombinedExtractor`` or ``NormalizedCombinedExtractor``, :attr:`Plan.key`), the arithmetic runs in float32 NumPy on
    weights laid out once (:func:`_numpy_forward`: a microsecond per small product instead of a torch operator's
    dispatch); otherwise in torch, reading the parameters at each call.

    :param plan: the policy's plan (:func:`plan`; the policy is not modified)
    :param n_envs: the rows of each call (the env's ``num_envs``); the NumPy form serves up to
        :data:`NUMPY_MAX_ENVS`
    :return: the forward function, or :class:`Declined` with the reason
    """
    policy, actor, critic = plan.policy, plan.actor, plan.critic
    if type(policy.action_dist) not in (DiagGaussianDistribution, CategoricalDistribution):
        name = type(policy.action_dist).__name__
        return Declined("rollout forward", f"{name} (the closed form draws diagonal Gaussian and categorical actions)")
    if policy.squash_output:
        return Declined("rollout forward", "the actions are squashed (squash_output=True)")
    numpy_features = _numpy_feature_map(plan) if n_envs <= switches.NUMPY_MAX_ENVS else None
    if numpy_features is not None:
        return _numpy_forward(policy, actor, critic, numpy_features, plan.key)
    feature_map = _feature_map(plan)
    action_shape = policy.action_space.shape
    with th.no_grad():
        gaussian = isinstance(policy.action_dist, DiagGaussianDistribution)
        std = policy.log_std.exp() if gaussian else None
        log_prob_offset = -(policy.log_std + LOG_SQRT_2PI).sum() if gaussian else None

    def forward(obs: PyTorchObs) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        with th.no_grad():
            if feature_map is not None:  # the extractor's computation without the module calls
                preprocessed = preprocess_obs(obs, policy.observation_space, normalize_images=policy.normalize_images)
                pi_features = vf_features = feature_map(preprocessed)
            else:
                features = policy.extract_features(obs)
                pi_features, vf_features = features if isinstance(features, tuple) else (features, features)
            if not bool(th.isfinite(pi_features).all()):
                raise NonFiniteObservationError(NON_FINITE_OBSERVATION)
            params = actor.run(pi_features).output
            values = critic.run(vf_features).output
            if std is not None and log_prob_offset is not None:
                noise = th.randn_like(params)
                actions = th.addcmul(params, noise, std)
                log_prob = noise.square().sum(dim=1).mul_(-0.5).add_(log_prob_offset)
            else:
                log_probs = th.log_softmax(params, dim=1)
                actions = th.multinomial(log_probs.exp(), 1).squeeze(1)
                log_prob = log_probs.gather(1, actions.unsqueeze(1)).squeeze(1)
        return actions.reshape((-1, *action_shape)), values, log_prob  # type: ignore[misc]

    return forward


NumpyFeatureMap = Callable[[np.ndarray], np.ndarray]
#: a chain's layers as ``(W^T, b, activation)`` in float32 NumPy
NumpyLayers = list[tuple[np.ndarray, np.ndarray, Callable[[np.ndarray], np.ndarray] | None]]
#: NumPy counterparts of the supported activations (in place on a fresh product)
_NUMPY_ACTIVATIONS: dict[type[nn.Module], Callable[[np.ndarray], np.ndarray]] = {
    nn.Tanh: lambda h: np.tanh(h, out=h),
    nn.ReLU: lambda h: np.maximum(h, np.float32(0.0), out=h),
}


def _numpy_feature_map(plan: Plan) -> NumpyFeatureMap | None:
    """
    :func:`_feature_map` on observations the NumPy forward has already flattened to float32 (as ``preprocess_obs``
    makes a Box's) and found finite, for a CPU policy with a non-image Box observation space (or a Dict's one Box
    entry, :attr:`Plan.key`); ``None`` otherwise.
    """
    policy = plan.policy
    space = policy.observation_space
    if isinstance(space, spaces.Dict) and plan.key is not None:
        space = space[plan.key]
    if (
        not switches.NUMPY
        or policy.device.type != "cpu"
        or not isinstance(space, spaces.Box)
        or is_image_space(space, check_channels=False)
    ):
        return None
    if plan.features == "flatten":
        return lambda x: x
    if plan.features == "normalized":
        normalizer = _normalizer(plan)
        with th.no_grad():
            mean = normalizer.mean.float().numpy().copy()
            std = normalizer.std().float().numpy().copy()
        clip_obs = np.float32(normalizer.clip_obs)

        def normalized(x: np.ndarray) -> np.ndarray:
            y = x - mean
            y /= std
            np.minimum(y, clip_obs, out=y)  # clip((x - mean) / std, -clip_obs, clip_obs), in place
            np.maximum(y, -clip_obs, out=y)
            return y

        return normalized
    return None


def _numpy_layers(chain: LinearChain) -> NumpyLayers:
    """The chain's layers as float32 NumPy ``(W^T, b, activation)``, copied (the rollout's snapshot)."""
    with th.no_grad():
        return [
            (
                weight.detach().float().numpy().T.copy(),
                bias.detach().float().numpy().copy(),
                _NUMPY_ACTIVATIONS.get(activation) if activation is not None else None,
            )
            for weight, bias, activation in chain._layers
        ]


def _run_numpy(layers: NumpyLayers, x: np.ndarray) -> np.ndarray:
    for weight, bias, activation in layers:
        x = x @ weight
        x += bias
        if activation is not None:
            x = activation(x)
    return x


def _merged_layers(actor: NumpyLayers, critic: NumpyLayers) -> NumpyLayers | None:
    """Actor and critic as one chain on the same features (``None`` unless they have the same depth and the same
    activation at each layer): the first layers side by side, the others block-diagonal, so that one product per
    layer gives both; the output is ``[actor's | critic's]``. The zero blocks add exact zeros."""
    if len(actor) != len(critic) or any(a[2] is not c[2] for a, c in zip(actor, critic, strict=True)):
        return None
    merged: NumpyLayers = []
    for index, ((weight_a, bias_a, activation), (weight_c, bias_c, _)) in enumerate(zip(actor, critic, strict=True)):
        if index == 0:
            weight = np.concatenate([weight_a, weight_c], axis=1)
        else:
            weight = np.zeros((weight_a.shape[0] + weight_c.shape[0], weight_a.shape[1] + weight_c.shape[1]), np.float32)
            weight[: weight_a.shape[0], : weight_a.shape[1]] = weight_a
            weight[weight_a.shape[0] :, weight_a.shape[1] :] = weight_c
        merged.append((weight, np.concatenate([bias_a, bias_c]), activation))
    return merged


def _numpy_forward(
    policy: ActorCriticPolicy, actor: LinearChain, critic: LinearChain, features: NumpyFeatureMap, key: str | None = None
) -> RolloutForward:
    """The rollout forward on NumPy observations: the same products as the torch one in float32 NumPy, with the
    Gaussian noise drawn by ``torch.randn`` and categorical actions by ``torch.multinomial`` (torch's random stream,
    as SB3's distributions consume it). Takes the observations as ``collect_rollouts`` holds them (NumPy; a Dict's
    arrays by key, of which it reads ``key``'s)."""
    actor_layers, critic_layers = _numpy_layers(actor), _numpy_layers(critic)
    merged = _merged_layers(actor_layers, critic_layers)
    n_params = actor_layers[-1][1].shape[0]
    action_shape = policy.action_space.shape
    gaussian = isinstance(policy.action_dist, DiagGaussianDistribution)
    with th.no_grad():
        std = policy.log_std.exp().float().numpy().copy() if gaussian else None
        offset = np.float32(-(policy.log_std + LOG_SQRT_2PI).sum().item()) if gaussian else None

    def arrays(obs: PyTorchObs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Actions (shaped as the action space's, batched), values ``(n, 1)`` and log-probabilities ``(n,)`` as
        NumPy arrays: what ``collect_rollouts`` stores, without tensor round trips."""
        entry = obs[key] if key is not None else obs  # type: ignore[index]
        raw = entry.numpy() if isinstance(entry, th.Tensor) else entry
        x = np.asarray(raw, dtype=np.float32).reshape(len(raw), -1)  # type: ignore[arg-type]
        if not np.isfinite(x).all():  # checked on the observation: a broken one is never clipped into a plausible one
            raise NonFiniteObservationError(NON_FINITE_OBSERVATION)
        x = features(x)
        if merged is not None:  # one product per layer for both
            output = _run_numpy(merged, x)
            params, values = output[:, :n_params], output[:, n_params:]
        else:
            params, values = _run_numpy(actor_layers, x), _run_numpy(critic_layers, x)
        if std is not None and offset is not None:
            noise = th.randn(params.shape).numpy()
            actions = params + noise * std
            log_prob = (noise * noise).sum(axis=1) * np.float32(-0.5) + offset
        else:
            shifted = params - params.max(axis=1, keepdims=True)
            log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
            actions = th.multinomial(th.from_numpy(np.exp(log_probs)), 1).numpy()[:, 0]
            log_prob = np.take_along_axis(log_probs, actions[:, None], axis=1)[:, 0]
        return actions.reshape((-1, *action_shape)), values, log_prob  # type: ignore[misc]

    def forward(obs: PyTorchObs) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        actions, values, log_prob = arrays(obs)
        return th.from_numpy(actions), th.from_numpy(values), th.from_numpy(log_prob)

    forward.takes_numpy = True  # type: ignore[attr-defined]
    forward.arrays = arrays  # type: ignore[attr-defined]
    return forward
