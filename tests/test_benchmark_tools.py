"""The learning benchmark's bookkeeping (``benchmarks/learning/``): seeds, the record of runs (``store.py``: append,
read back, concurrent appends), the sweep record, the paired comparison, batched commits and the report's tables,
which write the README's claims. No training here: synthetic runs only."""

from __future__ import annotations

import gzip
import math
import multiprocessing
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
LEARNING = ROOT / "benchmarks" / "learning"
sys.path.insert(0, str(ROOT))  # the benchmarks package lives in the checkout, not in the wheel

from benchmarks.learning import report, run, run_queue, store, sweep  # noqa: E402


def fake_run(algo: str, env: str, seed: int, final: float) -> dict[str, Any]:
    return {"algo": algo, "env": env, "seed": seed, "final_eval": {"mean": final}}


CURVE = [
    {"timesteps": 0, "eval_mean": -1221.9394986, "eval_std": 400.3029668097822, "eval_min": -1716.155824,
     "eval_max": -619.952119, "eval_mean_length": 200.0, "train_ep_return_mean": float("nan"), "train_time_s": 0.00089},
    {"timesteps": 5000, "eval_mean": -1259.150879, "eval_std": 25.057955399772318, "eval_min": -1294.447644,
     "eval_max": -1219.293236, "eval_mean_length": 200.0, "train_ep_return_mean": -1197.7463580416668,
     "train_time_s": 1.885889417004364},
]  # fmt: skip


def full_record(algo: str, env: str, seed: int, final: float, tag: str = "") -> dict[str, Any]:
    """A run's record as ``run.py`` builds it (its keys in its order), with ``final`` as the final mean return."""
    return {
        "algo": algo,
        "algo_class": "sb3_trpo_plus.trpo_plus.TRPOPlus",
        "env": env,
        "seed": seed,
        "final_eval": {
            "n_episodes": 2,
            "deterministic": True,
            "mean": final,
            "std": 0.1 + seed / 3,
            "returns": [final - 0.1, final + 0.1],
            "lengths": [200, 200],
        },
        "train_ep_return_mean_last100": None if seed == 1 else -226.88205693000003,
        "n_timesteps": 100000,
        "timesteps_done": 100352,
        "n_envs": 2,
        "eval_freq": 5000,
        "curve_eval_episodes": 5,
        "n_eval_envs": 5,
        "wall_time_s": 40.084516515998985 + seed,
        "train_time_s": 38.09986728802323,
        "eval_time_s": 1.9846396379798534,
        "cpu_time_s": 25.530225824000002,
        "started_utc": f"2026-11-23T21:0{seed}:08+00:00",
        "load_avg_1min_start_end": [3.7646484375, 3.880859375],
        "finished_utc": "2026-11-23T21:01:49+00:00",
        "hyperparams_source": "hyperparams/trpo_plus.yml [Pendulum-v1]",
        "overrides": {"policy_kwargs": "dict(log_std_init=-1)"} if tag else {},
        "tag": tag,
        "hyperparams": {"gamma": 0.98, "n_timesteps": 100000.0, "normalize": True, "policy_kwargs": "dict(a=[1, 2])"},
        "normalize_kwargs": {"gamma": 0.98},
        "torch_threads": 1,
        "versions": {"python": "3.11.7", "torch": "2.13.0+cpu", "stable_baselines3": "2.9.2", "sb3_contrib": "2.9.2"},
        "git": {"commit": "fff5ef7f381f6cbf250314ed349c79418f63c424", "sb3_trpo_plus_dirty": False},
        "git_at_end": {"commit": "fff5ef7f381f6cbf250314ed349c79418f63c424", "sb3_trpo_plus_dirty": True},
        "machine": {"platform": "Linux-x86_64", "cpu": 'Intel(R) Xeon(R) Processor, "quoted"', "n_cpus": 2},
        "command": "python run.py --algo trpo_plus --env 'Pendulum-v1' --set \"a=1, b\"",
    }


