"""ONNX export (sb3_trpo_plus.export): every policy kind matches predict in ONNX Runtime, with the observation
statistics inside the graph; bad requests get clear errors; the file runs in a process without torch."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.envs import (
    BitFlippingEnv,
    FakeImageEnv,
    IdentityEnvMultiBinary,
    IdentityEnvMultiDiscrete,
    SimpleMultiObsEnv,
)
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.vec_env import VecNormalize

from sb3_trpo_plus import TRPOPlus
from sb3_trpo_plus.export import METADATA_KEYS, ExportCheckError, ExportError, check_onnx, export_onnx, load_model
from sb3_trpo_plus.export import main as export_main
from sb3_trpo_plus.normalization import observation_normalizers
from tests.helpers import perturb_observation_statistics

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")
pytest.importorskip("sb3_contrib")

DATA = Path(__file__).parent / "data"


def image_env(discrete: bool = True) -> gym.Env:
    return FakeImageEnv(screen_height=36, screen_width=36, n_channels=1, discrete=discrete)


def _cases() -> list[Any]:
    from sb3_contrib.common.envs import InvalidActionEnvDiscrete, InvalidActionEnvMultiBinary, InvalidActionEnvMultiDiscrete

    small = {"net_arch": [16]}
    return [
        pytest.param("TRPOPlus", "MlpPolicy", lambda: gym.make("Pendulum-v1"), {}, {"value": True, "log_std": True}, id="box"),
        pytest.param(
            "TRPOPlus",
            "MlpPolicy",
            lambda: gym.make("Pendulum-v1"),
            {"use_sde": True, "policy_kwargs": {"squash_output": True, **small}},
            {"log_std": True},
            id="box-gsde-squashed",
        ),
        pytest.param("TRPOPlus", "MlpPolicy", lambda: gym.make("CartPole-v1"), {}, {"value": True}, id="discrete"),
        pytest.param("TRPOPlus", "MlpPolicy", lambda: IdentityEnvMultiDiscrete(dim=3), {}, {}, id="multidiscrete"),
        pytest.param("TRPOPlus", "MlpPolicy", lambda: IdentityEnvMultiBinary(dim=3), {}, {}, id="multibinary"),
        pytest.param("TRPOPlus", "CnnPolicy", image_env, {}, {"value": True}, id="cnn"),
        pytest.param("TRPOPlus", "CnnPolicy", lambda: image_env(discrete=False), {}, {}, id="cnn-box"),
        pytest.param(
            "TRPOPlus",
            "MultiInputPolicy",
            lambda: SimpleMultiObsEnv(random_start=True),
            {},
            {"value": True},
            id="dict-image-and-vector",
        ),
        pytest.param(
            "TRPOPlus", "MultiInputPolicy", lambda: BitFlippingEnv(n_bits=4, continuous=True), {}, {}, id="dict-box-actions"
        ),
        pytest.param(
            "MaskableTRPOPlus",
            "MlpPolicy",
            lambda: InvalidActionEnvDiscrete(dim=6, n_invalid_actions=2),
            {},
            {"value": True},
            id="masked-discrete",
        ),
        pytest.param(
            "MaskableTRPOPlus",
            "MlpPolicy",
            lambda: InvalidActionEnvMultiDiscrete(dims=[3, 4], n_invalid_actions=2),
            {},
            {},
            id="masked-multidiscrete",
        ),
        pytest.param(
            "MaskableTRPOPlus",
            "MlpPolicy",
            lambda: InvalidActionEnvMultiBinary(dims=3, n_invalid_actions=1),
            {},
            {},
            id="masked-multibinary",
        ),
        pytest.param(
            "RecurrentTRPOPlus",
            "MlpLstmPolicy",
            lambda: gym.make("Pendulum-v1"),
            {"policy_kwargs": {"lstm_hidden_size": 16, "n_lstm_layers": 2}},
            {"value": True, "log_std": True},
            id="recurrent-box-critic-lstm",
        ),
        pytest.param(
            "RecurrentTRPOPlus",
            "MlpLstmPolicy",
            lambda: gym.make("Pendulum-v1"),
            {"policy_kwargs": {"lstm_hidden_size": 16, "shared_lstm": True, "enable_critic_lstm": False}},
            {"value": True},
            id="recurrent-shared-lstm",
        ),
        pytest.param(
            "RecurrentTRPOPlus",
            "MlpLstmPolicy",
            lambda: gym.make("CartPole-v1"),
            {"policy_kwargs": {"lstm_hidden_size": 16, "enable_critic_lstm": False}},
            {"value": True},
            id="recurrent-linear-critic",
        ),
        pytest.param(
            "RecurrentTRPOPlus",
            "CnnLstmPolicy",
            image_env,
            {"policy_kwargs": {"lstm_hidden_size": 16}},
            {},
            id="recurrent-cnn",
        ),
        pytest.param(
            "RecurrentTRPOPlus",
            "MultiInputLstmPolicy",
            lambda: SimpleMultiObsEnv(random_start=True),
            {"policy_kwargs": {"lstm_hidden_size": 16}},
            {},
            id="recurrent-dict",
        ),
    ]


def build(family: str, policy: str, factory: Callable[[], gym.Env], kwargs: dict[str, Any]) -> Any:
    import sb3_trpo_plus

    model = getattr(sb3_trpo_plus, family)(policy, factory(), n_steps=32, batch_size=32, seed=0, **kwargs)
    if observation_normalizers(model.policy):  # statistics far from (0, 1): the graph must carry them
        perturb_observation_statistics(model)
    return model


@pytest.mark.slow
@pytest.mark.parametrize(("family", "policy", "factory", "kwargs", "export"), _cases())
def test_export_matches_predict(
    family: str, policy: str, factory: Callable[[], gym.Env], kwargs: dict[str, Any], export: dict[str, Any], tmp_path: Path
) -> None:
    model = build(family, policy, factory, kwargs)
    fixed = model.observation_space.sample()
    before = model.predict(fixed, deterministic=True)[0]
    training = model.policy.training
    stream = model.observation_space.np_random.bit_generator.state
    path = tmp_path / "policy.onnx"
    result = export_onnx(model, path, rollout_env=factory(), n_sampled=64, rollout_steps=64, **export)
    assert result is not None and result.passed, result
    assert (result.sampled, result.rollout) == (64, 64)
    compared = set(result.max_abs_error) | set(result.mismatches)
    assert "actions" in compared
    assert ("value" in compared) == bool(export.get("value")) and ("log_std" in compared) == bool(export.get("log_std"))
    if family == "RecurrentTRPOPlus":
        assert {"lstm_h_out", "lstm_c_out"} <= compared
        critic_lstm = export.get("value") and model.policy.lstm_critic is not None
        assert ({"critic_lstm_h_out", "critic_lstm_c_out"} <= compared) == bool(critic_lstm)
    # what a deployment reads: named inputs and outputs, batch dimension, spaces in the metadata
    proto = onnx.load(path)
    metadata = {entry.key: entry.value for entry in proto.metadata_props}
    assert tuple(metadata) == METADATA_KEYS
    inputs = [value.name for value in proto.graph.input]
    assert json.loads(metadata["inputs"]) == inputs
    assert json.loads(metadata["outputs"]) == [value.name for value in proto.graph.output]
    observation = json.loads(metadata["observation_space"])
    if isinstance(model.observation_space, gym.spaces.Dict):
        assert inputs[: len(model.observation_space.spaces)] == list(model.observation_space.spaces)
        assert observation["type"] == "Dict"
    else:
        assert inputs[0] == "obs"
    if isinstance(model.observation_space, gym.spaces.Box):
        assert observation["shape"] == list(model.observation_space.shape)
    assert ("action_mask" in inputs) == (family == "MaskableTRPOPlus")
    assert {"lstm_h", "lstm_c", "episode_start"} <= set(inputs) or family != "RecurrentTRPOPlus"
    assert all(value.type.tensor_type.shape.dim[1 if "lstm_" in value.name else 0].dim_param for value in proto.graph.input)
    # the user's model is untouched: same actions, same training mode, the space's random stream not drawn from
    np.testing.assert_array_equal(model.predict(fixed, deterministic=True)[0], before)
    assert model.policy.training == training
    assert model.observation_space.np_random.bit_generator.state == stream


def test_the_check_fails_when_the_graph_is_stale(tmp_path: Path) -> None:
    """A check that cannot fail is no check: statistics changed after export make it fail."""
    model = build("TRPOPlus", "MlpPolicy", lambda: gym.make("Pendulum-v1"), {})
    path = tmp_path / "policy.onnx"
    assert export_onnx(model, path, n_sampled=32) is not None
    perturb_observation_statistics(model, seed=1)
    stale = check_onnx(model, path, n_sampled=32)
    assert not stale.passed and "actions" in stale.failures[0]
    with pytest.raises(ExportCheckError, match="the file was removed"):
        export_onnx(model, path, n_sampled=32, atol=-1.0)  # no float output can pass a negative tolerance
    assert not path.exists()


def test_statistics_in_the_policy_are_in_the_graph(tmp_path: Path) -> None:
    """Raw observations in, predict's actions out: the graph differs from one without the statistics."""
    model = build("TRPOPlus", "MlpPolicy", lambda: gym.make("HalfCheetah-v5"), {})
    path = tmp_path / "policy.onnx"
    result = export_onnx(model, path, rollout_env="HalfCheetah-v5", n_sampled=32, rollout_steps=32)
    assert result is not None and result.passed and not result.note
    session = ort.InferenceSession(str(path))
    obs = np.random.default_rng(0).normal(size=(8, 17))
    (actions,) = session.run(None, {"obs": obs})
    np.testing.assert_allclose(actions, model.predict(obs, deterministic=True)[0], atol=1e-5)
    assert session.get_inputs()[0].type == "tensor(double)"  # the observation space's dtype, as predict takes it


