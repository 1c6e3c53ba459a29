"""Observation normalization that travels with the policy.

The running mean and variance of the observations are buffers of the policy's features extractor, so
``save``/``load``, ``policy.predict`` on raw observations and ``.to(device)`` carry them, with no second file.
:class:`NormalizedFlattenExtractor` (Box observations) and :class:`NormalizedCombinedExtractor` (the Box entries of
a Dict; images pass untouched) are SB3's ``FlattenExtractor`` and ``CombinedExtractor`` with
:class:`ObservationNormalizer` in front, ``clip((x - mean) / sqrt(var + epsilon), -clip_obs, clip_obs)``, as
``VecNormalize`` computes it. TRPOPlus selects them through ``policy_kwargs["features_extractor_class"]`` (SB3's
own way to choose an extractor, saved with the model) and updates their statistics only between updates: an
update's rollout is taken in when the next rollout starts (:func:`update_observation_statistics`), so that the
policy that collects a rollout is the one its update starts from, one update's old and new policies see the same
map, and the stored log-probabilities stay exact.
"""

from __future__ import annotations

import inspect
from typing import Any, Literal

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.preprocessing import get_flattened_obs_dim, is_image_space
from stable_baselines3.common.running_mean_std import RunningMeanStd
from stable_baselines3.common.torch_layers import CombinedExtractor, FlattenExtractor
from stable_baselines3.common.vec_env import VecEnv, unwrap_vec_normalize
from torch import nn

from sb3_trpo_plus.statistics import finite_rows, merge_finite, merge_higher_moments
from sb3_trpo_plus.validation import InvalidArgumentError

#: the values ``normalize_observations`` and ``normalize_values`` accept
SETTINGS = (True, False, "auto")
Setting = bool | Literal["auto"]


def check_setting(name: str, value: object) -> None:
    """:class:`InvalidArgumentError` (a ``ValueError``) naming the argument unless ``value`` is ``True``, ``False``
    or ``"auto"``."""
    if not any(value is allowed or (isinstance(allowed, str) and value == allowed) for allowed in SETTINGS):
        raise InvalidArgumentError(name, value, "True, False or 'auto'")


def normalize(x: th.Tensor, mean: th.Tensor, std: th.Tensor, clip_obs: float) -> th.Tensor:
    """
    ``clip((x - mean) / std, -clip_obs, clip_obs)``, except that a NaN or infinite input stays NaN (``x - x`` is 0
    for a finite ``x`` and NaN otherwise): a broken observation is never clipped into a plausible one, and the
    policy reports it as without normalization.
    """
    return th.clamp((x - mean) / std, -clip_obs, clip_obs) + (x - x)