def same(a: Any, b: Any) -> bool:
    """Equal, with NaN equal to NaN, the keys of dicts in the same order, and types alike (1.0 is not 1)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def test_benchmark_seeds_are_the_same_for_both_algorithms_and_stay_out_of_tuning() -> None:
    assert run.seeds_for("Pendulum-v1") == list(range(10))
    assert run.seeds_for("HalfCheetah-v5") == [0, 1, 2, 3, 4]
    assert all(max(run.seeds_for(env)) < 100 for env in run.ENVS)


def test_tuning_variants_use_tuning_seeds_only() -> None:
    """A TRPOPlus variant in sweeps.yml runs on seeds 100+, except the benchmark runs of entries since replaced
    (``*-benchmark-seeds``) and the one shipped-then-reverted entry whose benchmark runs were moved to its variant."""
    spec = yaml.safe_load((LEARNING / "sweeps.yml").read_text())
    moved_benchmark_runs = {"halfcheetah-kl0.12-n512"}
    offenders = [
        name
        for name, variant in spec.items()
        if variant.get("algo", "trpo_plus") == "trpo_plus"
        and not name.endswith("-benchmark-seeds")
        and name not in moved_benchmark_runs
        and min(variant["seeds"]) < 100
    ]
    assert offenders == []
    for name, variant in spec.items():
        assert variant["env"] in run.ENVS, name
        assert variant.get("algo", "trpo_plus") in run.ALGOS, name


def test_parse_seeds_and_seed_list_round_trip() -> None:
    assert sweep.parse_seeds("120-123") == [120, 121, 122, 123]
    assert sweep.parse_seeds("100,105,110-112") == [100, 105, 110, 111, 112]
    assert report.seed_list([0, 1, 2, 3]) == "0-3"
    assert report.seed_list([0, 1, 3]) == "0, 1, 3"
    assert sweep.parse_seeds(report.seed_list(list(range(160, 200)))) == list(range(160, 200))


def test_paired_comparison_uses_common_seeds_only() -> None:
    reference = {1: 10.0, 2: 20.0, 3: 30.0, 4: 0.0}
    variant = {1: 11.0, 2: 22.0, 3: 33.0, 5: 99.0}
    result = sweep.paired(reference, variant)
    assert result["seeds"] == [1, 2, 3]
    assert result["mean"] == pytest.approx(2.0)
    assert result["ahead"] == 3
    # differences 1, 2, 3: std 1, t = 2 / (1 / sqrt(3))
    assert result["t"] == pytest.approx(2.0 * np.sqrt(3.0))


def test_targets_table_judges_the_mean_over_all_seeds_and_flags_seeds_0_to_2() -> None:
    runs = []
    # Pendulum: 10 seeds; seeds 0-2 below the target, the 10-seed mean above it; ahead of sb3-contrib on 9, 1 tie
    ours = [-210.0, -205.0, -200.5, -180.0, -180.0, -180.0, -180.0, -180.0, -180.0, -180.0]
    theirs = [-250.0] * 9 + [-180.0]
    runs += [fake_run("trpo_plus", "Pendulum-v1", k, v) for k, v in enumerate(ours)]
    runs += [fake_run("sb3_contrib_trpo", "Pendulum-v1", k, v) for k, v in enumerate(theirs)]
    # Hopper: below the target; above sb3-contrib over its own 5 seeds (3120 > 3100), below it on the 3 both have
    runs += [fake_run("trpo_plus", "Hopper-v5", k, v) for k, v in enumerate([3000.0, 3000.0, 3000.0, 3300.0, 3300.0])]
    runs += [fake_run("sb3_contrib_trpo", "Hopper-v5", k, 3100.0) for k in range(3)]
    # only one algorithm has run: no row
    runs += [fake_run("trpo_plus", "Ant-v5", 0, 5000.0)]

    table = report.targets_table(runs, ["Pendulum-v1", "Hopper-v5", "Ant-v5"])
    assert len(table) == 2 + 2
    pendulum = [cell.strip() for cell in table[2].split("|")[1:-1]]
    assert pendulum[0] == "Pendulum-v1"
    assert pendulum[2] == f"{np.mean(ours):.1f} (10)"
    assert pendulum[4] == "9 of 10 (1 tied)"
    assert pendulum[5] == f"{np.mean(ours[:3]):.1f} (below target) / -250.0"
    assert pendulum[6:] == ["met", "yes"]
    hopper = [cell.strip() for cell in table[3].split("|")[1:-1]]
    assert hopper[2:5] == ["3120.0 (5)", "3100.0 (3)", "0 of 3"]
    assert hopper[6:] == ["**missed**", "**no**"]


def iqm_runs(baseline_seeds: tuple[int, ...]) -> list[dict[str, Any]]:
    runs = []
    for env in ["HalfCheetah-v5", "Hopper-v5"]:
        runs += [fake_run("trpo_plus", env, k, 1000.0 + k) for k in range(5)]
        runs += [fake_run("sb3_contrib_trpo", env, k, 900.0 + k) for k in baseline_seeds]
    return runs


def test_iqm_needs_the_same_seeds_for_every_algorithm_and_task() -> None:
    lines, tasks = report.iqm_aggregate(iqm_runs((0, 1, 7)), min_seeds=3)  # only seeds 0 and 1 shared
    assert tasks == []
    assert "Fewer than 3 seeds" in lines[0]


def test_iqm_uses_every_shared_seed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("rliable")
    monkeypatch.setattr(report, "PLOTS", tmp_path)
    monkeypatch.setattr(report, "random_scores", lambda tasks: dict.fromkeys(tasks, 0.0))
    lines, tasks = report.iqm_aggregate(iqm_runs((0, 1, 3, 7)), min_seeds=3)
    assert tasks == ["HalfCheetah-v5", "Hopper-v5"]
    assert "seeds 0, 1, 3 of each" in lines[0]
    assert (tmp_path / "mujoco_iqm.png").exists()


def test_update_readme_replaces_only_between_markers(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- a -->\nold a\n<!-- /a -->\nmiddle\n<!-- b -->\nold b\n<!-- /b -->\nend\n")
    report.update_readme({"a": ["new a 1", "new a 2"], "b": ["new b"], "missing": ["x"]}, readme)
    assert readme.read_text() == (
        "intro\n<!-- a -->\nnew a 1\nnew a 2\n<!-- /a -->\nmiddle\n<!-- b -->\nnew b\n<!-- /b -->\nend\n"
    )


def test_sweep_refuses_new_seeds_when_the_entry_changed_under_a_variant(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A variant's ``set`` is relative to the task's entry: once the entry changes, extending the variant to new
    seeds without pinning the old values would run something else under the same name. ``sweep.py run`` stops
    with the keys that changed; with them pinned it goes on (here to the stubbed launcher)."""
    variant: dict[str, Any] = {"env": "Walker2d-v5", "seeds": [100, 101], "set": {"policy_kwargs": "dict(log_std_init=-2)"}}
    # the entry now; its normalize string is recorded by the Zoo as a dict with the entry's gamma written in
    entry = {"n_envs": 2, "n_timesteps": 1e6, "target_kl": "lin_0.12", "normalize": "dict(norm_obs=False, norm_reward=True)"}
    recorded = {
        "n_envs": 2,
        "n_timesteps": 1e6,
        "target_kl": 0.06,
        "policy_kwargs": "dict(log_std_init=-2)",
        "normalize": {"norm_obs": False, "norm_reward": True, "gamma": 0.99},
    }
    monkeypatch.setattr(sweep, "resolve_hyperparams", lambda algo, env: (dict(entry), "stub"))
    monkeypatch.setattr(sweep, "STORE", store.Store(tmp_path, store.SWEEP_TABLE))
    monkeypatch.setattr(sweep, "load_spec", lambda: {"w-std": variant})
    sweep.STORE.append({**full_record("trpo_plus", "Walker2d-v5", 100, 1.0), "hyperparams": recorded}, CURVE, "w-std")

    assert sweep.setting_drift("w-std", variant) == {"target_kl": (0.06, "lin_0.12")}
    with pytest.raises(SystemExit, match=r"'w-std'.*target_kl: 0\.06 -> 'lin_0\.12'"):
        sweep.run(["w-std"], "", commit=False)

    variant["set"] = {"target_kl": 0.06, "policy_kwargs": "dict(log_std_init=-2)"}
    assert sweep.setting_drift("w-std", variant) == {}
    launched: list[int] = []
    monkeypatch.setattr(sweep, "claim", lambda name, variant, seed: launched.append(seed) or False)
    sweep.run(["w-std"], "", commit=False)
    assert launched == [101]


