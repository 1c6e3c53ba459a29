"""RL Zoo integration of the policy families: ``trpo_plus_mask`` and ``trpo_plus_lstm`` (train, enjoy, -optimize).

Tiny budgets: these check the wiring, not the learning.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest.importorskip("rl_zoo3")
pytest.importorskip("optuna")

from sb3_trpo_plus import MaskableTRPOPlus, RecurrentTRPOPlus
from sb3_trpo_plus.zoo import MASKED_ENVS, hyperparams_path
from tests.test_zoo import TINY, run_python, zoo_main

CASES = {
    "trpo_plus_lstm": ("CartPoleNoVel-v1", RecurrentTRPOPlus, ["-n", "512"]),
    "trpo_plus_mask": ("InvalidActionEnvDiscrete-v0", MaskableTRPOPlus, ["-n", "1024"]),
}


@pytest.mark.slow
def test_families_registered_in_fresh_interpreter(tmp_path: Path) -> None:
    code = (
        "import gymnasium as gym\n"
        "import sb3_trpo_plus\n"
        "assert 'InvalidActionEnvDiscrete-v0' not in gym.registry  # nothing registered before the Zoo is imported\n"
        "import rl_zoo3.utils as u, rl_zoo3.hyperparams_opt as h, sb3_contrib\n"
        "from sb3_trpo_plus import MaskableTRPOPlus, RecurrentTRPOPlus, TRPOPlus\n"
        "assert u.ALGOS['trpo_plus_mask'] is MaskableTRPOPlus and u.ALGOS['trpo_plus_lstm'] is RecurrentTRPOPlus\n"
        "assert u.ALGOS['trpo_plus'] is TRPOPlus and u.ALGOS['ppo_lstm'] is sb3_contrib.RecurrentPPO\n"
        "for a in ('trpo_plus_mask', 'trpo_plus_lstm'):\n"
        "    assert a in h.HYPERPARAMS_SAMPLER and a in h.HYPERPARAMS_CONVERTER\n"
        "env = gym.make('InvalidActionEnvMultiDiscrete-v0')\n"
        "env.reset(seed=0)\n"
        "print(len(env.unwrapped.action_masks()))\n"
    )
    result = run_python("-c", code, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "15"
    assert set(MASKED_ENVS) == {"InvalidActionEnvDiscrete-v0", "InvalidActionEnvMultiDiscrete-v0"}


@pytest.mark.slow
@pytest.mark.parametrize("algo", sorted(CASES))
def test_train_without_flags_finds_yaml_and_enjoy_loads(algo: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_id, cls, budget = CASES[algo]
    logs = tmp_path / "logs"
    result = run_python("-m", "rl_zoo3.train", "--algo", algo, "--env", env_id, *budget, "-f", str(logs), *TINY, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = re.search(r"^Loading hyperparameters from: (.*)$", result.stdout, re.MULTILINE)
    assert loaded is not None, result.stdout
    assert Path(loaded.group(1)).name == f"{algo}.yml" and "rl_zoo3" not in loaded.group(1)
    assert Path(loaded.group(1)).read_text() == hyperparams_path(algo).read_text()
    model_file = logs / algo / f"{env_id}_1" / f"{env_id}.zip"
    assert model_file.is_file()
    model = cls.load(model_file)
    assert type(model) is cls and model.num_timesteps >= int(budget[1])

    zoo_main(monkeypatch, "enjoy", "--algo", algo, "--env", env_id, "-f", str(logs), "--no-render", "-n", "30")


@pytest.mark.slow
@pytest.mark.parametrize("algo", sorted(CASES))
def test_optimize_runs_a_trial(algo: str, tmp_path: Path) -> None:
    env_id, _, _ = CASES[algo]
    args = ["-m", "rl_zoo3.train", "--algo", algo, "--env", env_id, "-n", "256", "-optimize", "--n-trials", "1"]
    args += ["--n-startup-trials", "1", "--n-evaluations", "1", "--eval-episodes", "1", "--pruner", "none"]
    args += ["--no-optim-plots", "--num-threads", "1", "--seed", "7", "-f", str(tmp_path / "logs")]
    result = run_python(*args, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert re.search(r"Number of finished trials: +1\b", result.stdout), result.stdout[-2000:]


def test_lstm_sampler_sets_the_lstm_size() -> None:
    import optuna

    from sb3_trpo_plus.zoo import convert_trpo_plus_params, sample_trpo_plus_lstm_params

    trial = optuna.trial.FixedTrial(
        {
            "n_steps_pow": 6,
            "batch_size_pow": 5,
            "one_minus_gamma": 0.01,
            "one_minus_gae_lambda": 0.05,
            "learning_rate": 1e-3,
            "n_critic_updates": 5,
            "target_kl": 0.01,
            "cg_max_steps": 10,
            "cg_damping": 0.1,
            "line_search_shrinking_factor": 0.8,
            "line_search_max_iter": 10,
            "fisher_sub_sampling": 1,
            "ent_coef": 1e-4,
            "net_arch": "small",
            "activation_fn": "tanh",
            "lstm_hidden_size": 32,
        }
    )
    params = sample_trpo_plus_lstm_params(trial, 0, 8, {})
    assert params["policy_kwargs"]["lstm_hidden_size"] == 32 and params["n_steps"] == 64
    assert convert_trpo_plus_params(trial.params)["policy_kwargs"] == params["policy_kwargs"]


def _shipped_entries() -> list[tuple[str, str]]:
    import yaml

    return [
        (algo, env_id)
        for algo in sorted(CASES)
        for env_id in yaml.safe_load(hyperparams_path(algo).read_text())
        if env_id != "default"
    ]


@pytest.mark.parametrize(("algo", "env_id"), _shipped_entries())
def test_shipped_entry_builds_a_model_that_acts(algo: str, env_id: str, tmp_path: Path) -> None:
    """Every entry of the families' YAMLs is accepted and builds the family's model on the Zoo's env stack."""
    import argparse

    from rl_zoo3.exp_manager import ExperimentManager

    args = argparse.Namespace(algo=algo, env=env_id, seed=0)
    manager = ExperimentManager(args, algo, env_id, str(tmp_path), n_timesteps=64, seed=0, verbose=0)
    setup = manager.setup_experiment()
    assert setup is not None
    model, _ = setup
    assert isinstance(model, CASES[algo][1])
    eval_env = manager.create_envs(1, eval_env=True)
    assert eval_env.observation_space == model.observation_space
    model.predict(eval_env.reset(), deterministic=True)
    eval_env.close()
    model.get_env().close()
