"""RL Zoo integration of the policy families: ``trpo_plus_mask`` and ``trpo_plus_lstm`` (train, enjoy, -optimize).

Tiny budgets: these check the wiring, not the learning.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
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

    import gymnasium as gym
    from rl_zoo3.exp_manager import ExperimentManager

    args = argparse.Namespace(algo=algo, env=env_id, seed=0)
    manager = ExperimentManager(args, algo, env_id, str(tmp_path), n_timesteps=64, seed=0, verbose=0)
    try:
        setup = manager.setup_experiment()
    except gym.error.DependencyNotInstalled as error:  # e.g. CarRacing-v3's resize wrapper without opencv
        pytest.skip(f"{env_id}'s env stack cannot be built here: {error}")
    assert setup is not None
    model, _ = setup
    assert isinstance(model, CASES[algo][1])
    eval_env = manager.create_envs(1, eval_env=True)
    assert eval_env.observation_space == model.observation_space
    model.predict(eval_env.reset(), deterministic=True)
    eval_env.close()
    model.get_env().close()


# --------------------------------------------------------------------------- trpo_plus_lstm's entries by the rule
#: the entries that predate benchmarks/families/LSTM_ENTRIES.md's rule, with the keys whose values differ from it
#: (the same list as that document's)
OLDER_LSTM_ENTRIES = {
    "CartPoleNoVel-v1": {"n_steps", "learning_rate", "n_critic_updates", "cg_damping"},
    "PendulumNoVel-v1": {"batch_size", "target_kl"},
    "MountainCarContinuousNoVel-v0": set(),
}


def _lstm_entries() -> dict[str, dict]:
    import yaml

    entries = yaml.safe_load(hyperparams_path("trpo_plus_lstm").read_text())
    return {env_id: entry for env_id, entry in entries.items() if env_id != "default"}


def _action_dims(env_id: str) -> int | None:
    """The number of action dimensions of ``env_id`` (1 for Discrete), ``None`` where it cannot be made here."""
    import gymnasium as gym
    import rl_zoo3.import_envs  # noqa: F401  (registers the NoVel envs)

    try:
        env = gym.make(env_id)
    except (gym.error.Error, ImportError):  # not registered, or its simulator (box2d, mujoco, mujoco-py) missing
        return None
    space = env.action_space
    env.close()
    assert isinstance(space, gym.spaces.Box | gym.spaces.Discrete), space
    return int(np.prod(space.shape)) if isinstance(space, gym.spaces.Box) else 1


def test_every_installable_ppo_lstm_task_has_an_entry() -> None:
    """Each task of the Zoo's ppo_lstm.yml that makes an env here has a trpo_plus_lstm entry (else the Zoo would
    train it with ``default``), and every entry is such a task."""
    from benchmarks.families.lstm_rule import tasks

    installable = [env_id for env_id in tasks() if _action_dims(env_id) is not None]
    assert {"CartPoleNoVel-v1", "LunarLanderNoVel-v3"} <= set(installable)  # a -v2 id replaced by its successor
    assert [env_id for env_id in installable if env_id not in _lstm_entries()] == []
    assert set(_lstm_entries()) <= set(tasks())


@pytest.mark.parametrize("env_id", sorted(_lstm_entries()))
def test_lstm_entry_passes_the_zoo_check(env_id: str) -> None:
    from sb3_trpo_plus.zoo_hyperparams import check_hyperparams

    check_hyperparams(dict(_lstm_entries()[env_id]), "trpo_plus_lstm.yml", algo="trpo_plus_lstm")  # raises if not


def _normalized(value: object) -> object:
    return " ".join(value.split()) if isinstance(value, str) else value  # policy_kwargs: YAML folds its lines


@pytest.mark.parametrize("env_id", sorted(_lstm_entries()))
def test_lstm_entry_is_derived_by_the_rule(env_id: str) -> None:
    """Each entry is what benchmarks/families/lstm_rule.py (LSTM_ENTRIES.md's rule) derives from the Zoo's ppo_lstm
    and trpo entries, and says so above itself; the older entries differ from it in the keys the document lists."""
    import inspect

    from benchmarks.families.lstm_rule import derive

    dims = _action_dims(env_id)
    if dims is None:
        pytest.skip(f"{env_id} cannot be made here (its action space is needed)")
    entry, derived = _lstm_entries()[env_id], derive(env_id, dims)
    if env_id in OLDER_LSTM_ENTRIES:
        defaults = {key: p.default for key, p in inspect.signature(RecurrentTRPOPlus.__init__).parameters.items()}
        value = lambda e, key: _normalized(e.get(key, defaults.get(key)))  # noqa: E731  (what the model gets)
        differ = {key for key in entry.keys() | derived.keys() if value(entry, key) != value(derived, key)}
        assert differ == OLDER_LSTM_ENTRIES[env_id]
        return
    assert {key: _normalized(v) for key, v in entry.items()} == {key: _normalized(v) for key, v in derived.items()}
    lines = hyperparams_path("trpo_plus_lstm").read_text().splitlines()
    above = lines[: next(i for i, line in enumerate(lines) if line.startswith(f"{env_id}:"))]
    comment = []
    for line in reversed(above):
        if not line.startswith("#"):
            break
        comment.insert(0, line)
    assert "Derived by LSTM_ENTRIES.md's rule" in " ".join(comment)  # then "not yet measured" or the verdict


def test_the_benchmark_knows_the_derived_entries() -> None:
    """benchmarks/families/run.py runs every derived entry but CarRacing-v3 (the Zoo runs it), to at most 1M steps."""
    from benchmarks.families import run

    assert set(run.DERIVED_TASKS) | {"CarRacing-v3"} == set(_lstm_entries()) - set(OLDER_LSTM_ENTRIES)
    assert run._budget({"n_timesteps": 1e8}) == 1_000_000 and run._budget({"n_timesteps": 3e5}) == 300_000
    assert run._zoo_entry("ppo_lstm", "LunarLanderNoVel-v3")["n_steps"] == 512  # the -v2 entry