def test_sweep_drift_compares_settings_not_their_spelling() -> None:
    """What the Zoo treats alike compares equal (so finished variants are not refused for it); a real change
    of the same keys does not."""
    same = sweep.comparable
    assert same("normalize", {"norm_obs": False, "norm_reward": True, "gamma": 0.98}) == same(
        "normalize", "dict(norm_obs=False, norm_reward=True)"
    )
    assert same("normalize", None) == same("normalize", False) != same("normalize", True)
    assert same("normalize", True) == same("normalize", "dict()") == same("normalize", {"gamma": 0.99})
    assert same("normalize", "dict(norm_obs=True)") != same("normalize", "dict(norm_obs=False)")
    assert same("policy_kwargs", None) == same("policy_kwargs", "dict()")
    assert same("policy_kwargs", "dict(net_arch=dict(pi=[256, 256]), activation_fn=nn.ReLU)") == {
        "net_arch": {"pi": [256, 256]},
        "activation_fn": "nn.ReLU",
    }
    assert same("policy_kwargs", "dict(log_std_init=-2)") != same("policy_kwargs", "dict(log_std_init=-4)")
    assert same("gamma", 0.98) != same("gamma", 0.99)


def test_store_reads_back_exactly_what_was_appended(tmp_path: Path) -> None:
    """A run's record (floats to the last bit, None, quotes, commas, nested dicts in order) and its curve (NaN too)
    read back as appended; a sweep run goes to the sweep table under its variant's id, whatever its tag says."""
    benchmark = store.Store(tmp_path, store.BENCHMARK_TABLE)
    sweeps = store.Store(tmp_path, store.SWEEP_TABLE)
    records = [full_record("trpo_plus", "Pendulum-v1", seed, -203.0602185 + seed / 7) for seed in (0, 1)]
    for record in records:
        benchmark.append(record, CURVE)
    moved = full_record("trpo_plus", "Walker2d-v5", 105, 4000.123456789, tag="walker2d-base")
    assert sweeps.append(moved, CURVE[:1], "walker2d-kllin0.12-as-base") == (
        "sweeps/walker2d-kllin0.12-as-base/trpo_plus/Walker2d-v5/seed105"
    )

    loaded = benchmark.load()
    assert [r["run"] for r in loaded] == ["results/trpo_plus/Pendulum-v1/seed0", "results/trpo_plus/Pendulum-v1/seed1"]
    for record, back in zip(records, loaded, strict=True):
        assert back.pop("run").startswith("results/") and back.pop("variant") == ""
        assert same(back.pop("curve"), [{k: float(v) for k, v in point.items()} for point in CURVE])
        assert same(back, record)
    (back,) = sweeps.load()
    assert back["variant"] == "walker2d-kllin0.12-as-base" and back["tag"] == "walker2d-base"
    assert len(back["curve"]) == 1
    assert benchmark.done() == {"results/trpo_plus/Pendulum-v1/seed0", "results/trpo_plus/Pendulum-v1/seed1"}
    # one header per file; the curves of both tables in the one gzipped file (a gzip member per run)
    assert (tmp_path / store.BENCHMARK_TABLE).read_text().count("run,variant,algo") == 1
    with gzip.open(tmp_path / store.CURVES, "rt") as f:
        assert f.read().count("run,timesteps") == 1
    assert store.find_run("benchmarks/learning/results/trpo_plus/Pendulum-v1/seed1.json", tmp_path)["seed"] == 1


def test_store_refuses_a_second_row_for_a_run_and_replaces_on_remove(tmp_path: Path) -> None:
    benchmark = store.Store(tmp_path)
    record = full_record("sb3_contrib_trpo", "CartPole-v1", 3, 500.0)
    benchmark.append(record, CURVE)
    with pytest.raises(ValueError, match="seed3 already"):
        benchmark.append(record, CURVE)
    benchmark.remove({"results/sb3_contrib_trpo/CartPole-v1/seed3"})
    assert benchmark.load() == []
    benchmark.append({**record, "final_eval": {**record["final_eval"], "mean": 499.0}}, CURVE[:1])
    (back,) = benchmark.load()
    assert back["final_eval"]["mean"] == 499.0 and len(back["curve"]) == 1


