"""The learning benchmark's bookkeeping (``benchmarks/learning/``): seeds, the sweep record, the paired comparison
and the report's tables, which write the README's claims. No training here: synthetic runs only."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

LEARNING = Path(__file__).resolve().parent.parent / "benchmarks" / "learning"
sys.path.insert(0, str(LEARNING))

import report  # noqa: E402
import run  # noqa: E402
import sweep  # noqa: E402


def fake_run(algo: str, env: str, seed: int, final: float) -> dict[str, Any]:
    return {"algo": algo, "env": env, "seed": seed, "final_eval": {"mean": final}}


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
    import json

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
    monkeypatch.setattr(sweep, "result_json", lambda name, variant, seed: tmp_path / f"seed{seed}.json")
    monkeypatch.setattr(sweep, "load_spec", lambda: {"w-std": variant})
    (tmp_path / "seed100.json").write_text(json.dumps({"hyperparams": recorded}))

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
