"""The fast paths (``sb3_trpo_plus.fast_paths``): each against the generic path it replaces, and the guard that
decides when they may serve a policy."""

from __future__ import annotations

import copy
import itertools
import re
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
import torch as th
from sb3_contrib import TRPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.distributions import kl_divergence
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.envs import FakeImageEnv, IdentityEnvBox, IdentityEnvMultiBinary, IdentityEnvMultiDiscrete
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.torch_layers import MlpExtractor
from torch import nn
from torch.nn.utils import parameters_to_vector

import sb3_trpo_plus.threads as threads_module
from sb3_trpo_plus import TRPOPlus, fast_paths
from sb3_trpo_plus.fast_paths import rollout as fast_rollout
from sb3_trpo_plus.fast_paths.chains import ChainMseGradient, LinearChain, chain_fisher_vector_product
from sb3_trpo_plus.fisher import joint_kl
from sb3_trpo_plus.normalization import NormalizedFlattenExtractor
from sb3_trpo_plus.threads import thread_cap
from sb3_trpo_plus.validation import NonFiniteObservationError
from tests.helpers import SharedLinearExtractor, batch, collect, perturb_observation_statistics


def make_chain(activation: type[nn.Module], widths=(5, 7, 6), out: int = 3) -> tuple[nn.Sequential, nn.Linear]:
    th.manual_seed(0)
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise(widths):
        layers += [nn.Linear(a, b), activation()]
    return nn.Sequential(*layers).double(), nn.Linear(widths[-1], out).double()


def test_from_modules_accepts_mlp_heads_and_rejects_others() -> None:
    body, head = make_chain(nn.Tanh)
    chain = LinearChain.from_modules(body, head)
    assert chain is not None
    assert len(chain.linears) == 3
    assert chain.layer_params == [*body.parameters(), *head.parameters()]
    assert LinearChain.from_modules(nn.Sequential(), head) is not None  # net_arch=[]
    assert LinearChain.from_modules(nn.Sequential(nn.Linear(2, 3), nn.Sigmoid()), head) is None
    assert LinearChain.from_modules(nn.Sequential(nn.Linear(2, 3), nn.Tanh()), nn.Tanh()) is None
    assert LinearChain.from_modules(nn.Linear(2, 3, bias=False)) is None
    assert LinearChain.from_modules(nn.Sequential(nn.Conv1d(1, 1, 1))) is None


@pytest.mark.parametrize("activation", [nn.Tanh, nn.ReLU, nn.Identity])
def test_forward_matches_module(activation: type[nn.Module]) -> None:
    body, head = make_chain(activation)
    chain = LinearChain.from_modules(body, head)
    assert chain is not None
    x = th.randn(11, 5, dtype=th.float64)
    assert th.allclose(chain.run(x).output, head(body(x)))


