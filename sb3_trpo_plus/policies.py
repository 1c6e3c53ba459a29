"""Policy aliases of TRPOPlus: SB3's actor-critic policies, as ``sb3_contrib.TRPO`` uses them; and the warning for
images that a policy flattens."""

import warnings

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


__all__ = ["CnnPolicy", "MlpPolicy", "MultiInputPolicy", "warn_if_images_flattened"]
