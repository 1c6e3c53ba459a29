"""RL Zoo integration: ``--algo trpo_plus`` works after a plain install (start hook, YAML, Optuna sampler, checks).

Subprocess tests start fresh interpreters (the start hook runs at interpreter start); the others call the Zoo's
``train``/``enjoy`` in this process, which pytest started with the same hook. Budgets are tiny: a few hundred
CartPole steps.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("rl_zoo3")
optuna = pytest.importorskip("optuna")

import _sb3_trpo_plus_zoo_hook as start_hook  # noqa: E402
from sb3_trpo_plus import TRPOPlus  # noqa: E402
from sb3_trpo_plus.normalization import NormalizedFlattenExtractor  # noqa: E402
from sb3_trpo_plus.zoo import hyperparams_path  # noqa: E402

# Wheel install: both in site-packages; editable install or checkout: both at the repository root.
HOOK_FILE = Path(start_hook.__file__)
PTH_FILE = HOOK_FILE.parent / "sb3_trpo_plus_zoo.pth"

SUBPROCESS_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
TINY = ["--num-threads", "1", "--eval-freq", "-1", "--seed", "3"]


def run_python(*args: str, cwd: Path, python: str = sys.executable, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run a fresh interpreter (so the start hook runs as it does for users) and return what it printed."""
    return subprocess.run(
        [python, *args], cwd=cwd, env=SUBPROCESS_ENV, capture_output=True, text=True, timeout=timeout, check=False
    )


def zoo_main(monkeypatch: pytest.MonkeyPatch, script: str, *argv: str) -> None:
    """Run ``rl_zoo3.<script>`` in this process, as ``python -m rl_zoo3.<script> argv...`` would."""
    import importlib

    module = importlib.import_module(f"rl_zoo3.{script}")
    monkeypatch.setattr(sys, "argv", [f"{script}.py", *argv])
    getattr(module, script)()


