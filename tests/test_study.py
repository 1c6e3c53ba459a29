"""Studies shared by several Zoo workers (``sb3_trpo_plus.study``): storage errors, study checks, the ``best``
entry, and ``-optimize`` workers on a real PostgreSQL server (one of them killed mid-trial)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("rl_zoo3")
optuna = pytest.importorskip("optuna")
yaml = pytest.importorskip("yaml")

from torch import nn  # noqa: E402

from sb3_trpo_plus import study as study_module  # noqa: E402
from sb3_trpo_plus.study import (  # noqa: E402
    STUDY_ATTR,
    StorageError,
    StudyMismatchError,
    open_storage,
    prepare_study,
)
from sb3_trpo_plus.study_storage import WORKER_ATTR, worker_name  # noqa: E402
from sb3_trpo_plus.zoo import (  # noqa: E402
    check_hyperparams,
    convert_trpo_plus_params,
    hyperparams_path,
    sample_trpo_plus_params,
)
from tests import postgres  # noqa: E402

TrialState = optuna.trial.TrialState
SUBPROCESS_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # nothing listens there once the socket is closed


# --------------------------------------------------------------------------- storage errors
@pytest.mark.parametrize(
    ("url", "module", "advice"),
    [
        ("postgresql://tuner:secret@db-host/optuna", "psycopg", "sb3-trpo-plus[distributed]"),
        ("postgresql://tuner:secret@db-host/optuna", "psycopg", "postgresql+psycopg2://"),
        ("postgresql+psycopg2://tuner:secret@db-host/optuna", "psycopg2", "pip install psycopg2-binary"),
        ("mysql+pymysql://tuner:secret@db-host/optuna", "pymysql", "pip install pymysql"),
    ],
)
def test_missing_driver_names_what_to_install(url: str, module: str, advice: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # import psycopg -> ModuleNotFoundError, as without the package
    with pytest.raises(StorageError, match=re.escape(advice)) as caught:
        open_storage(url)
    message = str(caught.value)
    assert f"Python module {module!r}" in message and "secret" not in message and "***" in message
    assert caught.value.__suppress_context__  # no SQLAlchemy traceback under it


def test_unreachable_server_names_host_and_port() -> None:
    pytest.importorskip("psycopg")
    port = closed_port()
    start = time.perf_counter()
    with pytest.raises(StorageError, match=rf"cannot connect to the database server at 127\.0\.0\.1:{port}: ") as caught:
        open_storage(f"postgresql://tuner:secret@127.0.0.1:{port}/optuna")
    assert time.perf_counter() - start < 5  # refused at once, not retried as a table-creation race
    assert "secret" not in str(caught.value) and caught.value.__suppress_context__


@pytest.mark.parametrize(
    ("storage", "message"),
    [("study.db", "neither a journal file"), ("postgress://u@h/db", "SQLAlchemy knows no database 'postgress'")],
)
def test_bad_storage_text(storage: str, message: str) -> None:
    with pytest.raises(StorageError, match=re.escape(message)):
        open_storage(storage)


@pytest.mark.parametrize("algo", ["trpo_plus", "trpo"])
def test_zoo_worker_reports_storage_error(algo: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Zoo's own ``-optimize`` path reaches our checks for trpo_plus (a clear error, no trial started), while
    another algorithm gets the Zoo's and Optuna's behaviour unchanged."""
    import rl_zoo3.train

    port = closed_port()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "psycopg", None)
    argv = ["train.py", "--algo", algo, "--env", "CartPole-v1", "-n", "64", "-optimize", "--n-trials", "1"]
    argv += ["--storage", f"postgresql://u@127.0.0.1:{port}/optuna", "--study-name", "s", "-f", str(tmp_path / "logs")]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(ImportError if algo == "trpo" else StorageError) as caught:
        rl_zoo3.train.train()
    if algo == "trpo_plus":
        assert "sb3-trpo-plus[distributed]" in str(caught.value)
    else:
        assert "Failed to import DB access module" in str(caught.value)  # Optuna's own message


def test_heartbeat_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(study_module.HEARTBEAT_VARIABLE, raising=False)
    monkeypatch.delenv(study_module.GRACE_PERIOD_VARIABLE, raising=False)
    assert study_module.heartbeat_settings() == (60, None)
    monkeypatch.setenv(study_module.HEARTBEAT_VARIABLE, "5")
    monkeypatch.setenv(study_module.GRACE_PERIOD_VARIABLE, "30")
    assert study_module.heartbeat_settings() == (5, 30)
    monkeypatch.setenv(study_module.HEARTBEAT_VARIABLE, "0")
    assert study_module.heartbeat_settings() == (None, None)
    monkeypatch.setenv(study_module.HEARTBEAT_VARIABLE, "soon")
    with pytest.raises(ValueError, match=study_module.HEARTBEAT_VARIABLE):
        study_module.heartbeat_settings()


