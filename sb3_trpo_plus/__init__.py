"""sb3-trpo-plus: Trust Region Policy Optimization for Stable-Baselines3, with batched Fisher-vector products."""

from typing import TYPE_CHECKING, Any

from sb3_trpo_plus.contrib_trpo import TRPO
from sb3_trpo_plus.export import export_onnx
from sb3_trpo_plus.policies import CnnPolicy, MlpPolicy, MultiInputPolicy
from sb3_trpo_plus.trpo_plus import TRPOPlus

if TYPE_CHECKING:
    from sb3_trpo_plus.maskable import MaskableTRPOPlus
    from sb3_trpo_plus.recurrent import RecurrentTRPOPlus

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """The policy families (:mod:`sb3_trpo_plus.families`), built on sb3-contrib: imported on first use, so that
    sb3-contrib stays optional."""
    from sb3_trpo_plus import families

    info = families.by_class_name(name)
    if info is not None and info.name != "plain":
        return families.algorithm_class(info.name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "TRPO",
    "CnnPolicy",
    "MaskableTRPOPlus",
    "MlpPolicy",
    "MultiInputPolicy",
    "RecurrentTRPOPlus",
    "TRPOPlus",
    "__version__",
    "export_onnx",
]