# --------------------------------------------------------------------------- the start hook
@pytest.mark.slow
def test_registered_in_fresh_interpreter(tmp_path: Path) -> None:
    code = (
        "import rl_zoo3.utils as u, rl_zoo3.hyperparams_opt as h, sb3_contrib, stable_baselines3 as sb3\n"
        "from sb3_trpo_plus import TRPOPlus\n"
        "assert u.ALGOS['trpo_plus'] is TRPOPlus, u.ALGOS\n"
        "assert 'trpo_plus' in h.HYPERPARAMS_SAMPLER and 'trpo_plus' in h.HYPERPARAMS_CONVERTER\n"
        # every other algorithm untouched
        "assert u.ALGOS['trpo'] is sb3_contrib.TRPO and u.ALGOS['ppo'] is sb3.PPO\n"
        "assert h.HYPERPARAMS_SAMPLER['trpo'] is h.sample_trpo_params\n"
        "print('OK')\n"
    )
    result = run_python("-c", code, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "OK"


@pytest.mark.slow
def test_train_help_lists_trpo_plus(tmp_path: Path) -> None:
    result = run_python("-m", "rl_zoo3.train", "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    choices = re.search(r"--algo \{([^}]*)\}", result.stdout)
    assert choices is not None, result.stdout
    assert "trpo_plus" in choices.group(1).split(",")


def test_start_hook_imports_nothing_heavy(tmp_path: Path) -> None:
    """The hook is installed at interpreter start, and neither torch, the Zoo, Optuna nor this package is imported
    then (what else an interpreter imports at start, such as ``typing``, is its own business)."""
    code = (
        "import sys\n"
        "print(any(type(f).__name__ == 'ZooImportHook' for f in sys.meta_path))\n"
        "print(sorted(m for m in ('torch', 'rl_zoo3', 'sb3_trpo_plus', 'optuna') if m in sys.modules))\n"
    )
    result = run_python("-c", code, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == ["True", "[]"]


def test_start_without_rl_zoo3(tmp_path: Path) -> None:
    """A real interpreter start in a virtual environment holding the installed .pth and hook but no rl_zoo3."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    python = str(venv / "bin" / "python")
    purelib = run_python("-c", "import sysconfig; print(sysconfig.get_path('purelib'))", cwd=tmp_path, python=python)
    site_packages = Path(purelib.stdout.strip())
    shutil.copy(PTH_FILE, site_packages / PTH_FILE.name)
    shutil.copy(HOOK_FILE, site_packages / HOOK_FILE.name)
    code = (
        "import sys\n"
        "assert any(type(f).__name__ == 'ZooImportHook' for f in sys.meta_path)\n"
        "try:\n    import rl_zoo3.utils\nexcept ModuleNotFoundError as e:\n    print(e.name)\n"
    )
    result = run_python("-c", code, cwd=tmp_path, python=python)
    assert (result.returncode, result.stdout.strip(), result.stderr) == (0, "rl_zoo3", "")

    # A stale .pth (hook module gone, e.g. a moved editable checkout) is silent too
    (site_packages / HOOK_FILE.name).unlink()
    result = run_python("-c", "print('started')", cwd=tmp_path, python=python)
    assert (result.returncode, result.stdout.strip(), result.stderr) == (0, "started", "")


def test_register_patches_the_zoo_once() -> None:
    """One sentinel: registering again (by hand, after the start hook) wraps none of ExperimentManager's methods twice."""
    from rl_zoo3.exp_manager import ExperimentManager
    from rl_zoo3.utils import StoreDict

    from sb3_trpo_plus import zoo

    def methods() -> tuple[object, ...]:
        names = ("__init__", "read_hyperparameters", "hyperparameters_optimization")
        return (*(ExperimentManager.__dict__[name] for name in names), StoreDict.__dict__["__call__"])

    before = methods()
    assert all(hasattr(method, "__wrapped__") for method in before)  # patched (functools.wraps) by the start hook
    zoo.register()
    assert methods() == before
    assert [algo for algo in ("trpo_plus", "trpo_plus_mask", "trpo_plus_lstm", "trpo", "ppo_lstm") if zoo.is_ours(algo)] == [
        "trpo_plus",
        "trpo_plus_mask",
        "trpo_plus_lstm",
    ]


def test_hyperparams_path_names_the_zoo_names() -> None:
    with pytest.raises(
        ValueError, match=r"Invalid algo 'ppo': expected one of \('trpo_plus', 'trpo_plus_mask', 'trpo_plus_lstm'\)"
    ):
        hyperparams_path("ppo")


# --------------------------------------------------------------------------- train / enjoy / optimize
@pytest.mark.slow
def test_train_finds_yaml_and_enjoy_loads_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    logs = tmp_path / "logs"
    args = ["--algo", "trpo_plus", "--env", "CartPole-v1", "-n", "256", "-f", str(logs), *TINY]
    result = run_python("-m", "rl_zoo3.train", *args, "--hyperparams", "n_steps:64", "batch_size:64", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    # the shipped file (the subprocess may see the installed copy while this process sees the checkout's)
    loaded = re.search(r"^Loading hyperparameters from: (.*)$", result.stdout, re.MULTILINE)
    assert loaded is not None, result.stdout
    assert Path(loaded.group(1)).name == "trpo_plus.yml" and "rl_zoo3" not in loaded.group(1)
    assert Path(loaded.group(1)).read_text() == hyperparams_path().read_text()
    model_file = logs / "trpo_plus" / "CartPole-v1_1" / "CartPole-v1.zip"
    assert model_file.is_file()

    # enjoy as the README writes it, with its window: the zoo extra brings the classic-control renderer (pygame);
    # SDL's dummy video driver stands in for a display
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    zoo_main(monkeypatch, "enjoy", "--algo", "trpo_plus", "--env", "CartPole-v1", "-f", str(logs), "-n", "20")
    assert isinstance(TRPOPlus.load(model_file), TRPOPlus)


@pytest.mark.slow
def test_two_workers_share_one_study(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two `-optimize` workers, two trials each, against one journal-file study: the study holds all four."""
    storage = tmp_path / "study.log"
    args = ["-m", "rl_zoo3.train", "--algo", "trpo_plus", "--env", "CartPole-v1", "-n", "128", "-optimize"]
    args += ["--n-trials", "2", "--n-startup-trials", "1", "--n-evaluations", "1", "--eval-episodes", "1"]
    args += ["--pruner", "none", "--no-optim-plots", "--storage", str(storage), "--study-name", "shared"]
    args += ["--num-threads", "1", "--seed", "7"]  # seed 7: the sampler's first trials use small n_steps
    workers = [
        subprocess.Popen(
            [sys.executable, *args, "-f", str(tmp_path / f"worker{i}")],
            cwd=tmp_path,
            env=SUBPROCESS_ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outputs = [worker.communicate(timeout=240) for worker in workers]
    for worker, (_, stderr) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, stderr[-3000:]
    finished = [set(map(int, re.findall(r"Trial (\d+) finished", stderr))) for _, stderr in outputs]
    assert all(len(numbers) == 2 for numbers in finished), finished
    assert finished[0] | finished[1] == {0, 1, 2, 3}

    study = optuna.load_study(
        study_name="shared", storage=optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(storage)))
    )
    trials = study.get_trials(states=[optuna.trial.TrialState.COMPLETE])
    assert len(trials) == 4
    assert {"target_kl", "cg_damping", "line_search_max_iter", "ent_coef"} <= set(trials[0].params)

    # --trial-id loads a trial's values through our converter
    monkeypatch.chdir(tmp_path)
    zoo_main(
        monkeypatch,
        "train",
        *["--algo", "trpo_plus", "--env", "CartPole-v1", "-n", "64", "-f", str(tmp_path / "replay"), *TINY],
        *["--storage", str(storage), "--study-name", "shared", "--trial-id", "1"],
    )
    config = (tmp_path / "replay" / "trpo_plus" / "CartPole-v1_1" / "CartPole-v1" / "config.yml").read_text()
    assert f"- target_kl\n    - {study.trials[1].params['target_kl']}\n" in config


def test_sampler_keeps_the_exact_step() -> None:
    """The sampler tunes the exact TRPO step: nothing that sub-samples it, and the KL bound in TRPOPlus's joint unit."""
    from sb3_trpo_plus.zoo import sample_trpo_plus_params

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        params = sample_trpo_plus_params(study.ask(), n_actions=6, n_envs=2, additional_args={})
        assert "fisher_sub_sampling" not in params and "sub_sampling_factor" not in params
        assert 0.006 <= params["target_kl"] <= 0.6


# --------------------------------------------------------------------------- defaults and bad input
def test_env_without_entry_uses_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    args = ["--algo", "trpo_plus", "--env", "FrozenLake-v1", "-n", "32", "-f", str(tmp_path), *TINY]
    zoo_main(monkeypatch, "train", *args, "--hyperparams", "n_steps:32")
    out = capsys.readouterr().out
    assert f"Loading hyperparameters from: {hyperparams_path()}\n" in out
    assert "Using 'default' hyperparameters" in out


def test_conf_overrides_and_other_algorithms_keep_their_files(tmp_path: Path) -> None:
    from rl_zoo3.exp_manager import ExperimentManager

    custom = tmp_path / "mine.yml"
    assert ExperimentManager(None, "trpo_plus", "CartPole-v1", str(tmp_path), config=str(custom)).config == str(custom)
    assert ExperimentManager(None, "trpo_plus", "CartPole-v1", str(tmp_path)).config == str(hyperparams_path())
    for algo in ("trpo", "ppo"):
        config = ExperimentManager(None, algo, "CartPole-v1", str(tmp_path)).config
        assert Path(config).parts[-3:] == ("rl_zoo3", "hyperparams", f"{algo}.yml")


@pytest.fixture
def no_env_built(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if the Zoo builds an env: hyperparameters are checked before that."""
    from rl_zoo3.exp_manager import ExperimentManager

    def create_envs(*args: object, **kwargs: object) -> None:
        pytest.fail("the Zoo built an env before reporting the bad hyperparameter")

    monkeypatch.setattr(ExperimentManager, "create_envs", create_envs)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("target_kll: 0.01", r"Unknown hyperparameter 'target_kll' .*did you mean 'target_kl'"),
        ("target_kl: big", r"Invalid hyperparameter target_kl='big' .*expected a number"),
        ("normalize_advantage: 'yes'", r"Invalid hyperparameter normalize_advantage='yes' .*true or false"),
        ("learning_rate: fast", r"Invalid hyperparameter learning_rate='fast'"),
        ("target_kl: lin_fast", r"Invalid hyperparameter target_kl='lin_fast' .*'lin_<initial value>' schedule"),
        ("n_envs: 1.5", r"Invalid hyperparameter n_envs=1.5"),
        ("seed: 1", r"Invalid hyperparameter 'seed' .*sets it itself"),
        # values outside TRPOPlus's limits (its constructor's checks), a schedule's initial value included
        ("cg_max_steps: 0", r"Invalid hyperparameter cg_max_steps=0 .*: expected 1 <= cg_max_steps \(an integer\)$"),
        ("target_kl: lin_-0.01", r"Invalid hyperparameter target_kl='lin_-0.01' .*: expected 0.0 < target_kl$"),
        ("learning_rate: 0", r"Invalid hyperparameter learning_rate=0 .*: expected 0.0 < learning_rate$"),
        (
            "line_search_shrinking_factor: 1",
            r"line_search_shrinking_factor=1 .*: expected 0.0 < line_search_shrinking_factor < 1.0",
        ),
        ("torch_threads: 0", r"Invalid hyperparameter torch_threads=0 .*: expected 1 <= torch_threads"),
        ("normalize_values: 'yes'", r"Invalid hyperparameter normalize_values='yes' .*: expected True, False or 'auto'$"),
    ],
)
@pytest.mark.usefixtures("no_env_built")
def test_bad_hyperparameter_names_the_key(entry: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf = tmp_path / "bad.yml"
    conf.write_text(f"CartPole-v1:\n  n_timesteps: 64\n  policy: MlpPolicy\n  {entry}\n")
    args = ["--algo", "trpo_plus", "--env", "CartPole-v1", "-f", str(tmp_path), "-conf", str(conf), *TINY]
    with pytest.raises(ValueError, match=message) as error:
        zoo_main(monkeypatch, "train", *args)
    assert f" for trpo_plus (env CartPole-v1, hyperparameters from {conf})" in str(error.value)  # the env and the file


@pytest.mark.usefixtures("no_env_built")
def test_bad_command_line_hyperparameter_names_the_command_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A typo given with ``--hyperparams`` is reported as coming from the command line, not from the YAML file."""
    args = ["--algo", "trpo_plus", "--env", "CartPole-v1", "-n", "64", "-f", str(tmp_path), *TINY]
    source = r" for trpo_plus \(env CartPole-v1, --hyperparams on the command line\)"
    with pytest.raises(ValueError, match=r"'target_kll'" + source + r"; did you mean 'target_kl'\?"):
        zoo_main(monkeypatch, "train", *args, "--hyperparams", "target_kll:0.01")
    with pytest.raises(ValueError, match=r"n_steps='many'" + source):
        zoo_main(monkeypatch, "train", *args, "--hyperparams", "n_critic_updates:2", "n_steps:'many'")


@pytest.mark.parametrize("algo", ["trpo_plus", "trpo_plus_mask", "trpo_plus_lstm"])
@pytest.mark.usefixtures("no_env_built")
def test_bad_value_is_rejected_before_any_env(algo: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A value outside TRPOPlus's limits, from ``--hyperparams`` or from a ``-conf`` file, stops every one of our Zoo
    algorithms before any env is built, with the key, the value, the env and where the value came from."""
    args = ["--algo", algo, "--env", "CartPole-v1", "-n", "64", "-f", str(tmp_path), *TINY]
    command_line = f"Invalid hyperparameter target_kl=-0.01 for {algo} (env CartPole-v1, --hyperparams on the command line)"
    with pytest.raises(ValueError, match=re.escape(f"{command_line}: expected 0.0 < target_kl")):
        zoo_main(monkeypatch, "train", *args, "--hyperparams", "target_kl:-0.01")
    conf = tmp_path / "bad.yml"
    conf.write_text("CartPole-v1:\n  policy: MlpPolicy\n  gamma: 1.5\n")
    in_file = f"Invalid hyperparameter gamma=1.5 for {algo} (env CartPole-v1, hyperparameters from {conf})"
    with pytest.raises(ValueError, match=re.escape(f"{in_file}: expected 0.0 <= gamma <= 1.0")):
        zoo_main(monkeypatch, "train", *args, "-conf", str(conf))


def test_target_kl_lin_schedule(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``target_kl: lin_<x>`` shrinks the region linearly from x to 0, as ``learning_rate: lin_<x>`` does the rate."""
    conf = tmp_path / "mine.yml"
    conf.write_text(
        "CartPole-v1:\n  n_timesteps: 128\n  policy: MlpPolicy\n  n_steps: 64\n  batch_size: 64\n  target_kl: lin_0.02\n"
    )
    args = ["--algo", "trpo_plus", "--env", "CartPole-v1", "-f", str(tmp_path), "-conf", str(conf), *TINY]
    zoo_main(monkeypatch, "train", *args)
    run = tmp_path / "trpo_plus" / "CartPole-v1_1"
    model = TRPOPlus.load(run / "CartPole-v1.zip")
    assert callable(model.target_kl)
    assert [model.target_kl(p) for p in (1.0, 0.25, 0.0)] == pytest.approx([0.02, 0.005, 0.0])
    assert "- target_kl\n    - lin_0.02\n" in (run / "CartPole-v1" / "config.yml").read_text()


@pytest.mark.parametrize("algo", ["trpo_plus", "ppo"])
def test_lin_schedule_on_the_command_line_as_the_files_write_it(
    algo: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--hyperparams target_kl:lin_0.02`` (no Python quotes, as a hyperparameter file writes it) is the schedule
    for our algorithms; any other algorithm keeps the Zoo's own error for a value Python cannot evaluate."""
    args = ["--algo", algo, "--env", "CartPole-v1", "-n", "128", "-f", str(tmp_path), *TINY]
    if algo != "trpo_plus":
        with pytest.raises(SyntaxError):
            zoo_main(monkeypatch, "train", *args, "--hyperparams", "n_steps:64", "learning_rate:lin_0.001")
        return
    zoo_main(
        monkeypatch,
        "train",
        *args,
        "--hyperparams",
        "target_kl:lin_0.02",
        "n_steps:64",
        "batch_size:64",
        "learning_rate:lin_1e-3",
    )
    run = tmp_path / "trpo_plus" / "CartPole-v1_1"
    model = TRPOPlus.load(run / "CartPole-v1.zip")
    assert model.n_steps == 64
    assert [model.target_kl(p) for p in (1.0, 0.25, 0.0)] == pytest.approx([0.02, 0.005, 0.0])  # type: ignore[operator]
    assert model.lr_schedule(0.5) == pytest.approx(5e-4)
    saved = (run / "CartPole-v1" / "args.yml").read_text() + (run / "CartPole-v1" / "config.yml").read_text()
    assert "- lin_0.02\n" in saved and "CommandLineText" not in saved  # plain strings in the Zoo's saved files


def test_target_kl_auto_and_normalization_settings_from_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``target_kl: auto`` is the constructor's default (not a schedule string); the normalization switches pass."""
    conf = tmp_path / "mine.yml"
    conf.write_text(
        "Pendulum-v1:\n  n_timesteps: 128\n  policy: MlpPolicy\n  n_steps: 64\n  batch_size: 64\n  target_kl: auto\n"
        "  normalize_values: false\n"
    )
    args = ["--algo", "trpo_plus", "--env", "Pendulum-v1", "-f", str(tmp_path), "-conf", str(conf), *TINY]
    zoo_main(monkeypatch, "train", *args)
    model = TRPOPlus.load(tmp_path / "trpo_plus" / "Pendulum-v1_1" / "Pendulum-v1.zip")
    assert model.target_kl == "auto" and model._current_target_kl() == pytest.approx(0.01)
    assert model.value_normalizer is None and model.policy_kwargs["features_extractor_class"] is NormalizedFlattenExtractor


# --------------------------------------------------------------------------- the shipped entries
def _shipped_envs() -> list[str]:
    import yaml

    return [env_id for env_id in yaml.safe_load(hyperparams_path().read_text()) if env_id != "default"]


@pytest.mark.parametrize("env_id", _shipped_envs())
def test_shipped_entry_builds_train_and_eval_envs(env_id: str, tmp_path: Path) -> None:
    """Every entry of the shipped YAML gives a TRPOPlus model whose training and evaluation envs agree."""
    import argparse

    import gymnasium as gym
    from rl_zoo3.exp_manager import ExperimentManager

    try:
        gym.make(env_id).close()
    except (gym.error.Error, ImportError) as error:  # e.g. box2d or mujoco not installed
        pytest.skip(f"{env_id} cannot be made here: {error}")
    args = argparse.Namespace(algo="trpo_plus", env=env_id, seed=0)
    manager = ExperimentManager(args, "trpo_plus", env_id, str(tmp_path), n_timesteps=64, seed=0, verbose=0)
    setup = manager.setup_experiment()
    assert setup is not None
    model, _ = setup
    assert isinstance(model, TRPOPlus)
    eval_env = manager.create_envs(1, eval_env=True)
    assert eval_env.observation_space == model.observation_space
    assert eval_env.action_space == model.action_space
    obs = eval_env.reset()
    model.predict(obs, deterministic=True)  # the policy acts on the evaluation env's observations
    eval_env.close()
    model.get_env().close()


@pytest.mark.usefixtures("no_env_built")
def test_a_missing_simulator_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Box2D (or MuJoCo) not installed: one line naming our extra, before any env is built."""
    import importlib.util

    from sb3_trpo_plus.zoo import missing_extra

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "Box2D" else real(name, *a))
    assert missing_extra("BipedalWalker-v3") == (
        "BipedalWalker-v3 needs Box2D, which is not installed: pip install 'sb3-trpo-plus[box2d]'"
    )
    assert missing_extra("Hopper-v5") is None and missing_extra("CartPole-v1") is None and missing_extra("NoSuch-v0") is None
    args = ["--algo", "trpo_plus", "--env", "BipedalWalker-v3", "-n", "64", "-f", str(tmp_path), *TINY]
    with pytest.raises(ModuleNotFoundError, match=r"^BipedalWalker-v3 needs Box2D.*\[box2d\]'$"):
        zoo_main(monkeypatch, "train", *args)


def test_v4_entries_are_the_v5_entries() -> None:
    """One source per setting: each MuJoCo -v4 entry is its -v5 entry (Ant-v4 without the wrapper that drops the
    contact forces v4's observation does not have)."""
    import yaml

    entries = yaml.safe_load(hyperparams_path().read_text())
    v4 = [env_id for env_id in entries if env_id.endswith("-v4")]
    assert len(v4) == 9
    for env_id in v4:
        expected = dict(entries[env_id.replace("-v4", "-v5")])
        if env_id == "Ant-v4":
            expected["env_wrapper"] = None
        assert entries[env_id] == expected, env_id
