"""Pure tensor functions of the natural-gradient (TRPO) step.

Notation (Schulman et al., 2015, "Trust Region Policy Optimization", https://arxiv.org/abs/1502.05477):
``g`` the gradient of the surrogate objective ``L``, ``F`` the Fisher information of the policy
(the Hessian of the mean KL at the old parameters), ``lambda`` the damping, ``delta`` the trust-region
radius (``target_kl``), ``s`` the search direction that solves ``(F + lambda I) s = g``.

Nothing here knows about Stable-Baselines3: the functions take tensors, parameters and callables,
so each one is tested against dense linear algebra in ``tests/test_natural_gradient.py``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch as th
from torch import nn

DistParams = tuple[th.Tensor, ...]
MatVec = Callable[[th.Tensor], th.Tensor]


def flat_grad(
    output: th.Tensor,
    params: Sequence[nn.Parameter],
    retain_graph: bool = False,
    create_graph: bool = False,
) -> th.Tensor:
    """
    Gradient of a scalar with respect to ``params``, flattened into one vector
    (zeros for parameters the output does not depend on).

    :param output: scalar tensor
    :param params: parameters to differentiate with respect to
    :param retain_graph: keep the graph for later backward passes
    :param create_graph: build a graph of the gradient (for higher derivatives)
    :return: vector of size ``sum(p.numel() for p in params)``
    """
    grads = th.autograd.grad(output, params, retain_graph=retain_graph, create_graph=create_graph, allow_unused=True)
    return th.cat([(th.zeros_like(p) if g is None else g).reshape(-1) for g, p in zip(grads, params, strict=True)])


def _split_like(vector: th.Tensor, tensors: Sequence[th.Tensor]) -> list[th.Tensor]:
    chunks = th.split(vector, [t.numel() for t in tensors])
    return [chunk.view_as(t) for chunk, t in zip(chunks, tensors, strict=True)]


def gauss_newton_fvp(
    eta: DistParams,
    params: Sequence[nn.Parameter],
    metric: Callable[[DistParams], DistParams],
    damping: float = 0.0,
) -> MatVec:
    r"""
    Batched Fisher-vector product in Gauss-Newton form, for the whole batch at once:

    .. math:: (F + \lambda I) v = \frac{1}{N} \sum_i J_i^\top M_i J_i v + \lambda v

    where :math:`J_i` is the Jacobian of the distribution parameters :math:`\eta_i` of state ``i``
    with respect to ``params`` and :math:`M_i` the Fisher of the distribution in :math:`\eta`
    (see :mod:`sb3_trpo_plus.fisher`). At the old parameters this equals the Hessian of the mean
    KL divergence (Martens, 2020, "New insights and perspectives on the natural gradient method", §9),
    without its second derivatives.

    :math:`J^\top u` is one vector-Jacobian product through the retained forward graph of ``eta``.
    :math:`J v` is obtained from the same graph by the double-vjp trick (as
    ``torch.autograd.functional.jvp`` does): the linear map :math:`w \mapsto J^\top w` is built once
    with a graph, and differentiating :math:`\langle J^\top w, v\rangle` with respect to :math:`w`
    gives :math:`J v`. Both graphs are built once per update and reused by every call, so a product
    costs two linear backward passes and no forward pass; the KL is never differentiated twice.

    :param eta: distribution parameters of the batch, attached to the graph of ``params``;
        every tensor's first dimension is the batch size ``N``
    :param params: the parameters the distribution depends on
    :param metric: ``u -> M u`` per state, for tangents shaped like ``eta``
    :param damping: :math:`\lambda \ge 0` added on the diagonal
    :return: the function ``v -> (F + lambda I) v`` on flat vectors
    """
    n_samples = eta[0].shape[0]
    probes = tuple(th.zeros_like(e, requires_grad=True) for e in eta)
    # J^T w as a differentiable function of the probe w (linear in w).
    jt_probe = th.autograd.grad(eta, params, probes, create_graph=True, allow_unused=True)
    linked = [(j, p) for j, p in zip(jt_probe, params, strict=True) if j is not None and j.requires_grad]
    jt_linked = [j for j, _ in linked]
    param_index = {id(p): i for i, p in enumerate(params)}
    linked_index = [param_index[id(p)] for _, p in linked]

    def fvp(vector: th.Tensor) -> th.Tensor:
        v_chunks = _split_like(vector, params)
        jv = th.autograd.grad(
            jt_linked,
            probes,
            [v_chunks[i] for i in linked_index],
            retain_graph=True,
            allow_unused=True,
        )
        jv = tuple(th.zeros_like(e) if t is None else t for t, e in zip(jv, eta, strict=True))
        m_jv = tuple(t / n_samples for t in metric(jv))
        jt_m_jv = th.autograd.grad(eta, params, m_jv, retain_graph=True, allow_unused=True)
        flat = th.cat([(th.zeros_like(p) if t is None else t).reshape(-1) for t, p in zip(jt_m_jv, params, strict=True)])
        return flat + damping * vector if damping else flat

    return fvp


def hessian_fvp(kl: th.Tensor, params: Sequence[nn.Parameter], damping: float = 0.0) -> MatVec:
    r"""
    Exact Hessian-vector product of the mean KL by double backward:
    :math:`(\nabla^2 \overline{KL} + \lambda I) v = \nabla (\nabla \overline{KL}^\top v) + \lambda v`.
    The fallback for action distributions with no analytic Fisher in :mod:`sb3_trpo_plus.fisher`
    (this is how ``sb3_contrib.TRPO`` computes every product).

    :param kl: scalar mean KL between the old (detached) and the current distribution
    :param params: the parameters the distribution depends on
    :param damping: :math:`\lambda \ge 0`
    :return: the function ``v -> (H + lambda I) v``
    """
    grad_kl = flat_grad(kl, params, retain_graph=True, create_graph=True)

    def fvp(vector: th.Tensor) -> th.Tensor:
        hv = flat_grad(grad_kl @ vector, params, retain_graph=True)
        return hv + damping * vector if damping else hv

    return fvp


@dataclass
class CGResult:
    """Outcome of :func:`conjugate_gradient`."""

    #: approximate solution of ``A x = b``
    x: th.Tensor
    #: number of matrix-vector products used
    iterations: int
    #: norm of the final residual ``b - A x``
    residual_norm: float
    #: ``x^T A x``, obtained for free as ``x^T (b - r)``
    x_dot_ax: float


def conjugate_gradient(matvec: MatVec, b: th.Tensor, max_iter: int, residual_tol: float = 1e-10) -> CGResult:
    r"""
    Conjugate gradient for a symmetric positive-definite system :math:`A x = b`, from :math:`x_0 = 0`
    (Nocedal & Wright, "Numerical Optimization", Algorithm 5.2).

    Stops after ``max_iter`` products, when :math:`r^\top r \le` ``residual_tol``, or when the
    curvature :math:`p^\top A p` along a direction is not positive and finite (the system is then
    not SPD along it and the iterate so far is returned).

    :param matvec: ``v -> A v``
    :param b: right-hand side
    :param max_iter: maximum number of products with ``A`` (>= 1)
    :param residual_tol: tolerance on the squared residual norm
    :return: the solution, iterations used, residual norm and ``x^T A x``
    """
    x = th.zeros_like(b)
    r = b.clone()
    p = b.clone()
    r_dot_r = float(r @ r)
    iterations = 0
    for _ in range(max_iter):
        if r_dot_r <= residual_tol:
            break
        ap = matvec(p)
        curvature = float(p @ ap)
        iterations += 1
        if not (math.isfinite(curvature) and curvature > 0.0):
            break
        alpha = r_dot_r / curvature
        x.add_(p, alpha=alpha)
        r.sub_(ap, alpha=alpha)
        new_r_dot_r = float(r @ r)
        p.mul_(new_r_dot_r / r_dot_r).add_(r)
        r_dot_r = new_r_dot_r
    return CGResult(x=x, iterations=iterations, residual_norm=math.sqrt(r_dot_r), x_dot_ax=float(x @ (b - r)))


def max_step_size(curvature: float, target_kl: float) -> float:
    r"""
    Largest step along a direction :math:`s` that keeps the quadratic model of the KL within the
    trust region: :math:`\beta = \sqrt{2 \delta / s^\top (F + \lambda I) s}`.

    :param curvature: :math:`s^\top (F + \lambda I) s`
    :param target_kl: trust-region radius :math:`\delta > 0`
    :return: :math:`\beta`, or ``0.0`` (no step) when the curvature is not positive and finite
    """
    if not (math.isfinite(curvature) and curvature > 0.0):
        return 0.0
    beta = math.sqrt(2.0 * target_kl / curvature)
    return beta if math.isfinite(beta) else 0.0


@dataclass
class LineSearchResult:
    """Outcome of :func:`backtracking_line_search`."""

    #: parameters to keep: the accepted candidate, or the old parameters themselves
    theta: th.Tensor
    #: whether a candidate was accepted
    accepted: bool
    #: number of candidates evaluated
    steps: int
    #: fraction of the full step taken (``shrinking_factor ** j``; 0 when rejected)
    step_fraction: float
    #: surrogate objective at ``theta``
    surrogate: float
    #: mean KL between the old parameters and ``theta`` (0 when rejected)
    kl: float


def backtracking_line_search(
    evaluate: Callable[[th.Tensor], tuple[float, float]],
    theta_old: th.Tensor,
    full_step: th.Tensor,
    surrogate_old: float,
    max_kl: float,
    shrinking_factor: float = 0.8,
    max_iter: int = 10,
    expected_improvement: float = 0.0,
    accept_ratio: float = 0.0,
) -> LineSearchResult:
    r"""
    Backtracking line search on :math:`\theta_j = \theta_{old} + \alpha^j \Delta`, ``j = 0 .. max_iter - 1``
    (Schulman et al., 2015, Appendix C). The first candidate is accepted whose surrogate and KL are
    finite, whose KL is at most ``max_kl`` and whose surrogate improves on ``surrogate_old`` by more
    than ``accept_ratio`` times the expected improvement :math:`\alpha^j g^\top \Delta`.
    When none is accepted, ``theta`` is ``theta_old`` itself (not a recomputed copy), so the caller
    restores the parameters bit for bit.

    :param evaluate: ``theta -> (surrogate, kl)`` for a candidate flat parameter vector
    :param theta_old: flat parameters before the step
    :param full_step: :math:`\Delta = \beta s`
    :param surrogate_old: surrogate objective at ``theta_old``
    :param max_kl: trust-region radius :math:`\delta`
    :param shrinking_factor: :math:`\alpha \in (0, 1)`
    :param max_iter: number of candidates to try (>= 1)
    :param expected_improvement: :math:`g^\top \Delta`, the linear model's gain for the full step
    :param accept_ratio: required fraction of the expected improvement (0: any improvement)
    :return: the parameters to keep and what the search saw
    """
    fraction = 1.0
    for j in range(max_iter):
        theta = theta_old + fraction * full_step
        surrogate, kl = evaluate(theta)
        improvement = surrogate - surrogate_old
        if (
            math.isfinite(surrogate)
            and math.isfinite(kl)
            and kl <= max_kl
            and improvement > 0.0
            and improvement >= accept_ratio * fraction * expected_improvement
        ):
            return LineSearchResult(theta, True, j + 1, fraction, surrogate, kl)
        fraction *= shrinking_factor
    return LineSearchResult(theta_old, False, max_iter, 0.0, surrogate_old, 0.0)
