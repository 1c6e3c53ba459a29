"""Drop-in parity: the scripts that run ``sb3_contrib.TRPO`` run ``TRPOPlus`` unchanged."""

from __future__ import annotations

import copy
import inspect
import warnings
from pathlib import Path
from typing import NamedTuple

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from sb3_contrib import TRPO
from stable_baselines3.common.callbacks import EvalCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.envs import (
    FakeImageEnv,
    IdentityEnvMultiBinary,
    IdentityEnvMultiDiscrete,
    SimpleMultiObsEnv,
)
from stable_baselines3.common.vec_env import VecNormalize

import sb3_trpo_plus
from sb3_trpo_plus import TRPOPlus

ALGOS = [TRPO, TRPOPlus]


def test_every_sb3_contrib_argument_is_accepted_with_its_default() -> None:
    theirs = inspect.signature(TRPO.__init__).parameters
    ours = inspect.signature(TRPOPlus.__init__).parameters
    for name, param in theirs.items():
        assert name in ours, name
        if name != "target_kl":
            assert ours[name].default == param.default, name
    assert TRPOPlus.policy_aliases.keys() == TRPO.policy_aliases.keys()
    # target_kl="auto" is sb3-contrib's default 0.01 in TRPOPlus's unit (the joint KL): times the action dimensions
    assert ours["target_kl"].default == "auto" and theirs["target_kl"].default == 0.01
    for env, dims in (("HalfCheetah-v5", 6), ("Pendulum-v1", 1), ("CartPole-v1", 1)):
        assert TRPOPlus("MlpPolicy", env, n_steps=64)._current_target_kl() == pytest.approx(0.01 * dims)


class ScriptRun(NamedTuple):
    """What a user's script sees of a run: the loaded model's actions, the values logged at the last update, the
    counters and the episode statistics' window."""

    actions: np.ndarray
    logged: dict[str, float]
    num_timesteps: int
    n_updates: int
    stats_window_size: int | None


def run_script(algo, env, tmp_path: Path, total: int = 128, **kwargs) -> ScriptRun:
    """A typical user script: build, learn, save, load, predict."""
    kwargs = {"n_steps": 64, "batch_size": 32, "seed": 0, **kwargs}
    model = algo(env=env, **kwargs)
    model.learn(total)
    path = tmp_path / f"{algo.__name__}.zip"
    model.save(path)
    loaded = algo.load(path, env=model.get_env())
    obs = model.get_env().reset()
    actions, _ = loaded.predict(obs, deterministic=True)
    expected, _ = model.predict(obs, deterministic=True)
    np.testing.assert_array_equal(actions, expected)
    logged = dict(model.logger.name_to_value)  # the last update's train/ values (the rollout's were dumped)
    return ScriptRun(actions, logged, model.num_timesteps, model._n_updates, model.ep_info_buffer.maxlen)


def assert_runs_alike(ours: ScriptRun, theirs: ScriptRun) -> None:
    """TRPOPlus ran the script as sb3-contrib did: actions of the same shape and type, the same counters and
    statistics window, every value sb3-contrib logs logged too, and the same learning rate (a schedule's included)."""
    assert ours.actions.shape == theirs.actions.shape and ours.actions.dtype == theirs.actions.dtype
    assert np.all(np.isfinite(ours.actions))
    assert (ours.num_timesteps, ours.n_updates, ours.stats_window_size) == (
        theirs.num_timesteps,
        theirs.n_updates,
        theirs.stats_window_size,
    )
    assert "train/policy_objective" in theirs.logged  # the last update's values are there to compare
    assert theirs.logged.keys() <= ours.logged.keys(), theirs.logged.keys() - ours.logged.keys()
    for key in ("train/n_updates", "train/learning_rate"):
        assert ours.logged[key] == theirs.logged[key], key


