"""The unit of ``target_kl`` and ``cg_damping``: the KL of the whole action distribution (TRPOPlus's ``"joint"``) or
its mean over action dimensions (sb3-contrib's ``"per_dimension"``), and what a model file was saved in.

``sb3_contrib.TRPO`` averages SB3's ``kl_divergence`` over the action dimensions of Box and MultiBinary actions, so
its radius and its damping are per dimension there; for Discrete and MultiDiscrete actions both units agree. The
update with ``target_kl = d * x`` and ``cg_damping = d * y`` in the joint unit (d action dimensions) is sb3-contrib's
with ``x`` and ``y`` (``tests/test_parity.py``).
"""

from __future__ import annotations

import io
import json
import math
import os
import warnings
import zipfile
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
from gymnasium import spaces

KlUnit = Literal["joint", "per_dimension"]

#: keys every TRPOPlus model file holds and ``sb3_contrib.TRPO``'s never does
TRPO_PLUS_KEYS = ("fisher_sub_sampling", "cg_residual_tol")


def action_dimensions(space: spaces.Space) -> int:
    """How many per-dimension KLs make the joint KL: the action dimensions of a Box or MultiBinary space, else 1."""
    if isinstance(space, spaces.Box | spaces.MultiBinary):
        return int(np.prod(space.shape))
    return 1


def unit_factor(space: spaces.Space, unit: KlUnit) -> int:
    """What ``target_kl`` and ``cg_damping`` given in ``unit`` are multiplied by to bound and damp the joint KL."""
    return 1 if unit == "joint" else action_dimensions(space)


def auto_target_kl(space: spaces.Space) -> float:
    """``target_kl="auto"``: sb3-contrib's default 0.01 in the joint unit (times the action dimensions for Box and
    MultiBinary actions, whose KL sb3-contrib averages over them)."""
    return 0.01 * action_dimensions(space)


def trust_region_radius(target_kl: Any, progress_remaining: float, space: spaces.Space, unit: KlUnit) -> float:
    """
    The radius of an update in the joint unit: ``target_kl`` (a number in ``unit``, ``"auto"``, or a schedule of
    the remaining progress). A schedule's value below zero (the progress overshoots the end by less than one
    rollout) counts as zero; a non-finite one is a ``ValueError``.
    """
    if callable(target_kl):
        value = target_kl(progress_remaining)
    else:
        value = auto_target_kl(space) if target_kl == "auto" else target_kl
    radius = float(value) * (unit_factor(space, unit) if target_kl != "auto" else 1)
    if not math.isfinite(radius):
        raise ValueError(
            f"Invalid target_kl: its schedule returned {value!r} at remaining progress {progress_remaining}; "
            "expected a finite number >= 0"
        )
    return max(radius, 0.0)


def fisher_damping(cg_damping: float | Literal["auto"], space: spaces.Space, unit: KlUnit) -> float:
    """The damping of the joint KL's Fisher: ``cg_damping`` in ``unit`` (``"auto"``: sb3-contrib's default 0.1 in
    the joint unit, 0.1 times the action dimensions for Box and MultiBinary actions)."""
    if cg_damping == "auto":
        return 0.1 * action_dimensions(space)
    return cg_damping * unit_factor(space, unit)


class ScaledSchedule:
    """``factor`` times a schedule of the remaining progress (picklable, so a model that holds it saves)."""

    def __init__(self, schedule: Callable[[float], float], factor: float):
        self.schedule = schedule
        self.factor = factor

    def __call__(self, progress_remaining: float) -> float:
        return self.factor * float(self.schedule(progress_remaining))

    def __repr__(self) -> str:
        return f"ScaledSchedule({self.schedule!r}, {self.factor})"


def scaled(value: Any, factor: float) -> Any:
    """``factor`` times a number or a schedule (``"auto"`` and ``None`` are left as they are)."""
    if callable(value):
        return ScaledSchedule(value, factor)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value * factor
    return value


def saved_kl_unit(path: str | os.PathLike | io.BufferedIOBase) -> KlUnit | None:
    """
    The unit a model file's ``target_kl`` and ``cg_damping`` are in: its ``kl_unit`` entry where it has one,
    ``"per_dimension"`` for a file of ``sb3_contrib.TRPO`` (none of :data:`TRPO_PLUS_KEYS`), else ``"joint"`` (TRPOPlus
    before the entry existed); ``None`` where the file cannot be read here (SB3's ``load`` then reports it).
    """
    try:
        if isinstance(path, io.BufferedIOBase):
            start = path.tell()
            try:
                archive = zipfile.ZipFile(path)
                text = archive.read("data").decode()
            finally:
                path.seek(start)
        else:
            name = os.fspath(path)
            if not name.endswith(".zip") and not os.path.exists(name):
                name += ".zip"
            with zipfile.ZipFile(name) as archive:
                text = archive.read("data").decode()
        data = json.loads(text)
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None
    unit = data.get("kl_unit")
    if unit in ("joint", "per_dimension"):
        return unit
    return "joint" if any(key in data for key in TRPO_PLUS_KEYS) else "per_dimension"


def keep_trust_region(model: Any, saved: KlUnit, unit: KlUnit, who: str) -> None:
    """
    A loaded model's ``target_kl`` and ``cg_damping`` converted from the unit its file was ``saved`` in to ``unit``,
    so that its trust region stays the same, with a ``UserWarning`` where the values change (``who`` starts it).
    """
    if saved != unit:
        dims = action_dimensions(model.action_space)
        factor = dims if unit == "joint" else 1 / dims
        if dims != 1:
            saved_by = "sb3_contrib.TRPO or sb3_trpo_plus.TRPO" if saved == "per_dimension" else "TRPOPlus"
            warnings.warn(
                f"{who} reads target_kl and cg_damping {unit.replace('_', ' ')}, and the file's ({saved_by}) are "
                f"{saved.replace('_', ' ')}: both were multiplied by {factor:g} ({dims} action dimensions) to keep the "
                "same trust region",
                UserWarning,
                stacklevel=3,
            )
        model.target_kl, model.cg_damping = scaled(model.target_kl, factor), scaled(model.cg_damping, factor)
    model.kl_unit = unit
