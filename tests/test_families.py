"""One place says which family a model, a policy or a Zoo name belongs to (sb3_trpo_plus.families)."""

from __future__ import annotations

import builtins
import importlib
import sys

import pytest
from sb3_contrib.common.envs import InvalidActionEnvDiscrete

import sb3_trpo_plus
from sb3_trpo_plus import MaskableTRPOPlus, RecurrentTRPOPlus, TRPOPlus, families, zoo
from sb3_trpo_plus.export import load_model


@pytest.mark.parametrize(
    ("algorithm", "env", "policy", "family"),
    [
        (TRPOPlus, "CartPole-v1", "MlpPolicy", "plain"),
        (MaskableTRPOPlus, InvalidActionEnvDiscrete(dim=4, n_invalid_actions=1), "MlpPolicy", "masked"),
        (RecurrentTRPOPlus, "CartPole-v1", "MlpLstmPolicy", "recurrent"),
    ],
)
def test_every_place_names_the_same_family(algorithm: type, env: object, policy: str, family: str, tmp_path) -> None:
    model = algorithm(policy, env, n_steps=8, batch_size=8)
    info = families.FAMILIES[family]
    assert families.policy_family(model.policy) == family
    assert families.policy_family(type(model.policy)) == family
    assert families.algorithm_class(family) is algorithm
    assert families.by_class_name(algorithm.__name__) is info
    assert getattr(sb3_trpo_plus, info.class_name) is algorithm
    assert zoo.algorithm_class(info.zoo_name) is algorithm
    model.save(tmp_path / "model.zip")
    assert type(load_model(tmp_path / "model.zip")) is algorithm


def test_unknown_names_are_refused() -> None:
    assert families.by_class_name("PPO") is None
    with pytest.raises(ValueError, match=r"Invalid algo 'ppo'.*trpo_plus_mask"):
        families.by_zoo_name("ppo")
    with pytest.raises(AttributeError, match="has no attribute 'PPO'"):
        sb3_trpo_plus.PPO  # noqa: B018


def test_without_sb3_contrib_everything_is_plain_and_the_families_name_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_contrib(name: str, *args, **kwargs):  # type: ignore[no-untyped-def]
        if name.startswith("sb3_contrib"):
            raise ModuleNotFoundError(f"No module named {name!r}", name="sb3_contrib")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "sb3_trpo_plus.maskable")  # imported again, through the import below
    monkeypatch.setattr(builtins, "__import__", no_contrib)
    monkeypatch.setattr(importlib, "import_module", lambda name, package=None: no_contrib(name))
    assert families.policy_bases() == {}
    assert families.policy_family(object()) == "plain"
    with pytest.raises(ModuleNotFoundError, match=r"MaskableTRPOPlus is built on sb3-contrib.*\[contrib\]"):
        families.algorithm_class("masked")