def test_store_replaces_a_curve_left_without_its_row(tmp_path: Path) -> None:
    """An append interrupted between the curve and the row leaves a curve and no row: the rerun's append replaces
    that curve instead of doubling it."""
    benchmark = store.Store(tmp_path)
    benchmark.append(full_record("trpo_plus", "Pendulum-v1", 0, -200.0), CURVE)
    rows = (tmp_path / store.BENCHMARK_TABLE).read_text().splitlines()
    (tmp_path / store.BENCHMARK_TABLE).write_text(rows[0] + "\n")  # the row lost, the curve kept
    assert benchmark.load() == [] and len(benchmark.curves()["results/trpo_plus/Pendulum-v1/seed0"]) == 2
    benchmark.append(full_record("trpo_plus", "Pendulum-v1", 0, -190.0), CURVE[1:])
    (back,) = benchmark.load()
    assert back["final_eval"]["mean"] == -190.0 and [p["timesteps"] for p in back["curve"]] == [5000.0]


def _append_many(folder: Path, algo: str, seeds: list[int], refused: Any = None) -> None:
    """Append runs; with ``refused`` (a shared counter), count the appends refused as already done."""
    target = store.Store(folder)
    for seed in seeds:
        try:
            target.append(full_record(algo, "Pendulum-v1", seed, float(seed)), CURVE)
        except ValueError:
            if refused is None:
                raise
            with refused.get_lock():
                refused.value += 1


def _append_one_at(folder: Path, seed: int, started: Any) -> None:
    started.set()
    _append_many(folder, "trpo_plus", [seed])


def test_store_keeps_one_row_per_run_when_two_processes_append_the_same_runs(tmp_path: Path) -> None:
    """Two processes finishing the same runs at once (the check that a run is new and its append are one step
    under the lock): each run is recorded once with one curve, and every other append is refused."""
    context = multiprocessing.get_context("fork")
    refused = context.Value("i", 0)
    workers = [context.Process(target=_append_many, args=(tmp_path, "trpo_plus", list(range(20)), refused)) for _ in "ab"]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    loaded = store.Store(tmp_path).load()
    assert sorted(r["seed"] for r in loaded) == list(range(20)) and refused.value == 20
    assert all(len(r["curve"]) == len(CURVE) for r in loaded)
    assert (tmp_path / store.BENCHMARK_TABLE).read_text().count("run,variant,algo") == 1


def test_store_append_waits_for_the_lock(tmp_path: Path) -> None:
    """While one process holds the store's lock (e.g. mid-append), another's append waits, then goes through."""
    benchmark = store.Store(tmp_path)
    context = multiprocessing.get_context("fork")
    started = context.Event()
    with benchmark.locked():
        worker = context.Process(target=_append_one_at, args=(tmp_path, 7, started))
        worker.start()
        assert started.wait(10)
        time.sleep(0.5)
        assert worker.is_alive() and benchmark.done(lock=False) == set()  # blocked on the lock
    worker.join(30)
    assert worker.exitcode == 0
    assert benchmark.done() == {"results/trpo_plus/Pendulum-v1/seed7"}


def test_report_regenerates_its_tables_from_the_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """report.py's outputs come from the tidy files: results.csv (one row per run), RESULTS.md's tables, the plots,
    and the README's results table (only that block: the README's other markers are left alone)."""
    pytest.importorskip("matplotlib")
    monkeypatch.setattr(report, "PLOTS", tmp_path / "plots")
    data = store.Store(tmp_path / "data")
    finals = {"trpo_plus": [-150.0, -170.0, -160.0], "sb3_contrib_trpo": [-210.0, -190.0, -200.0]}
    for algo, values in finals.items():
        for seed, final in enumerate(values):
            data.append(full_record(algo, "Pendulum-v1", seed, final), CURVE)
    readme = tmp_path / "README.md"
    readme.write_text(
        "top\n<!-- learning-results-table -->\nold\n<!-- /learning-results-table -->\n"
        "<!-- learning-targets-table -->\nkept\n<!-- /learning-targets-table -->\n"
    )

    runs = report.load_runs(data)
    table = report.write_report(runs, tmp_path, readme=readme)

    pendulum = "| Pendulum-v1 | 100,352 | -200.0 ± 10.0 (3) | -160.0 ± 10.0 (3) |"
    assert table[2] == pendulum
    assert readme.read_text() == (
        f"top\n<!-- learning-results-table -->\n{chr(10).join(table)}\n<!-- /learning-results-table -->\n"
        "<!-- learning-targets-table -->\nkept\n<!-- /learning-targets-table -->\n"
    )
    text = (tmp_path / "RESULTS.md").read_text()
    assert "from 6 runs in `data/runs.csv`" in text and pendulum in text
    assert "| Pendulum-v1 | ≥ -200 | -160.0 (3) | -200.0 (3) | 3 of 3 |" in text  # the targets table
    rows = (tmp_path / "results.csv").read_text().splitlines()
    assert len(rows) == 1 + 6 and rows[1].startswith("sb3_contrib_trpo,Pendulum-v1,0,-210.0,")
    assert (tmp_path / "plots" / "Pendulum-v1.png").stat().st_size > 0


def test_sweep_report_reads_the_sweep_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("matplotlib")
    spec = {"p-base": {"env": "Pendulum-v1", "seeds": [100, 101, 102]}, "p-none": {"env": "Pendulum-v1", "seeds": [100]}}
    monkeypatch.setattr(sweep, "load_spec", lambda: spec)
    monkeypatch.setattr(sweep, "SWEEPS_DIR", tmp_path)
    monkeypatch.setattr(sweep, "STORE", store.Store(tmp_path, store.SWEEP_TABLE))
    for seed, final in [(100, -150.0), (102, -170.0)]:
        sweep.STORE.append(full_record("trpo_plus", "Pendulum-v1", seed, final, tag="p-base"), CURVE, "p-base")
    sweep.report()
    text = (tmp_path / "SWEEPS.md").read_text()
    assert "| p-base | 100,352 | (YAML entry as is) | 2 | -160.0 ± 14.1 | -150, -170 | -1240.5 |" in text
    assert "| p-none |" not in text
    assert (tmp_path / "plots" / "Pendulum-v1.png").exists()