@pytest.mark.parametrize("activation", [nn.Tanh, nn.ReLU, nn.Identity])
@pytest.mark.parametrize("widths", [(5, 7, 6), (5,)], ids=["two_hidden", "no_hidden"])
def test_fisher_vector_product_matches_autograd(activation: type[nn.Module], widths: tuple[int, ...]) -> None:
    body, head = make_chain(activation, widths)
    chain = LinearChain.from_modules(body, head)
    assert chain is not None
    x = th.randn(40, 5, dtype=th.float64)
    weights = th.rand(40, 3, dtype=th.float64) + 0.1  # a per-sample diagonal metric

    def metric(u: th.Tensor) -> th.Tensor:
        return weights * u

    fvp = chain_fisher_vector_product(chain, chain.run(x, keep=True), metric)
    params = chain.layer_params
    out = head(body(x))
    probe = th.zeros_like(out, requires_grad=True)
    jt = th.autograd.grad(out, params, probe, create_graph=True)
    for seed in range(3):
        v = th.randn(sum(p.numel() for p in params), generator=th.Generator().manual_seed(seed), dtype=th.float64)
        chunks = chain.split(v)
        jv = th.autograd.grad(jt, probe, chunks, retain_graph=True)[0]
        expected = th.cat([g.reshape(-1) for g in th.autograd.grad(out, params, metric(jv) / len(x), retain_graph=True)])
        assert th.allclose(fvp(v), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("activation", [nn.Tanh, nn.ReLU])
def test_mse_gradient_matches_autograd(activation: type[nn.Module]) -> None:
    body, head = make_chain(activation, out=1)
    chain = LinearChain.from_modules(body, head)
    assert chain is not None
    x, targets = th.randn(32, 5, dtype=th.float64), th.randn(32, dtype=th.float64)
    flat = th.cat([p.detach().reshape(-1) for p in chain.layer_params])
    buffer = th.empty_like(flat)
    gradient = ChainMseGradient(chain, flat, buffer)
    loss = gradient(x, targets)
    expected_loss = nn.functional.mse_loss(head(body(x)).flatten(), targets)
    expected = th.cat([g.reshape(-1) for g in th.autograd.grad(expected_loss, chain.layer_params)])
    assert th.allclose(loss, expected_loss)
    assert th.allclose(buffer, expected, rtol=1e-10, atol=1e-12)
    # the flat parameters are read at every call: an in-place update is seen
    flat.mul_(0.5)
    with th.no_grad():
        for param in chain.layer_params:
            param.mul_(0.5)
    gradient(x, targets)
    expected_loss = nn.functional.mse_loss(head(body(x)).flatten(), targets)
    expected = th.cat([g.reshape(-1) for g in th.autograd.grad(expected_loss, chain.layer_params)])
    assert th.allclose(buffer, expected, rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------------------------- on real SB3 policies
@pytest.fixture(autouse=True)
def keep_distribution_checks() -> Iterator[None]:
    """``torch.compile`` turns off torch.distributions' argument checks for the whole process: restore them."""
    validate = th.distributions.Distribution._validate_args
    yield
    th.distributions.Distribution.set_default_validate_args(validate)


class ScaledFeatures(ActorCriticPolicy):
    """Keeps SB3's FlattenExtractor but changes the features: a fast path that skipped this would be wrong."""

    def extract_features(self, obs, features_extractor=None):  # type: ignore[no-untyped-def]
        features = super().extract_features(obs, features_extractor)
        if isinstance(features, tuple):
            return tuple(2.0 * f + 1.0 for f in features)
        return 2.0 * features + 1.0


class OwnMlpExtractor(MlpExtractor):
    """A subclass of SB3's MlpExtractor (it could override anything)."""


class OwnExtractorPolicy(ActorCriticPolicy):
    def _build_mlp_extractor(self) -> None:
        self.mlp_extractor = OwnMlpExtractor(
            self.features_dim, net_arch=self.net_arch, activation_fn=self.activation_fn, device=self.device
        )


def _wrap_forward(model: TRPOPlus) -> None:
    original = model.policy.forward
    model.policy.forward = lambda obs, deterministic=False: original(obs, deterministic)  # type: ignore[method-assign]


GUARD_CASES: dict[str, tuple[Callable[[], TRPOPlus], str]] = {
    "extract_features overridden": (lambda: TRPOPlus(ScaledFeatures, "Pendulum-v1"), "overrides extract_features"),
    "forward replaced on the instance": (
        lambda: (model := TRPOPlus("MlpPolicy", "Pendulum-v1"), _wrap_forward(model))[0],
        "the policy has forward replaced on the instance",
    ),
    "hook on a head": (
        lambda: (model := TRPOPlus("MlpPolicy", "Pendulum-v1"), model.policy.action_net.register_forward_hook(print))[0],
        "policy.action_net has forward_hooks",
    ),
    "compiled": (
        lambda: (model := TRPOPlus("MlpPolicy", "Pendulum-v1"), setattr(model, "policy", th.compile(model.policy)))[0],
        "OptimizedModule",
    ),
    "sigmoid activations": (
        lambda: TRPOPlus("MlpPolicy", "Pendulum-v1", policy_kwargs={"activation_fn": nn.Sigmoid}),
        "not a chain of Linear layers",
    ),
    "own MlpExtractor": (lambda: TRPOPlus(OwnExtractorPolicy, "Pendulum-v1"), "not SB3's MlpExtractor"),
}


@pytest.mark.parametrize("env_id", ["Pendulum-v1", "CartPole-v1"])
def test_sb3_mlp_policies_qualify(env_id: str) -> None:
    assert fast_paths.supports(TRPOPlus("MlpPolicy", env_id).policy) == (True, "")


def test_normalized_features_inline_only_for_the_exact_shared_extractor() -> None:
    """The rollout forward computes the normalization itself only for one shared NormalizedFlattenExtractor; other
    extractors (separate ones, a subclass, the old FlattenExtractor) are called, or are a plain flatten."""

    class OwnNormalized(NormalizedFlattenExtractor):
        pass

    def feature_map(**kwargs: object) -> object:
        plan = fast_paths.plan(TRPOPlus("MlpPolicy", "Pendulum-v1", **kwargs).policy)
        assert plan is not None
        return fast_rollout._feature_map(plan)

    assert feature_map() is not None and feature_map(normalize_observations=False) is not None
    assert feature_map(policy_kwargs={"share_features_extractor": False}) is None
    assert feature_map(policy_kwargs={"features_extractor_class": OwnNormalized}, normalize_observations=False) is None
    model = TRPOPlus("MlpPolicy", "Pendulum-v1", n_steps=64, policy_kwargs={"share_features_extractor": False}, seed=0)
    perturb_observation_statistics(model)
    forward = fast_paths.rollout_forward(planned(model))  # the extractors are called: still SB3's values
    obs = th.as_tensor(np.stack([model.observation_space.sample() for _ in range(64)]))
    assert not isinstance(forward, fast_paths.Declined)
    with th.no_grad():
        assert th.allclose(forward(obs)[1], model.policy.predict_values(obs), atol=1e-6)


def planned(model: TRPOPlus) -> fast_paths.Plan:
    """The fast paths' plan for the model's policy (which they must serve)."""
    plan = fast_paths.plan(model.policy)
    assert plan is not None
    return plan


@pytest.mark.parametrize("case", sorted(GUARD_CASES))
def test_guard_declines_what_it_cannot_prove(case: str) -> None:
    make, reason = GUARD_CASES[case]
    support = fast_paths.supports(make().policy)
    assert not support.ok
    assert reason in support.reason


def test_gsde_keeps_the_critic_fast_path_only() -> None:
    """gSDE's noise depends on the state: no closed-form rollout forward or Fisher product, but the critic's fit (which
    does not involve the action distribution) still qualifies."""
    model = TRPOPlus("MlpPolicy", "Pendulum-v1", n_steps=64, use_sde=True, seed=0)
    assert fast_paths.supports(model.policy).ok
    assert isinstance(fast_paths.rollout_forward(planned(model)), fast_paths.Declined)
    collect(model)
    obs, actions, _, _ = batch(model)
    distribution = model._distribution(obs)
    all_params = list(model.policy.parameters())
    grads = th.autograd.grad(distribution.log_prob(actions).sum(), all_params, allow_unused=True)
    actor = [p for p, g in zip(all_params, grads, strict=True) if g is not None]
    assert isinstance(fast_paths.fisher_vector_product(planned(model), obs, actor, 0.1, distribution), fast_paths.Declined)
    critic = [p for p in all_params if not any(p is q for q in actor)]
    returns = th.as_tensor(model.rollout_buffer.returns.flatten(), device=model.device)
    minibatches = iter([th.arange(32, device=model.device)])
    assert not isinstance(fast_paths.fit_critic(planned(model), obs, returns, critic, minibatches), fast_paths.Declined)


def test_guard_declines_global_module_hooks() -> None:
    model = TRPOPlus("MlpPolicy", "Pendulum-v1")
    handle = th.nn.modules.module.register_module_forward_hook(lambda *args: None)
    try:
        assert fast_paths.supports(model.policy) == (False, "torch has global_forward_hooks registered")
    finally:
        handle.remove()
    assert fast_paths.supports(model.policy).ok


def test_wrapped_instance_forward_is_called_and_kept() -> None:
    """A user's wrapper on ``policy.forward`` runs at every rollout step and is still there after ``learn()``."""
    model = TRPOPlus("MlpPolicy", "Pendulum-v1", n_steps=64, batch_size=64, seed=0)
    original, calls = model.policy.forward, []

    def wrapper(obs, deterministic=False):  # type: ignore[no-untyped-def]
        calls.append(len(obs))
        return original(obs, deterministic)

    model.policy.forward = wrapper  # type: ignore[method-assign]
    model.learn(128)
    assert len(calls) == 128
    assert vars(model.policy)["forward"] is wrapper


def test_learning_leaves_the_policy_object_as_it_was() -> None:
    """The fast paths are in use here, and nothing of the policy's (methods, attributes) is replaced."""
    model = TRPOPlus("MlpPolicy", "Pendulum-v1", n_steps=64, batch_size=64, seed=0)
    before = dict(vars(model.policy))
    modules_before = {name: dict(vars(module)) for name, module in model.policy.named_modules()}
    model.learn(128)
    assert fast_paths.supports(model.policy).ok
    after = vars(model.policy)
    assert after.keys() == before.keys()
    assert all(after[key] is value for key, value in before.items() if key != "optimizer" and callable(value))
    assert {name: vars(module).keys() for name, module in model.policy.named_modules()} == {
        name: keys.keys() for name, keys in modules_before.items()
    }


@pytest.mark.parametrize("env_id", ["Pendulum-v1", "CartPole-v1"])
def test_overridden_extract_features_is_used_in_rollouts(env_id: str) -> None:
    """Values and log-probabilities stored during rollouts are the ones SB3's policy gives for those states."""
    model = TRPOPlus(ScaledFeatures, env_id, n_steps=64, seed=0)
    collect(model)
    obs, actions, old_log_prob, _ = batch(model)
    with th.no_grad():
        values, log_prob, _ = model.policy.evaluate_actions(obs, actions)
    buffer = model.rollout_buffer
    stored_values = th.as_tensor(buffer.swap_and_flatten(buffer.values), device=model.device).flatten()
    assert th.allclose(stored_values, values.flatten(), atol=1e-5)
    assert th.allclose(old_log_prob, log_prob, atol=1e-5)


def test_compiled_policy_trains_as_sb3_contrib_does() -> None:
    """``model.policy = torch.compile(model.policy)`` trains, as with sb3-contrib, and takes the generic paths:
    the same parameters as the uncompiled policy with ``fast_paths=False``."""
    parameters = {}
    runs = ((TRPO, True, True), (TRPOPlus, True, True), (TRPOPlus, True, False), (TRPOPlus, False, False))
    for algo, compiled, fast in runs:
        kwargs = {} if algo is TRPO else {"fast_paths": fast}
        model = algo("MlpPolicy", "Pendulum-v1", n_steps=64, batch_size=64, seed=0, **kwargs)
        if compiled:
            model.policy = th.compile(model.policy, backend="eager")
        model.learn(192)
        vector = parameters_to_vector(model.policy.parameters()).detach()
        assert th.isfinite(vector).all()
        parameters[(algo.__name__, compiled, fast)] = vector
    assert th.equal(parameters[("TRPOPlus", True, False)], parameters[("TRPOPlus", False, False)])


@pytest.mark.parametrize(("n_envs", "numpy_forms"), [(1, True), (2, True), (1, False)])
@pytest.mark.parametrize("env_id", ["Pendulum-v1", "CartPole-v1"])
def test_fast_rollouts_fill_the_buffer_sb3s_loop_fills(
    env_id: str, n_envs: int, numpy_forms: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same seed, both loops: the same transitions, values, log-probabilities and returns (time-outs bootstrapped),
    and callbacks see the same local names."""
    monkeypatch.setattr(fast_paths, "NUMPY", numpy_forms)  # False: the torch closed forms (a GPU policy's)
    buffers, seen = {}, {}

    class Locals(BaseCallback):
        def _on_step(self) -> bool:
            seen.setdefault(fast, set()).update(self.locals)
            return True

    for fast in (True, False):
        env = make_vec_env(env_id, n_envs=n_envs, seed=0)
        model = TRPOPlus("MlpPolicy", env, n_steps=256 // n_envs, seed=0, fast_paths=fast)
        perturb_observation_statistics(model)
        _, callback = model._setup_learn(256, Locals())
        callback.on_training_start({}, {})
        assert model.env is not None
        assert model.collect_rollouts(model.env, callback, model.rollout_buffer, model.n_steps)
        buffers[fast] = model.rollout_buffer
        assert model.num_timesteps == 256
    for name in ("observations", "actions", "rewards", "episode_starts", "values", "log_probs", "advantages", "returns"):
        assert np.allclose(getattr(buffers[True], name), getattr(buffers[False], name), atol=1e-4), name
    assert (buffers[True].pos, buffers[True].full) == (buffers[False].pos, buffers[False].full) == (256 // n_envs, True)
    assert buffers[True].episode_starts.sum() > 1  # episodes ended inside the rollout
    assert seen[False] - {"self"} <= seen[True]  # SB3's local names (its ``self`` is our ``model``)


@pytest.mark.parametrize("env_id", ["Pendulum-v1", "CartPole-v1"])
def test_callbacks_read_sb3s_locals_with_their_meaning(env_id: str) -> None:
    """What a callback reads from ``self.locals`` at each step (SB3's names: actions, values, log-probabilities,
    the observation tensor, the new observations, rewards, dones, infos) has the type, dtype, shape and, for the same
    seed, the values it has in SB3's own loop."""
    names = ("actions", "clipped_actions", "values", "log_probs", "obs_tensor", "new_obs", "rewards", "dones", "infos")
    seen: dict[bool, list[dict[str, Any]]] = {}

    class Reader(BaseCallback):
        def _on_step(self) -> bool:
            seen[fast].append({name: copy.deepcopy(self.locals[name]) for name in names})
            return True

    for fast in (True, False):
        seen[fast] = []
        model = TRPOPlus("MlpPolicy", env_id, n_steps=256, seed=0, fast_paths=fast)
        model.learn(256, callback=Reader())
    assert len(seen[True]) == len(seen[False]) == 256
    for fast_step, sb3_step in zip(seen[True], seen[False], strict=True):
        for name in names:
            fast_value, sb3_value = fast_step[name], sb3_step[name]
            assert type(fast_value) is type(sb3_value), name
            if isinstance(sb3_value, th.Tensor | np.ndarray):
                assert (fast_value.dtype, fast_value.shape) == (sb3_value.dtype, sb3_value.shape), name
                assert np.allclose(np.asarray(fast_value), np.asarray(sb3_value), atol=1e-4), name
            else:
                assert len(fast_value) == len(sb3_value), name


#: the two ways a CPU policy gets the torch closed form of the rollout forward rather than the NumPy one: the NumPy
#: forms switched off (``fast_paths.NUMPY = False``, one env), or more envs than the NumPy form serves
TORCH_FORM_ROUTES = ["numpy_off", "many_envs"]


def torch_rollout_forward(
    plan: fast_paths.Plan, route: str, monkeypatch: pytest.MonkeyPatch
) -> tuple[Callable[[th.Tensor], tuple[th.Tensor, th.Tensor, th.Tensor]], list[LinearChain]]:
    """The torch closed form of the rollout forward of the plan's policy, reached by ``route``
    (:data:`TORCH_FORM_ROUTES`), and a spy on :meth:`LinearChain.run`: the list of the chains it ran for, since it was
    built. The torch form runs the actor's and the critic's chain at each call; the NumPy form runs neither (it
    multiplies its own copies of their weights)."""
    n_envs = 1
    if route == "numpy_off":
        monkeypatch.setattr(fast_paths, "NUMPY", False)
    else:
        n_envs = fast_paths.NUMPY_MAX_ENVS + 1
    forward = fast_paths.rollout_forward(plan, n_envs=n_envs)
    assert not isinstance(forward, fast_paths.Declined)
    assert not getattr(forward, "takes_numpy", False)  # collect_rollouts would hand it NumPy observations
    ran: list[LinearChain] = []
    run = LinearChain.run

    def spy(chain: LinearChain, *args, **kwargs):  # type: ignore[no-untyped-def]
        ran.append(chain)
        return run(chain, *args, **kwargs)

    monkeypatch.setattr(LinearChain, "run", spy)
    return forward, ran


@pytest.mark.parametrize("route", TORCH_FORM_ROUTES)
@pytest.mark.parametrize("env_id", ["Pendulum-v1", "CartPole-v1"])
def test_rollout_forward_matches_sb3_policy(env_id: str, route: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The torch closed form (a GPU policy's, or many envs'): SB3's values and log-probabilities, its actions
    distributed as the policy says, with the normalization computed inline."""
    model = TRPOPlus("MlpPolicy", env_id, n_steps=64, seed=0)
    perturb_observation_statistics(model)
    assert fast_rollout._feature_map(planned(model)) is not None  # the normalization is computed inline
    perturb = th.Generator().manual_seed(0)
    with th.no_grad():
        for param in model.policy.parameters():
            param.add_(0.1 * th.randn(param.shape, generator=perturb).to(param.device))
    obs = th.as_tensor(np.stack([model.observation_space.sample() for _ in range(4000)]), device=model.device)
    plan = planned(model)
    forward, ran = torch_rollout_forward(plan, route, monkeypatch)
    actions, values, log_prob = forward(obs)
    assert ran == [plan.actor, plan.critic]  # the torch form computed these
    with th.no_grad():
        distribution = model.policy.get_distribution(obs)
        expected_values = model.policy.predict_values(obs)
        flat_actions = actions if actions.dim() > 1 else actions.unsqueeze(1)
        assert th.allclose(log_prob, distribution.log_prob(actions), atol=1e-5)
        assert th.allclose(values, expected_values, atol=1e-6)
        if env_id == "Pendulum-v1":  # samples have the policy's mean and standard deviation
            standardized = (flat_actions - distribution.distribution.mean) / distribution.distribution.stddev
            assert abs(float(standardized.mean())) < 0.05
            assert abs(float(standardized.std()) - 1.0) < 0.05
        else:  # sampled actions follow the policy's probabilities on average
            probs = distribution.distribution.probs
            assert abs(float((actions == 1).float().mean() - probs[:, 1].mean())) < 0.03


@pytest.mark.parametrize("route", TORCH_FORM_ROUTES)
def test_rollout_forward_draws_sb3s_gaussian_actions(route: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Same torch seed, same actions: the torch closed form consumes the random stream exactly as SB3's forward
    does (the NumPy form's counterpart is test_numpy_rollout_forward_is_sb3s_forward)."""
    model = TRPOPlus("MlpPolicy", "Pendulum-v1", n_steps=64, seed=0)
    perturb_observation_statistics(model)
    obs = th.as_tensor(np.stack([model.observation_space.sample() for _ in range(256)]), device=model.device)
    plan = planned(model)
    forward, ran = torch_rollout_forward(plan, route, monkeypatch)
    th.manual_seed(1)
    fast, _, fast_log_prob = forward(obs)
    assert ran == [plan.actor, plan.critic]
    th.manual_seed(1)
    with th.no_grad():
        expected, _, expected_log_prob = model.policy(obs)
    assert th.allclose(fast, expected, atol=1e-6)
    assert th.allclose(fast_log_prob, expected_log_prob, atol=1e-5)


@pytest.mark.parametrize(
    ("env_id", "kwargs"),
    [
        ("Pendulum-v1", {}),
        ("Pendulum-v1", {"normalize_observations": False}),
        ("Pendulum-v1", {"policy_kwargs": {"activation_fn": nn.ReLU, "net_arch": [32, 16]}}),
        ("Pendulum-v1", {"policy_kwargs": {"net_arch": {"pi": [32], "vf": [64, 64]}}}),  # not merged: other depths
        ("CartPole-v1", {}),
    ],
)
def test_numpy_rollout_forward_is_sb3s_forward(env_id: str, kwargs: dict) -> None:
    """On the CPU, an MLP policy on Box observations gets the NumPy forward (weights laid out once per rollout):
    SB3's values and log-probabilities up to float32 rounding, and, for a Gaussian, SB3's actions from the same
    torch seed; its observations are NumPy, as the rollout loop holds them."""
    model = TRPOPlus("MlpPolicy", env_id, n_steps=64, seed=0, **kwargs)
    perturb_observation_statistics(model, required=False)
    forward = fast_paths.rollout_forward(planned(model))
    assert not isinstance(forward, fast_paths.Declined) and getattr(forward, "takes_numpy", False)
    layers = [fast_rollout._numpy_layers(chain) for chain in (planned(model).actor, planned(model).critic)]
    same_depth = "vf" not in str(kwargs)  # actor and critic as one block chain unless their depths differ
    assert (fast_rollout._merged_layers(*layers) is not None) == same_depth
    raw = np.stack([model.observation_space.sample() for _ in range(512)])
    obs = th.as_tensor(raw, device=model.device)
    th.manual_seed(1)
    actions, values, log_prob = forward(raw)
    th.manual_seed(1)
    with th.no_grad():
        expected_actions, expected_values, _ = model.policy(obs)
        assert th.allclose(values, expected_values, atol=1e-5)
        distribution = model.policy.get_distribution(obs)
        assert th.allclose(values, model.policy.predict_values(obs), atol=1e-5)
        assert th.allclose(log_prob, distribution.log_prob(actions), atol=1e-4)
    if env_id == "Pendulum-v1":
        assert th.allclose(actions, expected_actions, atol=1e-5)
    for broken in (np.nan, np.inf):  # never clipped into a plausible observation
        with pytest.raises(NonFiniteObservationError):
            forward(np.full_like(raw[:2], broken))


def test_numpy_rollout_forward_declines_images_dicts_and_many_envs() -> None:
    from stable_baselines3.common.envs import SimpleMultiObsEnv

    image = TRPOPlus("CnnPolicy", FakeImageEnv(screen_height=36, screen_width=36), n_steps=64)
    multi = TRPOPlus("MultiInputPolicy", SimpleMultiObsEnv(), n_steps=64)
    for model in (image, multi):
        assert fast_rollout._numpy_feature_map(planned(model)) is None
    many = TRPOPlus("MlpPolicy", "Pendulum-v1", n_steps=64)  # many envs: torch's products are the faster ones
    forward = fast_paths.rollout_forward(planned(many), n_envs=fast_paths.NUMPY_MAX_ENVS + 1)
    assert not isinstance(forward, fast_paths.Declined) and not getattr(forward, "takes_numpy", False)
    assert getattr(fast_paths.rollout_forward(planned(many), n_envs=fast_paths.NUMPY_MAX_ENVS), "takes_numpy", False)


FVP_CASES = {
    "pendulum": ("Pendulum-v1", {}),
    "cartpole": ("CartPole-v1", {}),
    "multidiscrete": (lambda: IdentityEnvMultiDiscrete(3), {}),
    "multibinary": (lambda: IdentityEnvMultiBinary(3), {}),
}


@pytest.mark.parametrize("case", sorted(FVP_CASES))
def test_fisher_vector_product_matches_the_autograd_one(case: str) -> None:
    env, kwargs = FVP_CASES[case]
    model = TRPOPlus("MlpPolicy", env if isinstance(env, str) else env(), n_steps=128, seed=0, **kwargs)
    perturb_observation_statistics(model, required=isinstance(env, str))  # the identity envs' spaces are discrete
    collect(model)
    obs, actions, _old_log_prob, _ = batch(model)
    all_params = list(model.policy.parameters())
    distribution = model._distribution(obs)
    grads = th.autograd.grad(distribution.log_prob(actions).sum(), all_params, retain_graph=True, allow_unused=True)
    actor = [p for p, g in zip(all_params, grads, strict=True) if g is not None]
    closed_form = fast_paths.fisher_vector_product(planned(model), obs, actor, model._fisher_damping(), distribution)
    assert closed_form is not None
    ordered, fast = closed_form
    generic = model._autograd_fisher_vector_product(obs, distribution, ordered)
    for seed in range(2):
        v = th.randn(sum(p.numel() for p in ordered), generator=th.Generator().manual_seed(seed)).to(model.device)
        expected = generic(v)
        assert (fast(v) - expected).norm() / expected.norm() < 1e-4


def test_fisher_vector_product_declines_an_extractor_with_parameters() -> None:
    model = TRPOPlus("MlpPolicy", "Pendulum-v1", n_steps=64, policy_kwargs={"features_extractor_class": SharedLinearExtractor})
    collect(model)
    obs = batch(model)[0]
    critic = {id(p) for p in [*model.policy.value_net.parameters(), *model.policy.mlp_extractor.value_net.parameters()]}
    actor = [p for p in model.policy.parameters() if id(p) not in critic]
    declined = fast_paths.fisher_vector_product(planned(model), obs, actor, 0.1, model._distribution(obs))
    assert isinstance(declined, fast_paths.Declined) and declined.path == "Fisher-vector product"


def fitted_critic(fast: bool, optimizer_kwargs: dict | None = None) -> TRPOPlus:
    """A model after one update whose actor step was turned off (zero radius): only the critic moved. The rollout
    is SB3's own loop's in both cases (the fast one equals it up to float rounding), so only the fit differs."""
    policy_kwargs = {} if optimizer_kwargs is None else {"optimizer_kwargs": optimizer_kwargs}
    model = TRPOPlus(
        "MlpPolicy",
        "Pendulum-v1",
        n_steps=128,
        batch_size=32,
        n_critic_updates=3,
        target_kl=lambda _: 0.0,
        fast_paths=fast,
        policy_kwargs=policy_kwargs,
        seed=0,
    )
    perturb_observation_statistics(model)
    model.fast_paths = False  # SB3's rollout loop for both
    collect(model)
    model.fast_paths = fast
    model.train()
    assert model.value_normalizer is not None  # fitted on the normalized return scale (PopArt)
    return model


def test_critic_fit_matches_the_generic_one() -> None:
    fast, generic = fitted_critic(True), fitted_critic(False)
    assert fast.policy.optimizer.param_groups[0]["fused"] and not generic.policy.optimizer.param_groups[0]["fused"]
    # the closed-form gradient + functional Adam on a flat vector is the same algorithm, up to rounding
    fast_vector = parameters_to_vector(fast.policy.parameters())
    assert th.allclose(fast_vector, parameters_to_vector(generic.policy.parameters()), atol=1e-5)
    before = TRPOPlus("MlpPolicy", "Pendulum-v1", n_steps=128, seed=0).policy.value_net.weight
    assert not th.allclose(fast.policy.value_net.weight, before)
    # and the optimizer's state is kept where SB3 saves it, the step count where torch keeps it
    generic_params = dict(generic.policy.named_parameters())
    for name, param in fast.policy.named_parameters():
        if not name.startswith(("value_net", "mlp_extractor.value_net")):
            continue
        state, generic_state = fast.policy.optimizer.state[param], generic.policy.optimizer.state[generic_params[name]]
        assert float(state["step"]) == float(generic_state["step"]) == 3 * 4
        assert state["step"].device == param.device  # fused Adam keeps it beside the parameter
        assert th.allclose(state["exp_avg"], generic_state["exp_avg"], atol=1e-6)
        assert th.allclose(state["exp_avg_sq"], generic_state["exp_avg_sq"], atol=1e-7)


def test_critic_features_computed_once_change_nothing() -> None:
    """With an optimizer the closed form does not serve, the fast path only computes the critic's features once per
    update: bit for bit what SB3's per-minibatch ``predict_values`` gives."""
    kwargs = {"weight_decay": 1e-4, "foreach": False}
    fast, generic = fitted_critic(True, kwargs), fitted_critic(False, kwargs)
    assert th.equal(parameters_to_vector(fast.policy.parameters()), parameters_to_vector(generic.policy.parameters()))
    assert not th.equal(fast.policy.value_net.weight, TRPOPlus("MlpPolicy", "Pendulum-v1", seed=0).policy.value_net.weight)


def test_non_fused_adam_step_stays_on_the_cpu() -> None:
    """torch keeps a non-fused Adam's step count on the CPU: the closed-form critic fit writes it back there."""
    model = fitted_critic(True, {"foreach": False})
    assert fast_paths.plain_adam(model.policy.optimizer) and not model.policy.optimizer.param_groups[0]["fused"]
    for param in model.policy.value_net.parameters():
        assert model.policy.optimizer.state[param]["step"].device == th.device("cpu")


def test_reason_is_printed_once_at_verbose_1(capsys: pytest.CaptureFixture) -> None:
    kwargs = {"n_steps": 64, "batch_size": 64, "policy_kwargs": {"activation_fn": nn.Sigmoid}, "verbose": 1}
    TRPOPlus("MlpPolicy", "Pendulum-v1", seed=0, **kwargs).learn(192)  # type: ignore[arg-type]
    message = "for SB3's plain MLP actor-critic; here: the actor or critic head is not a chain"
    assert capsys.readouterr().out.count(message) == 1
    TRPOPlus("MlpPolicy", "Pendulum-v1", fast_paths=False, **kwargs).learn(128)  # type: ignore[arg-type]
    assert "fast paths" not in capsys.readouterr().out


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fast_paths": "yes"}, "Invalid fast_paths='yes': expected True or False"),
        ({"torch_threads": 0}, "Invalid torch_threads=0"),
        ({"torch_threads": "all"}, "Invalid torch_threads='all'"),
    ],
)
def test_bad_switches_name_the_argument(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        TRPOPlus("MlpPolicy", "Pendulum-v1", **kwargs)


class ThreadsSeen(BaseCallback):
    def __init__(self) -> None:
        super().__init__()
        self.seen: set[int] = set()

    def _on_step(self) -> bool:
        self.seen.add(th.get_num_threads())
        return True


def threads_while_learning(
    monkeypatch: pytest.MonkeyPatch, policy: str, env_id: str, algorithm: type = TRPOPlus, **kwargs
) -> tuple[set[int], int]:
    """The torch thread counts seen during ``learn()``, and the count afterwards, starting from 3 threads."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    previous = th.get_num_threads()
    th.set_num_threads(3)
    try:
        monkeypatch.setattr(threads_module, "_THREADS_AT_IMPORT", kwargs.pop("at_import", 3))
        callback = ThreadsSeen()
        algorithm(policy, env_id, n_steps=64, batch_size=64, **kwargs).learn(64, callback=callback)
        return callback.seen, th.get_num_threads()
    finally:
        th.set_num_threads(previous)


def test_threads_capped_for_mlp_policies_and_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    assert threads_while_learning(monkeypatch, "MlpPolicy", "Pendulum-v1") == ({1}, 3)
    assert threads_while_learning(monkeypatch, "MlpPolicy", "Pendulum-v1", torch_threads=2) == ({2}, 3)
    assert threads_while_learning(monkeypatch, "MlpPolicy", "Pendulum-v1", torch_threads=None) == ({3}, 3)
    # a count chosen after importing sb3_trpo_plus (torch.set_num_threads, the Zoo's --num-threads) is kept
    assert threads_while_learning(monkeypatch, "MlpPolicy", "Pendulum-v1", at_import=2) == ({3}, 3)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads_while_learning(monkeypatch, "MlpPolicy", "Pendulum-v1")[0] == {1}  # delenv'd inside: capped


def test_threads_capped_for_lstm_and_masked_policies(monkeypatch: pytest.MonkeyPatch) -> None:
    """The recurrent and masked families' small policies learn on one thread too (``torch_threads="auto"``)."""
    from sb3_contrib.common.envs import InvalidActionEnvDiscrete

    from sb3_trpo_plus import MaskableTRPOPlus, RecurrentTRPOPlus

    lstm = {"policy_kwargs": {"lstm_hidden_size": 8}}
    assert threads_while_learning(monkeypatch, "MlpLstmPolicy", "CartPole-v1", RecurrentTRPOPlus, **lstm) == ({1}, 3)
    env = InvalidActionEnvDiscrete(dim=4, n_invalid_actions=1)
    assert threads_while_learning(monkeypatch, "MlpPolicy", env, MaskableTRPOPlus) == ({1}, 3)  # type: ignore[arg-type]


def test_threads_left_alone_for_cnn_policies(monkeypatch: pytest.MonkeyPatch) -> None:
    env = FakeImageEnv(screen_height=36, screen_width=36, n_channels=1)
    assert threads_while_learning(monkeypatch, "CnnPolicy", env) == ({3}, 3)  # type: ignore[arg-type]


def test_threads_env_variable_counts_as_a_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MKL_NUM_THREADS", "3")
    model = TRPOPlus("MlpPolicy", "Pendulum-v1", n_steps=64)
    assert thread_cap(model.torch_threads, model.policy) is None
    monkeypatch.delenv("MKL_NUM_THREADS")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads_module, "_THREADS_AT_IMPORT", th.get_num_threads())
    assert thread_cap(model.torch_threads, model.policy) == 1


def test_kl_divergence_loss_is_sb3_contribs_quantity() -> None:
    """``train/kl_divergence_loss`` is SB3's kl_divergence(new, old) averaged over states and action dimensions (as
    sb3-contrib logs it); ``train/kl`` is the joint KL(old || new) the trust region bounds."""
    model = TRPOPlus(
        "MlpPolicy", IdentityEnvBox(low=-1, high=1, ep_length=64), n_steps=128, n_critic_updates=0, target_kl=0.05, seed=0
    )
    collect(model)
    obs = batch(model)[0]
    with th.no_grad():
        old = model._distribution(obs)
    model.train()
    logged = model.logger.name_to_value
    assert logged["train/is_line_search_success"] == 1.0
    with th.no_grad():
        new = model._distribution(obs)
        assert logged["train/kl_divergence_loss"] == pytest.approx(kl_divergence(new, old).mean().item(), rel=1e-5)
        assert logged["train/kl"] == pytest.approx(joint_kl(old, new).mean().item(), rel=1e-4)
    assert logged["train/kl"] != pytest.approx(logged["train/kl_divergence_loss"], rel=1e-3)


def test_switches_are_saved_with_the_model(tmp_path) -> None:  # type: ignore[no-untyped-def]
    model = TRPOPlus("MlpPolicy", "Pendulum-v1", n_steps=64, batch_size=64, fast_paths=False, torch_threads=None)
    model.learn(64)
    model.save(tmp_path / "model")
    loaded = TRPOPlus.load(tmp_path / "model", env=model.get_env())
    assert (loaded.fast_paths, loaded.torch_threads) == (False, None)
    assert not loaded.policy.optimizer.param_groups[0].get("fused")
    loaded.learn(64, reset_num_timesteps=False)


def test_decided_once_per_rollout_and_once_per_update(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fast paths' plan is decided once per rollout and once per ``train()`` (the policy step and the critic's
    fit share it), not once per path."""
    calls = []
    decide = fast_paths.decide
    monkeypatch.setattr(fast_paths, "decide", lambda policy: calls.append(policy) or decide(policy))
    model = TRPOPlus("MlpPolicy", "Pendulum-v1", n_steps=64, batch_size=64, seed=0)
    model.learn(3 * 64)
    assert len(calls) == 3 + 3


def test_each_decline_is_said_once(capsys: pytest.CaptureFixture[str]) -> None:
    """At ``verbose=1`` a path that declines the policy says why, once: gSDE takes the generic rollout loop and
    Fisher-vector product, while the critic's fit stays fast."""
    model = TRPOPlus("MlpPolicy", "Pendulum-v1", n_steps=64, batch_size=64, use_sde=True, verbose=1, seed=0)
    model.learn(3 * 64)
    out = capsys.readouterr().out
    generic = "runs on the generic (autograd) path, which serves any policy (its fast path gives the same result, faster"
    assert out.count(f"the rollout forward {generic}, in other cases; here: StateDependentNoiseDistribution") == 1
    assert out.count(f"the Fisher-vector product {generic}, in other cases; here: StateDependentNoiseDistribution") == 1
    assert "critic fit runs on the generic" not in out
