"""Model files saved by earlier versions (``tests/saved_models.py``) load and act as they did: the same deterministic
actions and values on the recorded observations, and they train on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.saved_models import CASES, DATA, algorithm, behaviour

SAVED = sorted(path for path in DATA.glob("*.zip") if path.stem.split("_")[0] in CASES)


def test_there_are_saved_models_of_every_family() -> None:
    assert {path.stem.split("_")[0] for path in SAVED} == set(CASES)


@pytest.mark.parametrize("path", SAVED, ids=[path.stem for path in SAVED])
def test_saved_model_loads_and_acts_as_before(path: Path) -> None:
    family = path.stem.split("_")[0]
    algo, _, make_env, _ = CASES[family]
    expected = np.load(path.with_suffix(".npz"))
    model = algorithm(algo).load(path, env=make_env())
    now = behaviour(model, expected["obs"])
    np.testing.assert_allclose(now["actions"], expected["actions"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(now["values"], expected["values"], rtol=1e-6, atol=1e-6)
    model.learn(64, reset_num_timesteps=False)  # and trains on