def test_runs_are_committed_in_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    commits: list[str] = []
    monkeypatch.setattr(run_queue, "commit", lambda message, paths=None: commits.append(message))
    reports: list[int] = []
    batches = run_queue.Batches(True, 3, "sweep", None, lambda: reports.append(len(commits)))
    for k in range(7):
        batches.finished(f"v seed{k}")
    batches.flush()
    batches.flush()  # nothing left: no empty commit
    assert commits == [
        "sweep: 3 runs (v seed0, v seed1, v seed2)",
        "sweep: 3 runs (v seed3, v seed4, v seed5)",
        "sweep: 1 runs (v seed6)",
    ]
    assert reports == [0, 1, 2]  # the report runs before each commit
    off = run_queue.Batches(False, 1, "sweep", None)
    off.finished("x")
    off.flush()
    assert len(commits) == 3
    with pytest.raises(SystemExit, match="--commit-every"):
        run_queue.Batches(True, 0, "sweep", None)


def test_sweep_run_appends_and_commits_a_batch_not_each_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``sweep.py run --commit --commit-every 2`` over 3 missing seeds: 2 commits (2 runs, then the last), each run
    launched once; a seed already in the table is not launched."""
    variant = {"env": "Pendulum-v1", "seeds": [100, 101, 102, 103]}
    monkeypatch.setattr(sweep, "load_spec", lambda: {"p": variant})
    monkeypatch.setattr(sweep, "STORE", store.Store(tmp_path, store.SWEEP_TABLE))
    monkeypatch.setattr(sweep, "LOGS", tmp_path / "logs")
    monkeypatch.setattr(sweep, "claim_path", lambda name, variant, seed: tmp_path / f"seed{seed}.claim")
    monkeypatch.setattr(sweep, "setting_drift", lambda name, variant: {})
    monkeypatch.setattr(sweep, "report", lambda: None)
    sweep.STORE.append(full_record("trpo_plus", "Pendulum-v1", 101, -150.0, tag="p"), CURVE, "p")
    launched: list[int] = []

    def fake_run(cmd: list[str], **kwargs: Any) -> int:  # what run.py --tag p does at its end
        seed = int(cmd[cmd.index("--seed") + 1])
        launched.append(seed)
        sweep.STORE.append(full_record("trpo_plus", "Pendulum-v1", seed, -160.0, tag="p"), CURVE, "p")
        return 0

    monkeypatch.setattr(sweep.subprocess, "call", fake_run)
    commits: list[tuple[str, list[str] | None]] = []
    monkeypatch.setattr(run_queue, "commit", lambda message, paths=None: commits.append((message, paths)))
    sweep.run(["p"], "", commit=True, commit_every=2)
    assert launched == [100, 102, 103]
    assert [message for message, _ in commits] == ["sweep: 2 runs (p seed100, p seed102)", "sweep: 1 runs (p seed103)"]
    assert commits[0][1] == ["data/sweep_runs.csv", "data/curves.csv.gz", "sweeps"]
    assert len(sweep.STORE.load()) == 4
    assert not list(tmp_path.glob("*.claim"))  # claims released


def test_run_records_to_the_table_of_its_kind() -> None:
    """A benchmark run goes to data/runs.csv, a sweep run (``--tag``) to data/sweep_runs.csv, a shortened run
    without a tag to results_smoke/ (git-ignored)."""
    args = run.parse_args(["--algo", "trpo_plus", "--env", "Pendulum-v1"])
    assert args.data_dir == store.DATA_DIR and run.store_for(args.data_dir, args.tag).runs_path.name == "runs.csv"
    args = run.parse_args(["--algo", "trpo_plus", "--env", "Pendulum-v1", "--tag", "p", "--n-timesteps", "1000"])
    assert args.data_dir == store.DATA_DIR and run.store_for(args.data_dir, args.tag).runs_path.name == "sweep_runs.csv"
    args = run.parse_args(["--algo", "trpo_plus", "--env", "Pendulum-v1", "--n-timesteps", "1000"])
    assert args.data_dir == store.SMOKE_DIR
    assert "results_smoke/" in (LEARNING / ".gitignore").read_text().split()


def test_the_readme_results_table_is_the_one_the_record_gives() -> None:
    """The README's results table (between its markers) is what ``report.py --readme`` computes from
    ``data/runs.csv``: no number there is typed by hand, and the record holds every run behind it."""
    runs = report.load_runs()
    assert {r["algo"] for r in runs} == set(run.ALGOS) and all(r["curve"] for r in runs)
    text = report.README.read_text()
    start, end = "<!-- learning-results-table -->\n", "\n<!-- /learning-results-table -->"
    assert start in text and end in text
    block = text.split(start, 1)[1].split(end, 1)[0]
    assert block.splitlines() == report.results_table(runs, report.report_envs(runs))


def test_speed_runs_combine_as_median_with_range(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """bench_speed.py --runs N: each figure the median over runs, the speedup with its [min, max]; --readme rewrites
    only its block."""
    from benchmarks.speed import bench_speed

    first = {"benchmark": "step", "case": "N2048_64x64", "algo": "trpo_plus", "n_reps": 15}
    runs = [[{**first, "median_s": t, "speedup_vs_sb3": r}] for t, r in ((0.03, 3.4), (0.04, 2.6), (0.05, 3.0))]
    (row,) = bench_speed.combine_runs(runs)
    assert (row["median_s"], row["speedup_vs_sb3"], row["speedup_min"], row["speedup_max"], row["n_runs"]) == (
        0.04,
        3.0,
        2.6,
        3.4,
        3,
    )
    assert bench_speed._ratio(row) == "3.00x [2.60, 3.40]"
    readme = tmp_path / "README.md"
    readme.write_text("top\n<!-- speed-table -->\nold\n<!-- /speed-table -->\nbottom\n")
    monkeypatch.setattr(bench_speed, "REPO", tmp_path)
    bench_speed.replace_readme_block("speed-table", ["new"])
    assert readme.read_text() == "top\n<!-- speed-table -->\nnew\n<!-- /speed-table -->\nbottom\n"
    with pytest.raises(SystemExit, match="no <!-- threads-table -->"):
        bench_speed.replace_readme_block("threads-table", ["x"])


def test_append_rows_writes_the_header_once_and_refuses_other_columns(tmp_path: Path) -> None:
    """benchmarks.common.table: a new table gets the rows' columns; a row of other columns (renamed, added, reordered)
    is refused and the table is left as it was."""
    from benchmarks.common.table import append_row, append_rows, header

    table = tmp_path / "runs.csv"
    assert header(table) is None
    append_rows(table, [{"a": 1, "b": 2}, {"a": 3, "b": 4}])
    append_row(table, {"a": 5, "b": 6})
    assert table.read_text().splitlines() == ["a,b", "1,2", "3,4", "5,6"]
    for row in ({"a": 7}, {"b": 8, "a": 7}, {"a": 7, "b": 8, "c": 9}):
        with pytest.raises(ValueError, match="columns are"):
            append_row(table, row)
    with pytest.raises(ValueError, match="different columns"):
        append_rows(tmp_path / "new.csv", [{"a": 1}, {"b": 2}])
    assert table.read_text().splitlines() == ["a,b", "1,2", "3,4", "5,6"]
    assert not (tmp_path / "new.csv").exists()


def test_welch_p_is_scipys_welch_test_with_the_degenerate_limits() -> None:
    from scipy import stats

    from benchmarks.common.stats import welch_p

    ours, theirs = [1.0, 2.0, 4.0], [3.0, 5.0, 6.0, 9.0]
    for alternative in ("two-sided", "less", "greater"):
        expected = stats.ttest_ind(ours, theirs, equal_var=False, alternative=alternative).pvalue
        assert welch_p(ours, theirs, alternative) == pytest.approx(expected)
    assert math.isnan(welch_p([1.0], theirs))
    assert welch_p([500.0, 500.0], [500.0, 500.0]) == 1.0  # no spread, same mean: no evidence
    assert welch_p([1.0, 1.0], [2.0, 2.0]) == 0.0
    assert welch_p([1.0, 1.0], [2.0, 2.0], "less") == 0.0
    assert welch_p([1.0, 1.0], [2.0, 2.0], "greater") == 1.0
    with pytest.raises(ValueError, match="alternative"):
        welch_p(ours, theirs, "lower")


def test_zoo_files_are_the_shipped_ones_and_the_zoos() -> None:
    pytest.importorskip("rl_zoo3")
    from benchmarks.common.zoo import zoo_entries, zoo_file
    from sb3_trpo_plus.zoo import hyperparams_path

    for algo in ("trpo_plus", "trpo_plus_lstm", "trpo_plus_mask"):
        assert zoo_file(algo) == hyperparams_path(algo)
    assert zoo_file("trpo").parent.parent.name == "rl_zoo3"
    assert "CartPoleNoVel-v1" in zoo_entries("ppo_lstm")
    with pytest.raises(FileNotFoundError, match="no_such_algo"):
        zoo_file("no_such_algo")


def test_profile_wraps_the_public_fast_paths_and_names_a_missing_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """bench_speed.py --profile times fast_paths' public functions through the module attribute TRPOPlus calls,
    puts them back afterwards, and stops with an error naming a function that is gone (no silent skip)."""
    import torch

    from benchmarks.speed import bench_speed
    from sb3_trpo_plus import fast_paths

    originals = {name: getattr(fast_paths, name) for name in bench_speed.FAST_PATH_FUNCTIONS}
    timer = bench_speed.SectionTimer()
    bench_speed.patch_fast_paths(timer)
    assert all(getattr(fast_paths, name) is not original for name, original in originals.items())
    fast_paths.decide(torch.nn.Linear(1, 1))
    assert timer.calls[bench_speed.FAST_PATH_FUNCTIONS["decide"]] == 1
    timer.restore()
    assert all(getattr(fast_paths, name) is original for name, original in originals.items())

    monkeypatch.delattr(fast_paths, "fit_critic")
    with pytest.raises(AttributeError, match=r"sb3_trpo_plus\.fast_paths has no fit_critic"):
        bench_speed.patch_fast_paths(bench_speed.SectionTimer())
    assert all(getattr(fast_paths, name) is originals[name] for name in originals if name != "fit_critic")


def test_round4_survivors_follow_rule_md() -> None:
    """RULE.md's round 4, stage 1: the two best, their union when they change different arguments, and `new`."""
    from benchmarks.defaults.round4 import survivors

    base = {"new": 0.5, "dauto": 0.6, "dauto_std05": 0.9, "dauto_g9999": 0.8, "dauto_clip5": 0.1}
    assert survivors(base) == ["dauto_std05", "dauto_g9999", "dauto_std05_g9999", "new"]
    assert survivors({**base, "new": 0.95}) == ["new", "dauto_std05"]  # new changes nothing: no union
    assert survivors({**base, "dauto": 0.95}) == ["dauto", "dauto_std05", "new"]  # one holds the other