class ObservationNormalizer(nn.Module):
    """
    ``clip((x - mean) / sqrt(var + epsilon), -clip_obs, clip_obs)`` on flat observations (:func:`normalize`), with a
    running mean and variance held as buffers (saved, loaded and moved with the module), changed by :meth:`update`.

    With ``heavy_tails``, the divisor of each feature is also multiplied by ``max(1, sqrt(kurtosis / 3))``, from
    running third and fourth moments held beside them: a feature with a Gaussian's tails or lighter is normalized as
    without it, and a sparse one (mostly constant, with rare large values, such as Ant's contact forces) ends with its
    rare values of order 1 instead of near the clip. Each feature's units still do not matter.

    :param size: number of features (the flattened observation)
    :param clip_obs: bound of the normalized values (``VecNormalize``'s default: 10)
    :param epsilon: added to the variance (``VecNormalize``'s default: 1e-8); a constant feature maps to 0
    :param key: the Dict observation's key it normalizes (``None`` for a Box observation)
    :param heavy_tails: shrink the features whose tails are heavier than a Gaussian's by their kurtosis
    """

    def __init__(
        self, size: int, clip_obs: float = 10.0, epsilon: float = 1e-8, key: str | None = None, heavy_tails: bool = False
    ):
        super().__init__()
        self.clip_obs = clip_obs
        self.epsilon = epsilon
        self.key = key
        self.heavy_tails = heavy_tails
        # RunningMeanStd's start (mean 0, variance 1, a count of 1e-4): the identity map up to the clip at first
        self.register_buffer("mean", th.zeros(size))
        self.register_buffer("var", th.ones(size))
        self.register_buffer("count", th.tensor(1e-4, dtype=th.float64))
        self.mean: th.Tensor
        self.var: th.Tensor
        self.count: th.Tensor
        if heavy_tails:  # a Gaussian's third and fourth moments at the start (files without them never had them)
            self.register_buffer("third", th.zeros(size, dtype=th.float64))
            self.register_buffer("fourth", th.full((size,), 3.0, dtype=th.float64))
            self.third: th.Tensor
            self.fourth: th.Tensor

    def std(self) -> th.Tensor:
        """``sqrt(var + epsilon)``, the divisor of :meth:`forward` (times the kurtosis's shrink with ``heavy_tails``)."""
        std = th.sqrt(self.var + self.epsilon)
        if self.heavy_tails:
            var = self.var.double()
            kurtosis = th.where(var > 0, self.fourth / var.square().clamp_min(1e-300), th.zeros_like(var))
            std = std * th.sqrt(th.clamp(kurtosis / 3.0, min=1.0)).to(std.dtype)
        return std

    def forward(self, x: th.Tensor) -> th.Tensor:
        return normalize(x, self.mean, self.std(), self.clip_obs)

    @th.no_grad()
    def update(self, observations: np.ndarray) -> None:
        """
        Merge a batch of observations (any leading shape; flattened to ``(n, size)``) into the statistics, with
        ``RunningMeanStd``'s parallel formula (and Pébay's for the third and fourth moments, with ``heavy_tails``).
        Rows holding a NaN or infinite value are left out.
        """
        stats = RunningMeanStd(shape=(self.mean.numel(),))
        stats.mean, stats.var, stats.count = (
            self.mean.double().cpu().numpy(),
            self.var.double().cpu().numpy(),
            float(self.count),
        )
        rows = finite_rows(observations, (self.mean.numel(),))  # converted and filtered once for every moment
        if self.heavy_tails:
            third, fourth = merge_higher_moments(
                stats.count, stats.mean, stats.var, self.third.cpu().numpy(), self.fourth.cpu().numpy(), rows
            )
            self.third.copy_(th.as_tensor(third))
            self.fourth.copy_(th.as_tensor(fourth))
        merge_finite(stats, rows)
        self.mean.copy_(th.as_tensor(stats.mean))
        self.var.copy_(th.as_tensor(stats.var))
        self.count.fill_(stats.count)

    def extra_repr(self) -> str:
        tails = ", heavy_tails=True" if self.heavy_tails else ""
        return f"{self.mean.numel()}, clip_obs={self.clip_obs}, epsilon={self.epsilon}, key={self.key!r}{tails}"


class NormalizedFlattenExtractor(FlattenExtractor):
    """
    SB3's ``FlattenExtractor`` followed by an :class:`ObservationNormalizer`: the default features extractor of
    TRPOPlus's MLP policies on Box observations.

    :param observation_space: the Box observation space
    :param clip_obs: bound of the normalized values
    :param key: the Dict key it serves inside :class:`NormalizedCombinedExtractor` (``None`` on its own)
    :param heavy_tails: see :class:`ObservationNormalizer`
    """

    def __init__(
        self, observation_space: spaces.Space, clip_obs: float = 10.0, key: str | None = None, heavy_tails: bool = False
    ):
        super().__init__(observation_space)
        size = get_flattened_obs_dim(observation_space)
        self.normalizer = ObservationNormalizer(size, clip_obs, key=key, heavy_tails=heavy_tails)

    def forward(self, observations: th.Tensor) -> th.Tensor:
        return self.normalizer(self.flatten(observations))


def normalizable(space: spaces.Space, normalized_image: bool = False) -> bool:
    """Whether observations of ``space`` are normalized: a Box that is not an image."""
    return isinstance(space, spaces.Box) and not is_image_space(space, normalized_image=normalized_image)


class NormalizedCombinedExtractor(CombinedExtractor):
    """
    SB3's ``CombinedExtractor`` whose Box entries that are not images are normalized
    (:class:`NormalizedFlattenExtractor` per key); images go through ``NatureCNN`` as before, never normalized.

    :param observation_space: the Dict observation space
    :param cnn_output_dim: as in ``CombinedExtractor``
    :param normalized_image: as in ``CombinedExtractor``
    :param clip_obs: bound of the normalized values
    :param heavy_tails: see :class:`ObservationNormalizer`
    """

    def __init__(
        self,
        observation_space: spaces.Dict,
        cnn_output_dim: int = 256,
        normalized_image: bool = False,
        clip_obs: float = 10.0,
        heavy_tails: bool = False,
    ):
        super().__init__(observation_space, cnn_output_dim=cnn_output_dim, normalized_image=normalized_image)
        for key, subspace in observation_space.spaces.items():
            if normalizable(subspace, normalized_image):
                self.extractors[key] = NormalizedFlattenExtractor(subspace, clip_obs, key=key, heavy_tails=heavy_tails)


