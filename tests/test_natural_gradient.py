"""Tier 1: the pure functions of the natural-gradient step against dense linear algebra."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common import policies as sb3_policies

from sb3_trpo_plus import TRPOPlus
from sb3_trpo_plus.fisher import fisher_for, joint_kl
from sb3_trpo_plus.natural_gradient import (
    backtracking_line_search,
    conjugate_gradient,
    flat_grad,
    gauss_newton_fvp,
    hessian_fvp,
    max_step_size,
)
from tests.helpers import SharedLinearExtractor


def random_spd(n: int, seed: int, condition: float = 100.0) -> th.Tensor:
    gen = th.Generator().manual_seed(seed)
    q, _ = th.linalg.qr(th.randn(n, n, generator=gen, dtype=th.float64))
    eigenvalues = th.logspace(0, math.log10(condition), n, dtype=th.float64)
    return q @ th.diag(eigenvalues) @ q.T


# ----------------------------------------------------------------------------- conjugate gradient
@pytest.mark.parametrize("n, seed", [(5, 0), (20, 1), (50, 2)])
def test_conjugate_gradient_solves_spd_systems(n: int, seed: int) -> None:
    a = random_spd(n, seed)
    b = th.randn(n, generator=th.Generator().manual_seed(seed + 100), dtype=th.float64)
    result = conjugate_gradient(lambda v: a @ v, b, max_iter=2 * n, residual_tol=1e-20)
    expected = th.linalg.solve(a, b)
    assert th.allclose(result.x, expected, rtol=1e-8, atol=1e-10)
    assert result.iterations <= 2 * n
    assert result.residual_norm < 1e-9
    assert result.x_dot_ax == pytest.approx(float(result.x @ a @ result.x), rel=1e-8)


def test_conjugate_gradient_respects_max_iter_and_reports_quadratic_form() -> None:
    a = random_spd(30, 3, condition=1e4)
    b = th.ones(30, dtype=th.float64)
    result = conjugate_gradient(lambda v: a @ v, b, max_iter=4, residual_tol=0.0)
    assert result.iterations == 4
    assert result.residual_norm > 1e-6  # not converged in 4 steps on a badly conditioned system
    assert result.x_dot_ax == pytest.approx(float(result.x @ a @ result.x), rel=1e-8)
    assert result.residual_norm == pytest.approx(float((b - a @ result.x).norm()), rel=1e-6)


def test_conjugate_gradient_stops_on_non_positive_curvature() -> None:
    a = th.diag(th.tensor([1.0, -1.0], dtype=th.float64))
    result = conjugate_gradient(lambda v: a @ v, th.tensor([0.0, 1.0], dtype=th.float64), max_iter=10)
    assert result.iterations == 1
    assert th.equal(result.x, th.zeros(2, dtype=th.float64))


def test_conjugate_gradient_stops_on_nan_curvature() -> None:
    result = conjugate_gradient(lambda v: v * float("nan"), th.ones(3), max_iter=10)
    assert th.isfinite(result.x).all()
    assert result.iterations == 1


def test_conjugate_gradient_zero_rhs_takes_no_step() -> None:
    result = conjugate_gradient(lambda v: v, th.zeros(4), max_iter=10)
    assert result.iterations == 0
    assert th.equal(result.x, th.zeros(4))
    assert result.x_dot_ax == 0.0


# ----------------------------------------------------------------------------- step size
def test_max_step_size_formula_and_guards() -> None:
    assert max_step_size(curvature=8.0, target_kl=0.01) == pytest.approx(math.sqrt(2 * 0.01 / 8.0))
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        assert max_step_size(bad, 0.01) == 0.0


# ----------------------------------------------------------------------------- line search
def quadratic_problem(theta: th.Tensor) -> tuple[float, float]:
    """Surrogate ``sum(theta)``, 'KL' ``|theta|^2``: improving means moving along ones, bounded by the KL."""
    return float(theta.sum()), float((theta**2).sum())


def test_line_search_accepts_first_candidate_inside_trust_region() -> None:
    theta_old = th.zeros(2)
    result = backtracking_line_search(
        quadratic_problem, theta_old, th.ones(2), 0.0, max_kl=0.5, shrinking_factor=0.5, max_iter=10
    )
    # full step: KL 2 > 0.5; half step: KL 0.5 <= 0.5 -> accepted at j = 1
    assert result.accepted
    assert result.steps == 2
    assert result.step_fraction == 0.5
    assert result.kl == pytest.approx(0.5)
    assert th.allclose(result.theta, th.full((2,), 0.5))


def test_line_search_failure_returns_old_parameters_object() -> None:
    theta_old = th.tensor([0.1, 0.2])
    result = backtracking_line_search(
        quadratic_problem, theta_old, -th.ones(2), 0.3, max_kl=10.0, shrinking_factor=0.5, max_iter=5
    )
    assert not result.accepted
    assert result.theta is theta_old
    assert result.step_fraction == 0.0
    assert result.steps == 5


def test_line_search_rejects_non_finite_candidates() -> None:
    calls = []

    def evaluate(theta: th.Tensor) -> tuple[float, float]:
        calls.append(theta.clone())
        if len(calls) == 1:
            return float("nan"), 0.0
        if len(calls) == 2:
            return 1.0, float("inf")
        return quadratic_problem(theta)

    result = backtracking_line_search(evaluate, th.zeros(2), th.ones(2), 0.0, max_kl=10.0, shrinking_factor=0.5)
    assert result.accepted
    assert result.steps == 3
    assert result.step_fraction == 0.25


def test_line_search_accept_ratio_requires_fraction_of_expected_improvement() -> None:
    # actual improvement of the full step is 2, expected 4: rejected at ratio 0.6, accepted at ratio 0.4
    def evaluate(theta: th.Tensor) -> tuple[float, float]:
        return float(theta.sum()), 0.0

    strict = backtracking_line_search(
        evaluate, th.zeros(2), th.ones(2), 0.0, 1.0, 0.5, 1, expected_improvement=4.0, accept_ratio=0.6
    )
    lenient = backtracking_line_search(
        evaluate, th.zeros(2), th.ones(2), 0.0, 1.0, 0.5, 1, expected_improvement=4.0, accept_ratio=0.4
    )
    assert not strict.accepted
    assert lenient.accepted


# ----------------------------------------------------------------------------- Fisher-vector products
class SpaceEnv(gym.Env):
    """A minimal env with the given action space (only used to build policies)."""

    def __init__(self, action_space: spaces.Space):
        self.observation_space = spaces.Box(-1.0, 1.0, (5,), np.float32)
        self.action_space = action_space

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, False, False, {}


SMALL_NET = {"net_arch": {"pi": [8, 8], "vf": [8]}}
POLICY_CASES = {
    "box": (spaces.Box(-1, 1, (3,), np.float32), {}, SMALL_NET),
    "discrete": (spaces.Discrete(4), {}, SMALL_NET),
    "multidiscrete": (spaces.MultiDiscrete([3, 2, 4]), {}, SMALL_NET),
    "multibinary": (spaces.MultiBinary(3), {}, SMALL_NET),
    "gsde": (spaces.Box(-1, 1, (2,), np.float32), {"use_sde": True}, SMALL_NET),
    "gsde_full_learn_features": (
        spaces.Box(-1, 1, (2,), np.float32),
        {"use_sde": True},
        {**SMALL_NET, "full_std": False, "use_expln": True, "log_std_init": -1.0},
    ),
    "box_shared_extractor": (
        spaces.Box(-1, 1, (2,), np.float32),
        {},
        {**SMALL_NET, "features_extractor_class": SharedLinearExtractor, "share_features_extractor": True},
    ),
    "discrete_shared_extractor": (
        spaces.Discrete(3),
        {},
        {**SMALL_NET, "features_extractor_class": SharedLinearExtractor, "share_features_extractor": True},
    ),
}


@pytest.fixture
def float64_observations(monkeypatch: pytest.MonkeyPatch) -> None:
    """SB3 casts Box observations to float32; keep them in float64 so the comparison is not limited by rounding."""
    monkeypatch.setattr(sb3_policies, "preprocess_obs", lambda obs, *args, **kwargs: obs.double())


def make_model(case: str, **kwargs) -> TRPOPlus:
    action_space, algo_kwargs, policy_kwargs = POLICY_CASES[case]
    return TRPOPlus(
        "MlpPolicy",
        SpaceEnv(action_space),
        n_steps=64,
        policy_kwargs=policy_kwargs,
        seed=0,
        device="cpu",
        **algo_kwargs,
        **kwargs,
    )


def perturb_policy(model: TRPOPlus, seed: int) -> None:
    """Move the weights off their initialisation so that every Jacobian block is non-trivial."""
    gen = th.Generator().manual_seed(seed)
    with th.no_grad():
        for param in model.policy.parameters():
            param.add_(0.3 * th.randn(param.shape, generator=gen, dtype=param.dtype))


@pytest.mark.usefixtures("float64_observations")
@pytest.mark.parametrize("case", sorted(POLICY_CASES))
def test_gauss_newton_fvp_equals_exact_kl_hessian(case: str) -> None:
    model = make_model(case)
    model.policy.double()
    perturb_policy(model, seed=1)
    obs = th.rand(200, 5, dtype=th.float64, generator=th.Generator().manual_seed(2)) * 2 - 1

    distribution = model._distribution(obs)
    with th.no_grad():
        old = model._distribution(obs)
    fisher = fisher_for(model.policy.action_dist)
    assert fisher is not None
    eta = fisher.parameters(distribution)
    actions = th.as_tensor(np.stack([model.action_space.sample() for _ in range(200)])).double()
    log_prob = distribution.log_prob(actions)
    all_params = list(model.policy.parameters())
    grads = th.autograd.grad(log_prob.sum(), all_params, retain_graph=True, allow_unused=True)
    actor_params = [p for p, g in zip(all_params, grads, strict=True) if g is not None]
    # the actor is found from what the distribution depends on: never the value head
    assert not any(p is q for p in actor_params for q in model.policy.value_net.parameters())
    if "shared" in case:
        assert any(p is q for p in actor_params for q in model.policy.features_extractor.parameters())

    eta_old = tuple(e.detach() for e in eta)
    gn = gauss_newton_fvp(eta, actor_params, lambda u: fisher.metric(eta_old, u), damping=0.0)
    exact = hessian_fvp(joint_kl(old, distribution).mean(), actor_params, damping=0.0)
    gen = th.Generator().manual_seed(3)
    n_params = sum(p.numel() for p in actor_params)
    for _ in range(3):
        v = th.randn(n_params, generator=gen, dtype=th.float64)
        expected = exact(v)
        got = gn(v)
        assert expected.norm() > 1e-6
        assert (got - expected).norm() / expected.norm() < 1e-5


@pytest.mark.usefixtures("float64_observations")
def test_gauss_newton_fvp_damping_and_symmetry() -> None:
    model = make_model("box")
    model.policy.double()
    perturb_policy(model, seed=4)
    obs = th.rand(50, 5, dtype=th.float64, generator=th.Generator().manual_seed(5))
    distribution = model._distribution(obs)
    fisher = fisher_for(model.policy.action_dist)
    assert fisher is not None
    eta = fisher.parameters(distribution)
    eta_old = tuple(e.detach() for e in eta)
    params = list(model.policy.mlp_extractor.policy_net.parameters()) + list(model.policy.action_net.parameters())
    params.append(model.policy.log_std)
    fvp0 = gauss_newton_fvp(eta, params, lambda u: fisher.metric(eta_old, u), damping=0.0)
    fvp1 = gauss_newton_fvp(eta, params, lambda u: fisher.metric(eta_old, u), damping=0.5)
    n = sum(p.numel() for p in params)
    dense = th.stack([fvp0(e) for e in th.eye(n, dtype=th.float64)], dim=1)
    assert th.allclose(dense, dense.T, atol=1e-10)
    assert th.linalg.eigvalsh(dense).min() > -1e-10  # positive semi-definite
    v = th.randn(n, dtype=th.float64)
    assert th.allclose(fvp1(v), fvp0(v) + 0.5 * v)


def test_fisher_of_state_independent_log_std_is_closed_form() -> None:
    """For a Gaussian with a state-independent log std, the log-std block of F is exactly 2 I."""
    model = make_model("box")
    obs = th.rand(32, 5)
    distribution = model._distribution(obs)
    fisher = fisher_for(model.policy.action_dist)
    assert fisher is not None
    eta = fisher.parameters(distribution)
    eta_old = tuple(e.detach() for e in eta)
    fvp = gauss_newton_fvp(eta, [model.policy.log_std], lambda u: fisher.metric(eta_old, u))
    v = th.tensor([1.0, -2.0, 0.5])
    assert th.allclose(fvp(v), 2.0 * v)


def test_flat_grad_zero_for_unused_parameters() -> None:
    a = th.nn.Parameter(th.ones(2))
    b = th.nn.Parameter(th.ones(3))
    out = (a * 3).sum()
    assert th.equal(flat_grad(out, [a, b]), th.tensor([3.0, 3.0, 0.0, 0.0, 0.0]))


# ----------------------------------------------------------------------------- joint KL
def test_joint_kl_sums_over_action_dimensions() -> None:
    """Our KL is that of the whole distribution: d times sb3-contrib's per-dimension mean for d equal dims."""
    model = make_model("box")
    obs = th.rand(16, 5)
    with th.no_grad():
        old = model._distribution(obs)
        model.policy.log_std.add_(0.1)
        new = model._distribution(obs)
    per_dim = th.distributions.kl_divergence(old.distribution, new.distribution)
    assert per_dim.shape == (16, 3)
    assert th.allclose(joint_kl(old, new), per_dim.sum(dim=1))
    assert th.allclose(joint_kl(old, new).mean(), 3 * per_dim.mean())
