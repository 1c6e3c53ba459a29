"""The command line of the README's first command: ``python -m sb3_trpo_plus``."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch as th
from stable_baselines3.common.vec_env import VecNormalize

from sb3_trpo_plus import TRPOPlus
from sb3_trpo_plus.__main__ import COMMANDS, main, parse_hyperparams, run


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


@pytest.mark.parametrize("flag", [None, "--no-normalize-reward"])
def test_pendulum_preset_normalizes_training_rewards_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str | None
) -> None:
    """The default job: the tuned Pendulum settings, rewards scaled in training, a model that acts on raw observations."""
    threads = th.get_num_threads()
    save_path = tmp_path / "pendulum.zip"
    argv = ["--timesteps", "256", "--no-progress-bar", "--eval-episodes", "1", "--save-path", str(save_path)]
    try:
        model = main([*argv, "--hyperparams", "n_steps=64", *([flag] if flag else [])])
    finally:
        th.set_num_threads(threads)
    env = model.get_env()
    assert model.gamma == 0.98 and model.n_steps == 64 and model.use_sde
    if flag is None:
        assert isinstance(env, VecNormalize) and env.norm_reward and not env.norm_obs and env.gamma == 0.98
        assert "rewards normalized" in capsys.readouterr().out
    else:
        assert not isinstance(env, VecNormalize)
        assert "rewards normalized" not in capsys.readouterr().out
    loaded = TRPOPlus.load(save_path)
    raw_obs = loaded.observation_space.sample()
    action, _ = loaded.predict(raw_obs, deterministic=True)
    assert action.shape == (1,)


@pytest.mark.parametrize(
    ("hyperparams", "message"),
    [
        (["target_kll=0.1"], r"unknown TRPOPlus argument 'target_kll'; did you mean 'target_kl'\?"),
        (["n_critic_updates=2", "zzz=1"], r"unknown TRPOPlus argument 'zzz'\. Known: batch_size, "),
        (["seed=3"], r"'seed' is set by the command line itself"),
        (["target_kl=0"], r"Invalid target_kl=0: expected 0\.0 < target_kl"),
    ],
)
def test_bad_hyperparams_end_in_a_usage_error(
    hyperparams: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A typo or a bad value in ``--hyperparams`` ends in argparse's error (exit code 2) naming it, not a traceback."""
    threads = th.get_num_threads()
    argv = ["--env", "CartPole-v1", "--timesteps", "64", "--no-progress-bar", "--save-path", str(tmp_path / "m.zip")]
    try:
        with pytest.raises(SystemExit) as exit_info:
            main([*argv, "--hyperparams", *hyperparams])
    finally:
        th.set_num_threads(threads)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert re.search(message, err), err
    assert not (tmp_path / "m.zip").exists()


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    """``python -m sb3_trpo_plus --help`` names each subcommand with its line, and ``COMMAND --help`` reaches it."""
    with pytest.raises(SystemExit) as exit_info:
        run(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert COMMANDS, "no subcommand to list"
    for name, command in COMMANDS.items():
        assert re.search(rf"^  {name} +{re.escape(command.summary)}$", out, re.MULTILINE), out
        with pytest.raises(SystemExit) as exit_info:
            run([name, "--help"])
        assert exit_info.value.code == 0
        assert capsys.readouterr().out.startswith(f"usage: python -m sb3_trpo_plus {name} ")
