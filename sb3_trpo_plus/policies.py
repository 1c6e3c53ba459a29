"""Policy aliases of TRPOPlus: SB3's actor-critic policies, as ``sb3_contrib.TRPO`` uses them; the initial action
std of a new policy; and the warning for images that a policy flattens."""

from __future__ import annotations

import inspect
import math
import warnings
from typing import Any

from gymnasium import spaces
from stable_baselines3.common.policies import (
    ActorCriticCnnPolicy,
    ActorCriticPolicy,
    BasePolicy,
    MultiInputActorCriticPolicy,
)
from stable_baselines3.common.preprocessing import is_image_space
from stable_baselines3.common.torch_layers import FlattenExtractor

MlpPolicy = ActorCriticPolicy
CnnPolicy = ActorCriticCnnPolicy
MultiInputPolicy = MultiInputActorCriticPolicy


def select_initial_action_std(
    std: float | None, action_space: spaces.Space, use_sde: bool, policy_class: type, policy_kwargs: dict[str, Any]
) -> tuple[dict[str, Any], str | None]:
    """
    The policy's keyword arguments with the initial std of its Gaussian actions, ``log_std_init = log(std)``, which
    a saved model keeps in its ``policy_kwargs``; and a note for the user where ``std`` is not applied.

    Applied to Box actions without gSDE (whose ``log_std_init`` means another thing), when ``policy_kwargs`` sets no
    ``log_std_init`` and the policy class takes one (SB3's and sb3-contrib's Gaussian policies do; a user's own
    class may not). ``std=None`` leaves the policy's own default (SB3's: std 1).

    :return: the policy's keyword arguments (a new dict where changed) and the note for the user (``None``: nothing
        to say)
    """
    if std is None or not isinstance(action_space, spaces.Box) or use_sde or "log_std_init" in policy_kwargs:
        return policy_kwargs, None
    accepted = inspect.signature(policy_class).parameters if callable(policy_class) else {}
    if "log_std_init" not in accepted and not any(p.kind is p.VAR_KEYWORD for p in accepted.values()):
        name = getattr(policy_class, "__name__", policy_class)
        return policy_kwargs, f"{name} takes no log_std_init, so its actions start with its own std (not {std})"
    sb3 = "policy_kwargs={'log_std_init': 0.0} gives SB3's 1"
    note = f"Box actions start from std {std} (log_std_init={math.log(std):.4f}; {sb3})"
    return {**policy_kwargs, "log_std_init": math.log(std)}, note


def warn_if_images_flattened(policy: BasePolicy, space: spaces.Space, cnn_alias: str) -> None:
    """A ``UserWarning`` for image observations (SB3's ``is_image_space``: a uint8 Box of 1 to 4 channels) that
    ``policy`` flattens into an MLP (SB3's ``FlattenExtractor``, as ``MlpPolicy`` does): it trains, slowly."""
    flattened = isinstance(getattr(policy, "features_extractor", None), FlattenExtractor)
    if flattened and isinstance(space, spaces.Box) and is_image_space(space):
        warnings.warn(
            f"The observations are images ({space}) and {type(policy).__name__} flattens them into an "
            f"MLP, which learns slowly from pixels; use policy='{cnn_alias}' (SB3's NatureCNN)",
            UserWarning,
            stacklevel=4,
        )


__all__ = ["CnnPolicy", "MlpPolicy", "MultiInputPolicy", "select_initial_action_std", "warn_if_images_flattened"]
