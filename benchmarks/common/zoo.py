"""Hyperparameter files: the ones this package ships (found by :func:`sb3_trpo_plus.zoo.hyperparams_path`, in a
checkout and in a wheel alike) and the RL Zoo's own (``<rl_zoo3 package>/hyperparams/<algo>.yml``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: the hyperparameter files sb3-trpo-plus ships (one per family)
SHIPPED = ("trpo_plus", "trpo_plus_lstm", "trpo_plus_mask")


def zoo_file(algo: str) -> Path:
    """
    The hyperparameter file of ``algo``: the shipped one for :data:`SHIPPED`, else the RL Zoo's.

    :param algo: a Zoo algorithm name (``"trpo_plus"``, ``"trpo"``, ``"ppo_lstm"``, ...)
    :raises FileNotFoundError: the file does not exist
    """
    if algo in SHIPPED:
        from sb3_trpo_plus.zoo import hyperparams_path

        return hyperparams_path(algo)
    import rl_zoo3

    path = Path(rl_zoo3.__file__).parent / "hyperparams" / f"{algo}.yml"
    if not path.is_file():
        raise FileNotFoundError(f"rl_zoo3 {rl_zoo3.__version__} has no {path.name} (algo {algo!r})")
    return path


def zoo_entries(algo: str) -> dict[str, Any]:
    """
    Every entry (env id -> hyperparameters, in the Zoo's format) of ``algo``'s file (:func:`zoo_file`).

    :param algo: a Zoo algorithm name
    """
    import yaml

    return yaml.safe_load(zoo_file(algo).read_text()) or {}