def test_study_imports_nothing_of_the_zoo(tmp_path: Path) -> None:
    """The storage module and its command line stand on their own: neither the Zoo nor our patches of it are imported."""
    code = "import sys, sb3_trpo_plus.study\nprint(sorted(m for m in ('rl_zoo3', 'sb3_trpo_plus.zoo') if m in sys.modules))\n"
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=SUBPROCESS_ENV, capture_output=True, text=True)
    assert (result.returncode, result.stdout.strip()) == (0, "[]"), result.stderr[-2000:]


# --------------------------------------------------------------------------- study checks
@pytest.fixture(params=["journal", "sqlite"])
def storage_text(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return str(tmp_path / "study.log") if request.param == "journal" else f"sqlite:///{tmp_path / 'study.db'}"


def test_study_of_another_algorithm_or_env_is_refused(storage_text: str) -> None:
    storage = open_storage(storage_text)
    zoo_ppo = optuna.create_study(storage=storage, study_name="zoo-ppo", direction="maximize")
    zoo_ppo.set_user_attr("command", "/usr/bin/python3 -m rl_zoo3.train --algo ppo --env Pendulum-v1 -optimize")
    with pytest.raises(StudyMismatchError, match=r"tunes --algo ppo \(the RL Zoo's record.*runs --algo trpo_plus"):
        prepare_study(storage, "zoo-ppo", "trpo_plus", "Pendulum-v1")

    prepare_study(storage, "ours", "trpo_plus", "Pendulum-v1", {"n_actions": 1})  # a new study: recorded
    assert optuna.load_study(study_name="ours", storage=storage).user_attrs[STUDY_ATTR]["algo"] == "trpo_plus"
    prepare_study(storage, "ours", "trpo_plus", "Pendulum-v1")  # the same again: fine
    with pytest.raises(StudyMismatchError, match=r"tunes --env Pendulum-v1 \(the sb3-trpo-plus record"):
        prepare_study(storage, "ours", "trpo_plus", "CartPole-v1")

    # no record at all, but trials of another sampler
    other = optuna.create_study(storage=storage, study_name="script", direction="maximize")
    other.enqueue_trial({"vf_coef": 0.5})
    other.optimize(lambda trial: trial.suggest_float("vf_coef", 0, 1), n_trials=1)
    with pytest.raises(StudyMismatchError, match=r"its trials sample \['vf_coef'\]"):
        prepare_study(storage, "script", "trpo_plus", "Pendulum-v1", sampler=sample_trpo_plus_params)

    optuna.create_study(storage=storage, study_name="minimizing")  # optuna create-study's default direction
    with pytest.raises(StudyMismatchError, match=r"created to minimize.*--direction maximize"):
        prepare_study(storage, "minimizing", "trpo_plus", "Pendulum-v1")


def test_best_entry_pastes_into_the_yaml(storage_text: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``best`` prints the best trial as a hyperparameter entry that the Zoo accepts, with the KL unit said."""
    storage = open_storage(storage_text)
    study = prepare_study(storage, "hc", "trpo_plus", "HalfCheetah-v5", {"n_actions": 6, "n_timesteps": 20000})
    values = [-50.0, 312.5, 20.0]
    for value in values:
        trial = study.ask()
        sample_trpo_plus_params(trial, 6, 1, {})
        study.tell(trial, value)
    best = study.trials[1]

    assert study_module.main(["best", "--storage", storage_text, "--study-name", "hc"]) == 0
    text = capsys.readouterr().out
    assert "trial 1, mean evaluation return 312.50 after 20000 steps (trials: 3 complete)" in text
    entry = yaml.safe_load(text)["HalfCheetah-v5"]
    check_hyperparams(entry, "best")  # names and types the Zoo will accept
    expected = convert_trpo_plus_params(best.params)
    policy_kwargs = eval(entry.pop("policy_kwargs"), {"nn": nn})  # as the Zoo evaluates it
    assert policy_kwargs == expected.pop("policy_kwargs")
    for key, value in expected.items():
        assert entry[key] == pytest.approx(value, rel=1e-5), key
    shipped = yaml.safe_load(hyperparams_path().read_text())["HalfCheetah-v5"]
    assert {key: entry[key] for key in shipped if key not in expected and key != "policy_kwargs"} == {
        key: value for key, value in shipped.items() if key not in expected and key != "policy_kwargs"
    }  # the untuned keys: the shipped entry's
    kl = best.params["target_kl"]
    assert re.search(rf"target_kl: {kl:.6g}  # tuned; sb3-contrib {kl / 6:.6g} x 6 action dimensions", text)
    assert "cg_damping:" in text and "x 6 action dimensions" in text.split("cg_damping:")[1].splitlines()[0]

    assert study_module.main(["best", "--storage", storage_text, "--study-name", "nope"]) == 2
    assert "No study 'nope'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("algo", "env", "recorded_config"),
    [
        ("trpo_plus_mask", "InvalidActionEnvDiscrete-v0", None),  # no file recorded
        ("trpo_plus_lstm", "CartPoleNoVel-v1", "/elsewhere/hyperparams/trpo_plus_lstm.yml"),  # another machine's file
    ],
)
def test_best_entry_of_a_family_reads_its_own_yaml(
    algo: str, env: str, recorded_config: str | None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A masked or recurrent study whose conf file is not here takes its untuned keys from its own shipped YAML."""
    storage_text = str(tmp_path / "study.log")
    info = {"n_actions": 0, **({"config": recorded_config} if recorded_config else {})}
    study = prepare_study(open_storage(storage_text), "family", algo, env, info)
    trial = study.ask()
    sample_trpo_plus_params(trial, 0, 1, {})
    study.tell(trial, 1.0)

    assert study_module.main(["best", "--storage", storage_text, "--study-name", "family"]) == 0
    text = capsys.readouterr().out
    assert f"# Untuned keys: entry '{env}' of {hyperparams_path(algo)}; tuned values (by --algo {algo}) marked." in text
    entry = yaml.safe_load(text)[env]
    shipped = yaml.safe_load(hyperparams_path(algo).read_text())[env]
    tuned = convert_trpo_plus_params(trial.params)
    assert {key: entry[key] for key in shipped if key not in tuned} == {
        key: value for key, value in shipped.items() if key not in tuned
    }


def test_best_entry_refuses_a_study_of_another_algorithm(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A Zoo study of ``--algo ppo`` (which has a converter in the Zoo, but no YAML here) is not ours to print."""
    storage_text = str(tmp_path / "study.log")
    study = optuna.create_study(storage=open_storage(storage_text), study_name="ppo", direction="maximize")
    study.set_user_attr("command", "python -m rl_zoo3.train --algo ppo --env CartPole-v1 -optimize")
    study.tell(study.ask({"learning_rate": optuna.distributions.FloatDistribution(1e-5, 1e-3)}), 1.0)
    assert study_module.main(["best", "--storage", storage_text, "--study-name", "ppo"]) == 2
    assert "tunes --algo ppo, which sb3-trpo-plus does not provide" in capsys.readouterr().err


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")
def test_fail_stale_marks_dead_workers_trials(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    storage = open_storage(url, heartbeat_interval=1, grace_period=1)
    study = prepare_study(storage, "s", "trpo_plus", "Pendulum-v1")
    dead, silent = study.ask(), study.ask()  # a worker that beat once, then died; a trial that never beat
    storage.record_heartbeat(dead._trial_id)
    assert storage.get_trial(dead._trial_id).user_attrs[WORKER_ATTR] == worker_name()
    time.sleep(2.2)
    args = ["fail-stale", "--storage", url, "--study-name", "s", "--grace-period", "1"]
    assert study_module.main(args) == 0
    assert f"Marked FAIL: [{dead.number}]; still running: [{silent.number}]" in capsys.readouterr().out
    assert study_module.main([*args, "--all-running"]) == 0
    assert f"Marked FAIL: [{silent.number}]; still running: none" in capsys.readouterr().out
    assert [t.state for t in study.get_trials()] == [TrialState.FAIL, TrialState.FAIL]


# --------------------------------------------------------------------------- a real PostgreSQL server
def zoo_worker(url: str, name: str, n_trials: int, folder: Path) -> subprocess.Popen:
    """One ``-optimize`` worker: Pendulum-v1, 512 steps a trial, two evaluations (the median pruner acts on the second)."""
    command = [sys.executable, "-m", "rl_zoo3.train", "--algo", "trpo_plus", "--env", "Pendulum-v1", "-n", "512"]
    command += ["-optimize", "--n-trials", str(n_trials), "--sampler", "random", "--pruner", "median"]
    command += ["--n-startup-trials", "1", "--n-evaluations", "2", "--eval-episodes", "1", "--no-optim-plots"]
    command += ["--storage", url, "--study-name", "pendulum", "--num-threads", "1", "-f", str(folder / name)]
    command += ["--seed", str(sum(map(ord, name)))]
    env = {**SUBPROCESS_ENV, study_module.HEARTBEAT_VARIABLE: "1", study_module.GRACE_PERIOD_VARIABLE: "2"}
    log = open(folder / f"{name}.log", "w")  # noqa: SIM115 (closed with the process)
    return subprocess.Popen(command, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)


def process_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, which a container's init may never reap, has exited)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z")


def worker_trials(study: optuna.Study, process: subprocess.Popen) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.get_trials() if t.user_attrs.get(WORKER_ATTR, "").endswith(f":{process.pid}")]


@pytest.mark.slow
def test_workers_share_a_postgres_study(tmp_path: Path) -> None:
    """Three workers start together on an empty database; one is killed mid-trial, a replacement joins: the killed
    trial ends FAIL, the others go on, every trial is there once, and the server is gone afterwards."""
    postgres.require()
    with postgres.running_server() as server:
        steady = {name: zoo_worker(server.url, name, 2, tmp_path) for name in ("a", "b")}
        victim = zoo_worker(server.url, "c", 4, tmp_path)
        processes = [*steady.values(), victim]
        try:
            storage = open_storage(server.url)
            deadline = time.monotonic() + 120
            killed_trial = None
            while killed_trial is None:  # wait until the victim has finished a trial and runs its next
                assert time.monotonic() < deadline, (tmp_path / "c.log").read_text()[-3000:]
                assert victim.poll() is None, (tmp_path / "c.log").read_text()[-3000:]
                time.sleep(0.2)
                if "pendulum" not in [s.study_name for s in optuna.get_all_study_summaries(storage)]:
                    continue
                study = optuna.load_study(study_name="pendulum", storage=storage)
                mine = worker_trials(study, victim)
                running = [t for t in mine if t.state == TrialState.RUNNING]
                if running and any(t.state.is_finished() for t in mine):
                    victim.send_signal(signal.SIGSTOP)  # freeze it, then make sure the trial is still running
                    if storage.get_trial(running[0]._trial_id).state == TrialState.RUNNING:
                        killed_trial = running[0].number
                        victim.kill()
                    else:
                        victim.send_signal(signal.SIGCONT)
            victim.wait(timeout=30)
            replacement = zoo_worker(server.url, "d", 1, tmp_path)  # "restart the worker": the same command
            processes.append(replacement)
            for process in [*steady.values(), replacement]:
                assert process.wait(timeout=240) == 0, process.args
        finally:
            for process in processes:
                if process.poll() is None:
                    process.kill()
                    process.wait()

        study = optuna.load_study(study_name="pendulum", storage=open_storage(server.url))
        trials = study.get_trials()
        assert [t.number for t in trials] == list(range(len(trials)))  # none lost, none counted twice
        failed = [t.number for t in trials if t.state == TrialState.FAIL]
        assert failed == [killed_trial], [(t.number, t.state) for t in trials]
        assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials if t.number != killed_trial)
        workers = {**steady, "c": victim, "d": replacement}
        by_worker = {name: worker_trials(study, process) for name, process in workers.items()}
        assert sum(map(len, by_worker.values())) == len(trials)  # each trial names its worker
        assert [len(by_worker[name]) for name in ("a", "b", "d")] == [2, 2, 1]  # each ran its --n-trials
        assert len(by_worker["c"]) >= 2 and by_worker["c"][-1].number == killed_trial  # finished some, then died
        # the pruner reads every worker's intermediate values from the shared database
        assert all(t.intermediate_values for t in trials if t.number != killed_trial)
        for name in ("a", "b", "d"):  # what each worker said it finished is what the database holds
            log = (tmp_path / f"{name}.log").read_text()
            said = {int(n) for n in re.findall(r"Trial (\d+) (?:finished|pruned)", log)}
            assert said == {t.number for t in by_worker[name]}, log[-2000:]
        assert study.user_attrs[STUDY_ATTR]["algo"] == "trpo_plus"
        assert (
            "Pendulum-v1:"
            in subprocess.run(
                [sys.executable, "-m", "sb3_trpo_plus.study", "best", "--storage", server.url, "--study-name", "pendulum"],
                capture_output=True,
                text=True,
                check=True,
                env=SUBPROCESS_ENV,
            ).stdout
        )
    assert not server.data_dir.exists()
    deadline = time.monotonic() + 10  # pg_ctl returns once the pid file is gone, just before the postmaster exits
    while process_alive(server.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not process_alive(server.pid)
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", server.port), timeout=2):
        pass