def test_round4_stage2_queues_the_survivors_at_1m(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """stage2.py reads stage 1's rows, takes the survivors by the rule and queues what is missing at 1M."""
    from benchmarks.defaults import stage2
    from benchmarks.defaults.round4 import ROUND4_CANDIDATES, ROUND4_TASKS

    score = {
        "new": 1.0,
        "dauto": 2.0,
        "dauto_std05": 4.0,
        "dauto_g9999": 3.0,
        "dauto_clip5": 0.0,
        "dauto_kurt": 0.5,
        "std05": 0.2,
    }
    rows = [
        {"config": c, "env": task, "seed": seed, "steps": steps, "final_mean": 1000.0 * score[c]}
        for c in ROUND4_CANDIDATES
        for task, steps in ROUND4_TASKS.items()
        for seed in (100, 101)
    ]
    rows.append({"config": "new", "env": "Ant-v5", "seed": 100, "steps": 1_000_000, "final_mean": 5.0})  # done already
    table = tmp_path / "screening.csv"
    pd.DataFrame(rows).to_csv(table, index=False)
    monkeypatch.setattr(stage2, "TABLE", table)
    queued = stage2.queue([100])
    assert queued[:4] == [
        ("dauto_std05", "Ant-v5", 100),
        ("dauto_g9999", "Ant-v5", 100),
        ("dauto_std05_g9999", "Ant-v5", 100),
        ("dauto_std05", "HalfCheetah-v5", 100),
    ]
    assert len(queued) == 4 * 5 - 1
    assert stage2.constructor_arguments("dauto_std05_g9999") == {
        "cg_damping": "auto",
        "gamma": 0.9999,
        "gae_lambda": 0.99,
        "policy_kwargs": {"log_std_init": -0.6931},
    }
    # the defaults round 4 changed are pinned, so that a candidate runs as screened on later code
    assert stage2.constructor_arguments("new") == {"cg_damping": 0.1, "policy_kwargs": {"log_std_init": 0.0}}
    assert stage2.constructor_arguments("dauto_kurt") == {
        "cg_damping": "auto",
        "policy_kwargs": {"log_std_init": 0.0, "features_extractor_kwargs": {"heavy_tails": True}},
    }


def test_round4_stage2_chooses_by_mean_score_and_a_tie_goes_to_fewer_changes() -> None:
    """RULE.md's stage 2: the survivors' mean score over the MuJoCo tasks at 1M and classic control from stage 1;
    within 0.02 of the best, the candidate with fewer changes from ``new``."""
    from benchmarks.defaults.round4 import ROUND4_CANDIDATES, ROUND4_STAGE2_TASKS, ROUND4_TASKS, round4_choice

    stage1 = {"new": 1.0, "std05": 3.0, "dauto": 0.5, "dauto_std05": 4.0, "dauto_g9999": 0.1, "dauto_clip5": 0.1}
    stage1["dauto_kurt"] = 0.1
    rows = [  # classic control alike for every candidate, so that the MuJoCo rows decide
        {"config": c, "env": task, "seed": seed, "steps": steps, "final_mean": 1000.0 * stage1[c] if steps > 1e5 else 0.0}
        for c in ROUND4_CANDIDATES
        for task, steps in ROUND4_TASKS.items()
        for seed in (100, 101)
    ]

    def at_1m(final: dict[str, float]) -> pd.DataFrame:
        more = [
            {"config": c, "env": task, "seed": seed, "steps": steps, "final_mean": value}
            for c, value in final.items()
            for task, steps in ROUND4_STAGE2_TASKS.items()
            if steps == 1_000_000
            for seed in (100, 101)
        ]
        return pd.DataFrame(rows + more)

    assert round4_choice(pd.DataFrame(rows))[1] is None  # stage 2 not run yet
    assert round4_choice(at_1m({"new": 1000.0, "std05": 2000.0}))[1] is None  # dauto_std05's runs missing
    assert round4_choice(at_1m({"new": 1000.0, "std05": 2000.0, "dauto_std05": 3000.0}))[1] == "dauto_std05"
    # within 0.02 of the best: the one with fewer changes (std05 changes one argument, dauto_std05 two)
    assert round4_choice(at_1m({"new": 1000.0, "std05": 2990.0, "dauto_std05": 3000.0}))[1] == "std05"


def test_oneliner_skip_done_reads_the_seeds_already_in_the_table(tmp_path: Path) -> None:
    """``oneliner.py --skip-done``: a run is recorded when its config (label), env and steps match a row."""
    from benchmarks.defaults.oneliner import recorded

    table = tmp_path / "runs.csv"
    assert recorded(table, "new", "Ant-v5", 300_000) == set()  # no table yet
    pd.DataFrame(
        [
            {"config": "new", "env": "Ant-v5", "seed": 100, "steps": 300_000},
            {"config": "new", "env": "Ant-v5", "seed": 101, "steps": 1_000_000},
            {"config": "std05", "env": "Ant-v5", "seed": 102, "steps": 300_000},
            {"config": "new", "env": "Hopper-v5", "seed": 103, "steps": 300_000},
        ]
    ).to_csv(table, index=False)
    assert recorded(table, "new", "Ant-v5", 300_000) == {100}


def test_round3_regression_check_reads_the_margin() -> None:
    """RULE.md's round 3: the zero head stays when its mean score is at least ``new``'s minus 0.05."""
    from benchmarks.defaults.tables import ROUND3, regression_check

    candidates, tasks = ROUND3

    def rows(zerohead_factor: float) -> pd.DataFrame:
        return pd.DataFrame(
            [
                {
                    "config": c,
                    "env": t,
                    "seed": seed,
                    "steps": steps,
                    "final_mean": 1000.0 * (zerohead_factor if c == "zerohead" else 1),
                }
                for c in candidates
                for t, steps in tasks.items()
                for seed in (100, 101)
            ]
        )

    assert "zero head **stays**" in regression_check(rows(0.99))
    assert "zero head **does not stay**" in regression_check(rows(0.5))
    assert "not complete" in regression_check(rows(1.0).iloc[1:])


def test_round4_confirmation_lanes_share_the_fixed_list_and_skip_what_is_done() -> None:
    """confirmation.py: task by task, each seed's three one-liners in turn; two lanes take alternate runs; a run in
    the table (label, env, seed at 1M) is skipped."""
    from benchmarks.defaults import confirmation

    everything = confirmation.runs("dauto_std05")
    assert len(everything) == 3 + 9 * 5 * 3
    assert everything[:6] == [
        ("new", "dauto_std05", "Pendulum-v1", 0, 100_000),  # classic control first, the choice only
        ("new", "dauto_std05", "Pendulum-v1", 1, 100_000),
        ("new", "dauto_std05", "Pendulum-v1", 2, 100_000),
        ("new", "dauto_std05", "Ant-v5", 0, 1_000_000),
        ("sb3_contrib", "sb3_contrib", "Ant-v5", 0, 1_000_000),
        ("sb3_ppo", "sb3_ppo", "Ant-v5", 0, 1_000_000),
    ]
    done = pd.DataFrame(
        [
            {"config": "sb3_contrib", "env": "Ant-v5", "seed": 0, "steps": 1_000_000},
            {"config": "new", "env": "Ant-v5", "seed": 0, "steps": 1_000_000},  # another label: not this run
            {"config": "dauto_std05", "env": "Ant-v5", "seed": 1, "steps": 300_000},  # another budget
        ]
    )
    one, two = (confirmation.queue("dauto_std05", lane, 2, done) for lane in (1, 2))
    assert sorted(one + two) == sorted(r for r in everything if r[1:] != ("sb3_contrib", "Ant-v5", 0, 1_000_000))
    assert two[1:3] == [("new", "dauto_std05", "Ant-v5", 0, 1_000_000), ("sb3_ppo", "sb3_ppo", "Ant-v5", 0, 1_000_000)]
    assert one[2] == ("new", "dauto_std05", "Ant-v5", 1, 1_000_000)  # its Ant-v5 seed 0 of sb3_contrib is done


def test_round4_confirmation_table_reports_complete_tasks_with_shares_and_tests() -> None:
    """round4.round4_confirmation: a task's row once all five seeds of the three one-liners are in, the share of
    the tuned entry, HalfCheetah's worst seed, Welch's p against each peer; the IQM over the complete tasks."""
    pytest.importorskip("rliable")
    from benchmarks.defaults.round4 import round4_confirmation
    from benchmarks.defaults.scoring import tuned_entries

    level = {"dauto_std05": 4000.0, "sb3_contrib": 1000.0, "sb3_ppo": 1500.0}
    rows = [
        {"config": c, "env": task, "seed": seed, "steps": 1_000_000, "final_mean": level[c] + 100.0 * seed}
        for c in level
        for task in ("HalfCheetah-v5", "Hopper-v5")
        for seed in range(5)
    ]
    rows = [r for r in rows if not (r["env"] == "Hopper-v5" and r["config"] == "sb3_ppo" and r["seed"] == 4)]
    text = round4_confirmation(pd.DataFrame(rows), "dauto_std05")
    cheetah = next(line for line in text.splitlines() if line.startswith("| HalfCheetah-v5"))
    tuned = tuned_entries()
    entry = tuned[tuned.env == "HalfCheetah-v5"].final_mean.mean()
    assert f"{4200.0 / entry:.0%}" in cheetah and f"worst seed {4000.0 / entry:.0%}" in cheetah
    assert "4200.0 ± 158.1 (5)" in cheetah and cheetah.endswith("| 1.000 | 1.000 |")  # far above both peers
    assert "Hopper-v5" not in [line.split(" |")[0].lstrip("| ") for line in text.splitlines()]
    assert "Not complete yet" in text and "Hopper-v5" in text.split("Not complete yet")[1]
    assert "IQM over the 1 complete task(s)" in text and "`dauto_std05` 1.00 [" in text  # the best on its task
    none = round4_confirmation(pd.DataFrame(rows[1:]), "dauto_std05")  # HalfCheetah's first row gone: no task complete
    assert none.startswith("No task is complete yet") and "|" not in none


def test_families_speed_summary_is_the_median_ratio_per_task() -> None:
    """families/speed.py: per task, each algorithm's median CPU and wall seconds per 1k steps, and the ratio of
    RecurrentTRPOPlus's to RecurrentPPO's medians."""
    from benchmarks.families.speed import summary

    rows = [
        {"task": "T", "algo": algo, "repeat": r, "cpu_s_per_1k": cpu, "wall_s_per_1k": 2 * cpu}
        for algo, values in (("trpo_plus_lstm", [1.0, 9.0, 2.0]), ("ppo_lstm", [4.0, 5.0, 100.0]))
        for r, cpu in enumerate(values)
    ]
    table = summary(pd.DataFrame(rows))
    assert table.loc["T", ("cpu_s_per_1k", "trpo_plus_lstm")] == 2.0 and table.loc["T", ("cpu_s_per_1k", "ppo_lstm")] == 5.0
    assert table.loc["T", ("cpu_s_per_1k", "ratio")] == pytest.approx(0.4)
    assert table.loc["T", ("wall_s_per_1k", "ratio")] == pytest.approx(0.4)
