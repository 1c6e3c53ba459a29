"""sb3-trpo-plus: Trust Region Policy Optimization for Stable-Baselines3, with batched Fisher-vector products."""

from typing import TYPE_CHECKING, Any

from sb3_trpo_plus.export import export_onnx
from sb3_trpo_plus.policies import CnnPolicy, MlpPolicy, MultiInputPolicy
from sb3_trpo_plus.trpo_plus import TRPOPlus

if TYPE_CHECKING:
    from sb3_trpo_plus.maskable import MaskableTRPOPlus
    from sb3_trpo_plus.recurrent import RecurrentTRPOPlus

__version__ = "0.1.0"

#: The policy families, built on sb3-contrib's parts: imported on first use, so that sb3-contrib stays optional.
_FAMILIES = {"MaskableTRPOPlus": "sb3_trpo_plus.maskable", "RecurrentTRPOPlus": "sb3_trpo_plus.recurrent"}


def __getattr__(name: str) -> Any:
    if name in _FAMILIES:
        import importlib

        try:
            module = importlib.import_module(_FAMILIES[name])
        except ModuleNotFoundError as error:
            if error.name != "sb3_contrib":
                raise
            raise ModuleNotFoundError(
                f"{name} is built on sb3-contrib, which is not installed: pip install 'sb3-trpo-plus[contrib]'",
                name=error.name,
            ) from error
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CnnPolicy",
    "MaskableTRPOPlus",
    "MlpPolicy",
    "MultiInputPolicy",
    "RecurrentTRPOPlus",
    "TRPOPlus",
    "__version__",
    "export_onnx",
]
