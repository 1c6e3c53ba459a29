"""The rule of ``LSTM_ENTRIES.md`` as code: a ``trpo_plus_lstm`` entry from the Zoo's ``ppo_lstm`` and ``trpo`` entries.

``tests/test_zoo_families.py`` derives every entry of ``hyperparams/trpo_plus_lstm.yml`` marked as derived and
compares, so the document, this module and the YAML cannot drift apart. ``python -m benchmarks.families.lstm_rule
<task> <action dimensions>`` prints one derived entry.
"""

from __future__ import annotations

import inspect
import sys
from typing import Any

from benchmarks.common.zoo import zoo_entries

#: tasks whose ``ppo_lstm.yml`` id gymnasium 1.x refuses as deprecated -> the entry they take theirs from
SOURCE_IDS = {
    "LunarLanderNoVel-v3": "LunarLanderNoVel-v2",
    "LunarLanderContinuousNoVel-v3": "LunarLanderContinuousNoVel-v2",
}
#: RecurrentPPO's keys with no TRPO counterpart (``n_epochs`` becomes ``n_critic_updates``)
DROPPED = ("clip_range", "clip_range_vf", "vf_coef", "max_grad_norm", "target_kl", "n_epochs")
#: sb3-contrib TRPO's defaults of the trust region, in its unit (the KL's mean over action dimensions)
TRPO_TARGET_KL = 0.01
TRPO_CG_DAMPING = 0.1
#: keys of the ``trpo.yml`` entry taken as they are, where it sets them
TRPO_UNITLESS = ("cg_max_steps", "sub_sampling_factor")


def tasks() -> list[str]:
    """Every task id of ``ppo_lstm.yml`` (the group entries ``default`` and ``atari`` aside), deprecated ids replaced by
    their successors (:data:`SOURCE_IDS`); whether each makes an env here is for the caller to check."""
    successors = {source: task for task, source in SOURCE_IDS.items()}
    return [successors.get(env_id, env_id) for env_id in zoo_entries("ppo_lstm") if env_id not in ("default", "atari")]


def ppo_lstm_entry(task: str) -> dict[str, Any]:
    """The ``ppo_lstm.yml`` entry of ``task`` (for a successor id of :data:`SOURCE_IDS`, its source's entry)."""
    return dict(zoo_entries("ppo_lstm")[SOURCE_IDS.get(task, task)])


def base_task(task: str) -> str:
    """The env whose velocities rl_zoo3's ``MaskVelocityWrapper`` hides in ``task`` (``task`` itself if none)."""
    return task.replace("NoVel", "")


def _differing_defaults() -> dict[str, Any]:
    """RecurrentPPO's defaults of the arguments RecurrentTRPOPlus takes too with another default (target_kl aside)."""
    from sb3_contrib import RecurrentPPO

    from sb3_trpo_plus import RecurrentTRPOPlus

    ppo = inspect.signature(RecurrentPPO.__init__).parameters
    ours = inspect.signature(RecurrentTRPOPlus.__init__).parameters
    shared = [key for key in ppo if key in ours and key != "target_kl"]
    return {key: ppo[key].default for key in shared if ppo[key].default != ours[key].default}


def derive(task: str, action_dims: int) -> dict[str, Any]:
    """
    The ``trpo_plus_lstm`` entry of ``task`` by the rule of ``LSTM_ENTRIES.md``.

    :param task: a task id of :func:`tasks`
    :param action_dims: the number of action dimensions (a Box's size; 1 for Discrete)
    :return: the entry, keys in the order of the ``ppo_lstm`` entry, then the ones the rule adds
    """
    if action_dims < 1:
        raise ValueError(f"Invalid action_dims={action_dims!r}: expected a whole number >= 1")
    ppo = ppo_lstm_entry(task)
    entry: dict[str, Any] = {}
    for key, value in ppo.items():  # steps 1 and 2: carried over, dropped, n_epochs -> n_critic_updates
        if key == "n_epochs":
            entry["n_critic_updates"] = value
        elif key not in DROPPED:
            entry[key] = value
    for key, value in _differing_defaults().items():  # step 3: RecurrentPPO's default where E has none
        entry.setdefault(key, value)
    entry.setdefault("n_critic_updates", 10)
    trpo = zoo_entries("trpo").get(base_task(task)) or {}  # step 4: the trust region, in the joint unit
    entry["target_kl"] = round(trpo.get("target_kl", TRPO_TARGET_KL) * action_dims, 10)
    entry["cg_damping"] = round(trpo.get("cg_damping", TRPO_CG_DAMPING) * action_dims, 10)
    entry.update({key: trpo[key] for key in TRPO_UNITLESS if key in trpo})
    if "normalize" not in ppo:  # step 5: no VecNormalize, so no normalization in the policy either
        entry.update(normalize_observations=False, normalize_values=False)
    return entry


if __name__ == "__main__":
    import yaml

    print(yaml.safe_dump({sys.argv[1]: derive(sys.argv[1], int(sys.argv[2]))}, sort_keys=False, width=120), end="")
