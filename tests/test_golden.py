"""Behaviour kept bit for bit: two updates of each golden case equal the stored record (``tests/golden.py``)."""

from __future__ import annotations

import pytest
import torch as th

from tests.golden import CASES, PATH, record


@pytest.fixture(scope="module")
def stored() -> dict[str, dict[str, th.Tensor]]:
    return th.load(PATH, weights_only=True)


@pytest.mark.parametrize("name", sorted(CASES))
def test_two_updates_equal_the_golden_record(name: str, stored: dict[str, dict[str, th.Tensor]]) -> None:
    fresh = record(name)
    golden = stored[name]
    assert sorted(fresh) == sorted(golden), f"{name}: other quantities than the record's"
    differ = [key for key in golden if not th.equal(fresh[key], golden[key])]
    assert not differ, f"{name}: {len(differ)} of {len(golden)} quantities differ from the golden record, e.g. {differ[:5]}"


def test_the_record_covers_the_step_and_the_statistics(stored: dict[str, dict[str, th.Tensor]]) -> None:
    """The record holds what a move of code could change: the actor's and the critic's parameters, Adam's moments,
    the observation and return statistics, and the step's logged values."""
    fast = stored["mlp_fast"]
    for key in ("policy.action_net.weight", "policy.value_net.weight", "returns.mean", "logged.train/kl"):
        assert key in fast, key
    assert any(key.startswith("policy.") and key.endswith("normalizer.mean") for key in fast)
    assert any(key.startswith("optimizer.state.") for key in fast)
    assert "returns.mean" not in stored["no_normalization"]
