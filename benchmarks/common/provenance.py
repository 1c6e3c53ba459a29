"""Where a benchmark's numbers come from: the commit of the code measured, whether the package tree had uncommitted
changes, the machine and the library versions, in one record (:func:`provenance`)."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: the package tree: the code and the shipped hyperparameters (a change in either changes what a run measures)
PACKAGE_TREE = ("sb3_trpo_plus", "hyperparams")
#: the versions recorded, in this order (those that cannot be imported are left out)
LIBRARIES = ("torch", "numpy", "gymnasium", "stable_baselines3", "sb3_contrib", "rl_zoo3", "mujoco", "Box2D", "sb3_trpo_plus")


def code_checkout() -> Path:
    """The folder holding the ``sb3_trpo_plus`` that is imported (a checkout's root in a source or editable install)."""
    import sb3_trpo_plus

    return Path(sb3_trpo_plus.__file__).resolve().parent.parent


def _git(where: Path, *args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=where, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):  # not a checkout, or no git
        return ""


def git_state(where: Path | None = None) -> tuple[str, bool]:
    """
    The commit checked out at ``where`` and whether :data:`PACKAGE_TREE` has uncommitted changes there.

    :param where: a folder of the checkout (default: :func:`code_checkout`)
    :return: ``(full commit hash, dirty)``, or ``("", False)`` outside a git checkout
    """
    where = where or code_checkout()
    commit = _git(where, "rev-parse", "HEAD")
    dirty = bool(commit) and bool(_git(where, "status", "--porcelain", "--", *PACKAGE_TREE))
    return commit, dirty


def machine() -> dict[str, Any]:
    """The platform, the CPU's model name (``/proc/cpuinfo`` where it exists) and the number of CPUs."""
    cpu = platform.processor()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"platform": platform.platform(), "cpu": cpu, "n_cpus": os.cpu_count()}


def versions() -> dict[str, str]:
    """Python's version and those of :data:`LIBRARIES` that can be imported."""
    out = {"python": platform.python_version()}
    for name in LIBRARIES:
        with contextlib.suppress(Exception):
            out[name] = __import__(name).__version__
    return out


@dataclass(frozen=True)
class Provenance:
    """
    One run's provenance.

    :param commit: the full commit hash of the code measured (``""`` outside a git checkout)
    :param dirty: whether the package tree (:data:`PACKAGE_TREE`) had uncommitted changes
    :param machine: :func:`machine`
    :param versions: :func:`versions`
    """

    commit: str
    dirty: bool
    machine: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)

    @property
    def code_rev(self) -> str:
        """The short commit, ``+dirty`` when the package tree had changes (``""`` outside a checkout)."""
        return self.commit[:7] + ("+dirty" if self.dirty else "")

    @property
    def machine_summary(self) -> str:
        """``"x86_64 16 cpus"``: the architecture and the number of CPUs, as the tidy tables' ``machine`` column."""
        return f"{platform.machine()} {self.machine.get('n_cpus')} cpus"


def provenance(where: Path | None = None) -> Provenance:
    """
    The provenance of a run of the code imported now.

    :param where: a folder of the checkout whose commit is recorded (default: :func:`code_checkout`)
    """
    commit, dirty = git_state(where)
    return Provenance(commit, dirty, machine(), versions())