def test_float32_observations_for_a_float64_env(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """HalfCheetah's observations are float64, and so by default is the graph's input (float32 gets ONNX Runtime's
    INVALID_ARGUMENT); ``obs_dtype="float32"`` gives a graph that takes float32, with VecNormalize's float64
    statistics folded in, that matches ``predict`` on the env's own float64 observations within the check's
    tolerance. The result (and so the command's output) says what each graph takes."""
    venv = VecNormalize(make_vec_env("HalfCheetah-v5", n_envs=1, seed=0))
    model = TRPOPlus("MlpPolicy", venv, n_steps=64, batch_size=64, seed=0)
    model.learn(128)
    raw = np.random.default_rng(0).normal(size=(16, 17)) * 3
    expected = model.predict(venv.normalize_obs(raw), deterministic=True)[0]
    default = export_onnx(model, tmp_path / "f64.onnx", n_sampled=32)
    assert default is not None and "It takes obs: float64 (batch, 17)" in str(default)
    with pytest.raises(ort.capi.onnxruntime_pybind11_state.InvalidArgument, match=r"expected: \(tensor\(double\)\)"):
        ort.InferenceSession(str(tmp_path / "f64.onnx")).run(None, {"obs": raw.astype(np.float32)})

    chosen = export_onnx(
        model, tmp_path / "f32.onnx", obs_dtype="float32", rollout_env="HalfCheetah-v5", n_sampled=32, rollout_steps=32
    )
    assert chosen is not None and chosen.passed and "It takes obs: float32 (batch, 17)" in str(chosen)
    (actions,) = ort.InferenceSession(str(tmp_path / "f32.onnx")).run(None, {"obs": raw.astype(np.float32)})
    np.testing.assert_allclose(actions, expected, atol=1e-5)

    model.save(tmp_path / "model.zip")
    venv.save(str(tmp_path / "vecnormalize.pkl"))
    command = [str(tmp_path / "model.zip"), str(tmp_path / "cli.onnx"), "--vec-normalize", str(tmp_path / "vecnormalize.pkl")]
    assert export_main([*command, "--obs-dtype", "float32", "--samples", "16"]) == 0
    assert "It takes obs: float32 (batch, 17)" in capsys.readouterr().out
    with pytest.raises(
        ExportError, match=r"Invalid obs_dtype='int8': expected None \(each .*\) or one of 'float32', 'float64'"
    ):
        export_onnx(model, tmp_path / "x.onnx", obs_dtype="int8")


def test_obs_dtype_changes_only_float_observations(tmp_path: Path) -> None:
    """In a Dict, ``obs_dtype`` changes the float Box entries; images keep uint8."""
    model = TRPOPlus("MultiInputPolicy", SimpleMultiObsEnv(random_start=True), n_steps=32, batch_size=32, seed=0)
    result = export_onnx(model, tmp_path / "dict.onnx", obs_dtype=np.float64, n_sampled=16)
    assert result is not None and result.passed
    types = {node.name: node.type for node in ort.InferenceSession(str(tmp_path / "dict.onnx")).get_inputs()}
    assert types == {"vec": "tensor(double)", "img": "tensor(uint8)"}


@pytest.mark.slow
def test_vec_normalize_statistics_are_folded_in(tmp_path: Path) -> None:
    """A model trained behind VecNormalize: the env's statistics (or VecNormalize.save's file) go into the graph, so it
    takes raw observations; without them the result says what the graph expects."""
    venv = VecNormalize(make_vec_env("Pendulum-v1", n_envs=2, seed=0))
    model = TRPOPlus("MlpPolicy", venv, n_steps=64, batch_size=64, seed=0)
    model.learn(256)
    assert not observation_normalizers(model.policy)  # "auto": VecNormalize already normalizes
    raw = np.random.default_rng(0).normal(size=(16, 3)) * 3
    expected = model.predict(venv.normalize_obs(raw), deterministic=True)[0]

    from_env = export_onnx(model, tmp_path / "env.onnx", rollout_env="Pendulum-v1", n_sampled=32, rollout_steps=32)
    assert from_env is not None and from_env.passed and not from_env.note
    venv.save(str(tmp_path / "vecnormalize.pkl"))
    model.save(tmp_path / "model.zip")
    loaded = TRPOPlus.load(tmp_path / "model.zip")
    from_file = export_onnx(loaded, tmp_path / "file.onnx", vec_normalize=tmp_path / "vecnormalize.pkl", n_sampled=32)
    assert from_file is not None and from_file.passed
    for name in ("env.onnx", "file.onnx"):
        (actions,) = ort.InferenceSession(str(tmp_path / name)).run(None, {"obs": raw.astype(np.float32)})
        np.testing.assert_allclose(actions, expected, atol=1e-5)
        metadata = {entry.key: entry.value for entry in onnx.load(tmp_path / name).metadata_props}
        assert metadata["vec_normalize"] == "folded into the graph"

    bare = export_onnx(loaded, tmp_path / "bare.onnx", n_sampled=32)
    assert bare is not None and bare.passed and "vec_normalize=" in bare.note
    with pytest.raises(ExportError, match="vec_normalize=True"):
        export_onnx(loaded, tmp_path / "x.onnx", vec_normalize=True)
    with pytest.raises(ExportError, match="vec_normalize="):
        export_onnx(loaded, tmp_path / "x.onnx", vec_normalize=3)  # type: ignore[arg-type]


def test_a_model_saved_before_normalization_exports(tmp_path: Path) -> None:
    """The file saved by ffd9cac (no statistics in the model) exports and gives the actions it gave then."""
    expected = np.load(DATA / "trpo_plus_ffd9cac_pendulum.npz")
    model = TRPOPlus.load(DATA / "trpo_plus_ffd9cac_pendulum.zip")
    path = tmp_path / "ffd9cac.onnx"
    result = export_onnx(model, path, value=True, n_sampled=32)
    assert result is not None and result.passed
    actions, values = ort.InferenceSession(str(path)).run(None, {"obs": expected["obs"]})
    np.testing.assert_allclose(actions, expected["actions"], atol=1e-5)
    np.testing.assert_allclose(values, expected["values"], rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_a_fresh_process_with_only_onnxruntime_and_numpy(tmp_path: Path) -> None:
    model = build("TRPOPlus", "MlpPolicy", lambda: gym.make("Pendulum-v1"), {})
    export_onnx(model, tmp_path / "policy.onnx", n_sampled=16)
    obs = np.random.default_rng(1).normal(size=(32, 3)).astype(np.float32)
    np.save(tmp_path / "obs.npy", obs)
    np.save(tmp_path / "actions.npy", model.predict(obs, deterministic=True)[0])
    script = (
        "import sys, numpy as np, onnxruntime as ort\n"
        f"d = {str(tmp_path)!r}\n"
        "s = ort.InferenceSession(d + '/policy.onnx', providers=['CPUExecutionProvider'])\n"
        "(a,) = s.run(['actions'], {'obs': np.load(d + '/obs.npy')})\n"
        "e = np.load(d + '/actions.npy')\n"
        "assert np.allclose(a, e, atol=1e-5, rtol=0), np.abs(a - e).max()\n"
        "leaked = [m for m in ('torch', 'stable_baselines3', 'sb3_trpo_plus', 'gymnasium') if m in sys.modules]\n"
        "assert not leaked, leaked\n"
        "print('ok', a.shape)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok (32, 1)"


class Branches(BaseFeaturesExtractor):
    """A custom extractor whose Python branches on the data: it cannot be one graph."""

    def __init__(self, observation_space: gym.spaces.Box) -> None:
        super().__init__(observation_space, 3)

    def forward(self, observations: th.Tensor) -> th.Tensor:
        if observations.sum() > 0:
            return observations
        return -observations


def test_bad_requests_get_clear_errors(tmp_path: Path) -> None:
    cartpole = TRPOPlus("MlpPolicy", "CartPole-v1", n_steps=32, batch_size=32)
    with pytest.raises(ExportError, match=r"log_std=True.*CategoricalDistribution"):
        export_onnx(cartpole, tmp_path / "x.onnx", log_std=True)
    (tmp_path / "not_statistics.pkl").write_bytes(pickle.dumps({"mean": 0}))
    with pytest.raises(ExportError, match=r"holds a dict, expected the statistics VecNormalize\.save writes"):
        export_onnx(cartpole, tmp_path / "x.onnx", vec_normalize=tmp_path / "not_statistics.pkl")
    custom = TRPOPlus(
        "MlpPolicy", "Pendulum-v1", n_steps=32, batch_size=32, policy_kwargs={"features_extractor_class": Branches}
    )
    with pytest.raises(
        ExportError,
        match=r"could not trace features_extractor \(Branches.forward, test_export.py line \d+\): "
        r"`if observations.sum\(\) > 0:`",
    ):
        export_onnx(custom, tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()


def test_a_missing_extra_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'sb3-trpo-plus\[export\]'"):
        export_onnx(TRPOPlus("MlpPolicy", "Pendulum-v1", n_steps=32, batch_size=32), tmp_path / "x.onnx")


@pytest.mark.slow
@pytest.mark.parametrize("family", ["TRPOPlus", "MaskableTRPOPlus", "RecurrentTRPOPlus"])
def test_the_command_exports_and_prints_the_comparison(
    family: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = "MlpLstmPolicy" if family == "RecurrentTRPOPlus" else "MlpPolicy"
    model = build(family, policy, lambda: gym.make("CartPole-v1"), {})
    model.save(tmp_path / "model.zip")
    assert type(load_model(tmp_path / "model.zip")).__name__ == family
    code = export_main(
        [
            str(tmp_path / "model.zip"),
            str(tmp_path / "policy.onnx"),
            "--env",
            "CartPole-v1",
            "--samples",
            "16",
            "--rollout-steps",
            "16",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0 and "matches predict on 16 sampled and 16 rollout observations" in out, out
    assert export_main([str(tmp_path / "model.zip"), str(tmp_path / "x.onnx"), "--log-std"]) == 1
    assert "error: Invalid log_std=True" in capsys.readouterr().out


@pytest.mark.slow
def test_python_dash_m_dispatches_export(tmp_path: Path) -> None:
    TRPOPlus("MlpPolicy", "Pendulum-v1", n_steps=32, batch_size=32).save(tmp_path / "model.zip")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "sb3_trpo_plus",
            "export",
            str(tmp_path / "model.zip"),
            str(tmp_path / "policy.onnx"),
            "--samples",
            "8",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "matches predict on 8 sampled and 0 rollout observations" in done.stdout


def test_the_rollout_check_reads_masks_through_wrappers() -> None:
    """A masked env behind gymnasium wrappers (as gym.make gives it): the check's rollout acts with the env's own
    masks, read as sb3-contrib reads them, not with all actions allowed."""
    from sb3_contrib.common.envs import InvalidActionEnvDiscrete

    from sb3_trpo_plus import MaskableTRPOPlus
    from sb3_trpo_plus.export import MaskedExport, export_family
    from sb3_trpo_plus.export.check import rollout

    model = build("MaskableTRPOPlus", "MlpPolicy", lambda: InvalidActionEnvDiscrete(dim=6, n_invalid_actions=2), {})
    assert isinstance(model, MaskableTRPOPlus)
    family = export_family(model.policy)
    assert isinstance(family, MaskedExport)
    wrapped = gym.wrappers.TimeLimit(InvalidActionEnvDiscrete(dim=6, n_invalid_actions=2), max_episode_steps=50)
    _, inputs = rollout(family, wrapped, 16, 0, lambda obs: obs)
    masks = inputs.get("action_mask")
    assert masks is not None and masks.shape == (16, 6)
    assert (masks.sum(axis=1) == 4).all()  # 2 of the 6 actions are invalid at every step


def test_every_family_has_one_export_class() -> None:
    """The family dispatch is one table: each family of sb3_trpo_plus.families has its class, chosen by policy_family."""
    from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy
    from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy
    from stable_baselines3.common.policies import ActorCriticPolicy

    from sb3_trpo_plus import families
    from sb3_trpo_plus.export import EXPORT_FAMILIES, MaskedExport, PlainExport, RecurrentExport, export_family

    assert set(EXPORT_FAMILIES) == set(families.FAMILIES)
    assert all(cls.name == name for name, cls in EXPORT_FAMILIES.items())
    space = gym.spaces.Box(-1.0, 1.0, (3,))
    actions = gym.spaces.Discrete(2)
    for policy_class, expected in (
        (ActorCriticPolicy, PlainExport),
        (MaskableActorCriticPolicy, MaskedExport),
        (RecurrentActorCriticPolicy, RecurrentExport),
    ):
        family = export_family(policy_class(space, actions, lambda _: 0.0))
        assert type(family) is expected
