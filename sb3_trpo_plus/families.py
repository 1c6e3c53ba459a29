"""Which family a model, a policy or a Zoo name belongs to: the one place that says so.

The three families share the natural-gradient step and differ in how a batch's action distribution is built:

* ``"plain"``: :class:`~sb3_trpo_plus.TRPOPlus` with SB3's actor-critic policies;
* ``"masked"``: :class:`~sb3_trpo_plus.MaskableTRPOPlus` with sb3-contrib's ``MaskableActorCriticPolicy``;
* ``"recurrent"``: :class:`~sb3_trpo_plus.RecurrentTRPOPlus` with sb3-contrib's ``RecurrentActorCriticPolicy``.

The masked and recurrent families are built on sb3-contrib, which is optional: their modules are imported on first
use, and a missing sb3-contrib is one line naming the extra. This module imports neither torch's models nor SB3's
algorithms, so every layer may ask it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Literal

Family = Literal["plain", "masked", "recurrent"]


@dataclass(frozen=True)
class FamilyInfo:
    """What names a family: its algorithm class (and module), its policy base class, and its RL Zoo name."""

    name: Family
    #: the algorithm class's name, exported by ``sb3_trpo_plus``
    class_name: str
    #: the module that defines the algorithm class
    module: str
    #: the name ``python -m rl_zoo3.train --algo`` takes (and its shipped ``<name>.yml``)
    zoo_name: str
    #: sb3-contrib's policy base class of the family, as ``module:Class`` (``None``: SB3's own policies)
    policy_base: str | None


FAMILIES: dict[Family, FamilyInfo] = {
    "plain": FamilyInfo("plain", "TRPOPlus", "sb3_trpo_plus.trpo_plus", "trpo_plus", None),
    "masked": FamilyInfo(
        "masked",
        "MaskableTRPOPlus",
        "sb3_trpo_plus.maskable",
        "trpo_plus_mask",
        "sb3_contrib.common.maskable.policies:MaskableActorCriticPolicy",
    ),
    "recurrent": FamilyInfo(
        "recurrent",
        "RecurrentTRPOPlus",
        "sb3_trpo_plus.recurrent",
        "trpo_plus_lstm",
        "sb3_contrib.common.recurrent.policies:RecurrentActorCriticPolicy",
    ),
}

CONTRIB_EXTRA = "pip install 'sb3-trpo-plus[contrib]'"


def _import(module: str, what: str) -> Any:
    """``importlib.import_module(module)``; a missing sb3-contrib is a ``ModuleNotFoundError`` naming the extra."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        if error.name != "sb3_contrib":
            raise
        raise ModuleNotFoundError(
            f"{what} is built on sb3-contrib, which is not installed: {CONTRIB_EXTRA}", name=error.name
        ) from error


def algorithm_class(family: Family) -> type:
    """The algorithm class of ``family`` (its module imported on first use)."""
    info = FAMILIES[family]
    return getattr(_import(info.module, info.class_name), info.class_name)


def by_class_name(name: str) -> FamilyInfo | None:
    """The family whose algorithm class is called ``name`` (``"MaskableTRPOPlus"``), or ``None``."""
    return next((info for info in FAMILIES.values() if info.class_name == name), None)


def by_zoo_name(name: str) -> FamilyInfo:
    """The family registered in the RL Zoo as ``name``; ``ValueError`` naming the allowed names otherwise."""
    for info in FAMILIES.values():
        if info.zoo_name == name:
            return info
    raise ValueError(f"Invalid algo {name!r}: expected one of {tuple(info.zoo_name for info in FAMILIES.values())}")


def policy_bases() -> dict[Family, type]:
    """The policy base class of each family that sb3-contrib provides (empty without sb3-contrib)."""
    bases: dict[Family, type] = {}
    for info in FAMILIES.values():
        if info.policy_base is None:
            continue
        module, _, name = info.policy_base.partition(":")
        try:
            bases[info.name] = getattr(importlib.import_module(module), name)
        except ModuleNotFoundError as error:
            if error.name != "sb3_contrib":
                raise
    return bases


def policy_family(policy: object) -> Family:
    """The family of a policy (an instance) or a policy class: ``"recurrent"``, ``"masked"`` or ``"plain"``."""
    cls = policy if isinstance(policy, type) else type(policy)
    return next((family for family, base in policy_bases().items() if issubclass(cls, base)), "plain")


__all__ = [
    "FAMILIES",
    "Family",
    "FamilyInfo",
    "algorithm_class",
    "by_class_name",
    "by_zoo_name",
    "policy_bases",
    "policy_family",
]