# image observations are costly on 2 cores: few steps and critic epochs there
SMALL_IMAGE_RUN = {"n_steps": 32, "batch_size": 32, "n_critic_updates": 1, "cg_max_steps": 3, "line_search_max_iter": 3}
CASES = {
    "cnn": ("CnnPolicy", lambda: FakeImageEnv(screen_height=36, screen_width=36, n_channels=1), SMALL_IMAGE_RUN),
    "dict_obs": ("MultiInputPolicy", lambda: SimpleMultiObsEnv(random_start=True), SMALL_IMAGE_RUN),
    "multidiscrete": ("MlpPolicy", lambda: IdentityEnvMultiDiscrete(3), {}),
    "multibinary": ("MlpPolicy", lambda: IdentityEnvMultiBinary(3), {}),
    "discrete": ("MlpPolicy", lambda: gym.make("CartPole-v1"), {}),
    "box": ("MlpPolicy", lambda: gym.make("Pendulum-v1"), {}),
    "gsde_sub_sampling": (
        "MlpPolicy",
        lambda: gym.make("Pendulum-v1"),
        {"use_sde": True, "sde_sample_freq": 4, "sub_sampling_factor": 4},
    ),
    "stats_window_and_kwargs": (
        "MlpPolicy",
        lambda: gym.make("Pendulum-v1"),
        {
            "stats_window_size": 7,
            "policy_kwargs": {"net_arch": {"pi": [16], "vf": [16]}, "activation_fn": th.nn.ReLU},
            "normalize_advantage": False,
            "learning_rate": lambda progress: 1e-3 * progress,
            "line_search_max_iter": 3,
            "cg_max_steps": 5,
            "gae_lambda": 0.9,
            "gamma": 0.95,
        },
    ),
}


