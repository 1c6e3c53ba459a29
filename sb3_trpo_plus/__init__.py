"""sb3-trpo-plus: Trust Region Policy Optimization for Stable-Baselines3, with batched Fisher-vector products."""

from sb3_trpo_plus.policies import CnnPolicy, MlpPolicy, MultiInputPolicy
from sb3_trpo_plus.trpo_plus import TRPOPlus

__version__ = "0.1.0"

__all__ = ["CnnPolicy", "MlpPolicy", "MultiInputPolicy", "TRPOPlus", "__version__"]