#: SB3's default extractor -> its normalizing version
NORMALIZED_EXTRACTORS: dict[type[nn.Module], type[nn.Module]] = {
    FlattenExtractor: NormalizedFlattenExtractor,
    CombinedExtractor: NormalizedCombinedExtractor,
}


def observation_normalizers(policy: nn.Module) -> list[ObservationNormalizer]:
    """The policy's observation normalizers (one per normalized Box, per features extractor)."""
    return [module for module in policy.modules() if isinstance(module, ObservationNormalizer)]


def update_observation_statistics(policy: nn.Module, observations: np.ndarray | dict[str, np.ndarray]) -> None:
    """Merge a rollout's raw observations (a buffer's array, or dict of arrays) into every normalizer's statistics."""
    for normalizer in observation_normalizers(policy):
        batch = observations if normalizer.key is None else observations[normalizer.key]  # type: ignore[index]
        normalizer.update(batch)  # type: ignore[arg-type]


def env_normalizes(env: VecEnv | None) -> bool:
    """Whether the env stack already normalizes (a ``VecNormalize`` with ``norm_obs`` or ``norm_reward``)."""
    vec_normalize = unwrap_vec_normalize(env) if env is not None else None
    return vec_normalize is not None and bool(vec_normalize.norm_obs or vec_normalize.norm_reward)


def normalizing_extractor(
    setting: Setting, observation_space: spaces.Space, policy_class: type, policy_kwargs: dict[str, Any]
) -> tuple[type[nn.Module] | None, str]:
    """
    The features extractor class that normalizes observations for this policy, or ``None`` and why not.

    ``"auto"`` normalizes when the policy's own default extractor is SB3's ``FlattenExtractor`` on a Box that is
    not an image, or ``CombinedExtractor`` on a Dict with such an entry, and ``policy_kwargs`` chose no extractor;
    ``True`` requires it (``ValueError`` naming what prevents it); ``False`` never normalizes.
    """
    if setting is False:
        return None, "normalize_observations=False"
    chosen = policy_kwargs.get("features_extractor_class")
    parameter = inspect.signature(policy_class).parameters.get("features_extractor_class") if callable(policy_class) else None
    default = parameter.default if parameter is not None else None
    normalized_image = bool((policy_kwargs.get("features_extractor_kwargs") or {}).get("normalized_image", False))
    if isinstance(observation_space, spaces.Dict):
        vectors = any(normalizable(sub, normalized_image) for sub in observation_space.spaces.values())
        reason = "" if vectors else "the Dict observation space has no Box entry that is not an image"
    elif isinstance(observation_space, spaces.Box):
        reason = "" if normalizable(observation_space, normalized_image) else "image observations are never normalized"
    else:
        reason = f"{type(observation_space).__name__} observations are not normalized (Box only)"
    if not reason and chosen is not None:
        if chosen in NORMALIZED_EXTRACTORS.values():
            return chosen, ""
        reason = f"policy_kwargs chooses features_extractor_class={getattr(chosen, '__name__', chosen)}"
    elif not reason:
        if default in NORMALIZED_EXTRACTORS:
            return NORMALIZED_EXTRACTORS[default], ""
        name = getattr(policy_class, "__name__", policy_class)
        reason = f"{name}'s features extractor is not SB3's FlattenExtractor or CombinedExtractor"
    if setting is True:
        raise ValueError(f"Invalid normalize_observations=True: {reason}; use 'auto' or False")
    return None, reason


def select_observation_normalization(
    setting: Setting, env: VecEnv | None, observation_space: spaces.Space, policy_class: type, policy_kwargs: dict[str, Any]
) -> tuple[dict[str, Any], str | None]:
    """
    ``normalize_observations``: the policy's keyword arguments with the features extractor that normalizes
    observations (``policy_kwargs["features_extractor_class"]``, which a saved model keeps), and a note for the user
    where ``"auto"`` leaves them as they are.

    :return: the policy's keyword arguments (a new dict where changed) and the note (``None``: nothing to say)
    """
    if setting == "auto" and env_normalizes(env):
        return policy_kwargs, (
            "the env stack's VecNormalize normalizes the observations, so the policy adds no normalization "
            "(normalize_observations='auto')"
        )
    extractor, reason = normalizing_extractor(setting, observation_space, policy_class, policy_kwargs)
    if extractor is None:
        note = f"the policy takes the observations as they are (normalize_observations='auto': {reason})"
        return policy_kwargs, note if setting == "auto" else None
    return {**policy_kwargs, "features_extractor_class": extractor}, None


__all__ = [
    "NormalizedCombinedExtractor",
    "NormalizedFlattenExtractor",
    "ObservationNormalizer",
    "env_normalizes",
    "normalizing_extractor",
    "select_observation_normalization",
    "update_observation_statistics",
]