@pytest.mark.parametrize("algo", [TRPOPlus, sb3_trpo_plus.TRPO], ids=["TRPOPlus", "TRPO"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_same_script_runs_both(case: str, algo: type, tmp_path: Path) -> None:
    policy, make_env, kwargs = CASES[case]
    ours, theirs = (run_script(each, make_env(), tmp_path, policy=policy, **kwargs) for each in (algo, TRPO))
    assert_runs_alike(ours, theirs)


def test_stats_window_size_is_used() -> None:
    windows = {}
    for algo in ALGOS:
        model = algo("MlpPolicy", "CartPole-v1", n_steps=64, stats_window_size=3, seed=0)
        model.learn(128)
        assert len(model.ep_info_buffer) == 3  # CartPole's episodes are short: the window is full
        windows[algo] = model.ep_info_buffer.maxlen
    assert windows[TRPOPlus] == windows[TRPO] == 3


def test_vec_normalize_callbacks_tensorboard_progress_bar(tmp_path: Path) -> None:
    """The same script with VecNormalize, an EvalCallback, TensorBoard and the progress bar: TRPOPlus evaluates at
    the timesteps sb3-contrib does, and writes its TensorBoard events every tag sb3-contrib writes."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    evaluations, tags = {}, {}
    for algo in ALGOS:
        out = tmp_path / algo.__name__
        venv = VecNormalize(make_vec_env("Pendulum-v1", n_envs=2, seed=0))
        eval_env = VecNormalize(make_vec_env("Pendulum-v1", n_envs=1, seed=1), training=False, norm_reward=False)
        callback = EvalCallback(eval_env, eval_freq=128, n_eval_episodes=1, log_path=str(out / "eval"))
        model = algo("MlpPolicy", venv, n_steps=64, batch_size=64, tensorboard_log=str(out / "tb"), seed=0)
        model.learn(512, callback=callback, progress_bar=True)
        assert model.num_timesteps == 512
        evaluations[algo] = np.load(out / "eval" / "evaluations.npz")["timesteps"]
        (events,) = (out / "tb").rglob("events.out.tfevents.*")
        tags[algo] = set(EventAccumulator(str(events)).Reload().Tags()["scalars"])
    np.testing.assert_array_equal(evaluations[TRPOPlus], evaluations[TRPO])
    assert len(evaluations[TRPO]) == 2  # 512 steps of 2 envs, every 128 calls
    assert "train/policy_objective" in tags[TRPO] and "eval/mean_reward" in tags[TRPO]
    assert tags[TRPO] <= tags[TRPOPlus], tags[TRPO] - tags[TRPOPlus]


@pytest.mark.parametrize("through", ["TRPOPlus converted", "TRPO unconverted"])
@pytest.mark.parametrize("sde", [False, True])
@pytest.mark.parametrize("env_id, action_dims", [("HalfCheetah-v5", 6), ("Pendulum-v1", 1)])
def test_converted_arguments_give_sb3_contrib_update(env_id: str, action_dims: int, sde: bool, through: str) -> None:
    """With target_kl and cg_damping multiplied by the action dimensions (TRPOPlus), or as they are through
    ``sb3_trpo_plus.TRPO`` with its defaults, one update on the same data and the same initial weights moves the actor
    as sb3_contrib.TRPO does, with or without gSDE."""
    from torch.nn.utils import parameters_to_vector

    from tests.helpers import collect

    env = make_vec_env(env_id, n_envs=2, seed=0)
    common = {"n_steps": 256, "n_critic_updates": 0, "cg_max_steps": 10, "seed": 0}
    # the switch to sb3-contrib's update: no normalization (TRPOPlus's update before it had any)
    switch = {"normalize_observations": False, "normalize_values": False}
    if sde:
        common.update(use_sde=True, sde_sample_freq=4, policy_kwargs={"log_std_init": -2})
    if through == "TRPO unconverted":  # the script's own line, with only the import changed
        ours = sb3_trpo_plus.TRPO("MlpPolicy", env, target_kl=0.01, cg_damping=0.1, **common)
    else:
        ours = TRPOPlus("MlpPolicy", env, target_kl=0.01 * action_dims, cg_damping=0.1 * action_dims, **switch, **common)
    theirs = TRPO("MlpPolicy", env, target_kl=0.01, cg_damping=0.1, **common)
    theirs.policy.load_state_dict(ours.policy.state_dict())
    collect(ours)
    theirs._setup_learn(512, None)
    theirs.rollout_buffer = copy.deepcopy(ours.rollout_buffer)

    def actor(model) -> th.Tensor:
        return parameters_to_vector([p for n, p in model.policy.named_parameters() if "value" not in n]).detach()

    start = actor(ours)
    with pytest.warns(RuntimeWarning):  # sb3-contrib: np.mean of an empty list of critic losses
        theirs.train()
    ours.train()
    assert ours.logger.name_to_value["train/is_line_search_success"] == 1.0
    ours_step, theirs_step = actor(ours) - start, actor(theirs) - start
    cosine = float(ours_step @ theirs_step / (ours_step.norm() * theirs_step.norm()))
    assert cosine > 0.999
    assert float(ours_step.norm() / theirs_step.norm()) == pytest.approx(1.0, abs=0.01)


def test_trpo_takes_sb3_contribs_arguments_in_order_with_their_defaults() -> None:
    """``sb3_trpo_plus.TRPO``'s signature begins with sb3_contrib.TRPO's, in the same order, with the same defaults
    (target_kl and cg_damping included); TRPOPlus's own arguments follow, keyword only."""
    theirs = list(inspect.signature(TRPO.__init__).parameters.values())
    ours = list(inspect.signature(sb3_trpo_plus.TRPO.__init__).parameters.values())
    assert [(p.name, p.default) for p in ours[: len(theirs)]] == [(p.name, p.default) for p in theirs]
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in ours[len(theirs) :])
    model = sb3_trpo_plus.TRPO("MlpPolicy", "HalfCheetah-v5", n_steps=64)
    assert model._current_target_kl() == pytest.approx(0.06) and model._fisher_damping() == pytest.approx(0.6)
    assert not model.normalize_observations and model.value_normalizer is None


def test_model_files_keep_their_trust_region_in_either_class(tmp_path: Path) -> None:
    """sb3-contrib's files (and TRPO's) hold per-dimension values, TRPOPlus's joint ones: each class loads the others'
    files with the same trust region, converting with a warning, and its own unchanged."""
    contrib = TRPO("MlpPolicy", "HalfCheetah-v5", n_steps=64, target_kl=0.02, cg_damping=0.2)
    contrib.save(tmp_path / "contrib")
    dropin = sb3_trpo_plus.TRPO("MlpPolicy", "HalfCheetah-v5", n_steps=64, target_kl=0.02, cg_damping=0.2)
    dropin.save(tmp_path / "dropin")
    plus = TRPOPlus("MlpPolicy", "HalfCheetah-v5", n_steps=64, target_kl=0.12, cg_damping=1.2)
    plus.save(tmp_path / "plus")
    for name in ("contrib", "dropin"):
        with pytest.warns(UserWarning, match=r"multiplied by 6 \(6 action dimensions\)"):
            loaded = TRPOPlus.load(tmp_path / name)
        assert (loaded.target_kl, loaded.cg_damping) == pytest.approx((0.12, 1.2))
        assert loaded._current_target_kl() == pytest.approx(0.12) and loaded.kl_unit == "joint"
    with pytest.warns(UserWarning, match="TRPO reads target_kl and cg_damping per dimension"):
        back = sb3_trpo_plus.TRPO.load(tmp_path / "plus")
    assert (back.target_kl, back.cg_damping) == pytest.approx((0.02, 0.2)) and back._current_target_kl() == pytest.approx(0.12)
    own = (("contrib", sb3_trpo_plus.TRPO, 0.02), ("dropin", sb3_trpo_plus.TRPO, 0.02), ("plus", TRPOPlus, 0.12))
    for name, cls, expected in own:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert cls.load(tmp_path / name).target_kl == pytest.approx(expected)
