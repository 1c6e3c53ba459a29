"""The command line of the README's first command: ``python -m sb3_trpo_plus``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch as th

from sb3_trpo_plus import TRPOPlus
from sb3_trpo_plus.__main__ import main, parse_hyperparams


def test_cli_trains_saves_and_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    threads = th.get_num_threads()
    save_path = tmp_path / "cartpole.zip"
    try:
        main(
            [
                "--env",
                "CartPole-v1",
                "--timesteps",
                "1024",
                "--no-progress-bar",
                "--eval-episodes",
                "2",
                "--save-path",
                str(save_path),
                "--hyperparams",
                "n_critic_updates=2",
                "target_kl=0.02",
            ]
        )
    finally:
        th.set_num_threads(threads)
    out = capsys.readouterr().out
    assert "untrained:" in out and "trained:" in out and str(save_path) in out
    model = TRPOPlus.load(save_path)
    assert model.num_timesteps == 1024
    assert model.n_critic_updates == 2 and model.target_kl == 0.02


def test_parse_hyperparams_types_and_errors() -> None:
    assert parse_hyperparams(["use_sde=True", "target_kl=0.05", "policy=MlpPolicy"]) == {
        "use_sde": True,
        "target_kl": 0.05,
        "policy": "MlpPolicy",
    }
    with pytest.raises(SystemExit, match="key=value"):
        parse_hyperparams(["target_kl"])
