"""The MLP fast paths against autograd."""

from __future__ import annotations

import itertools

import pytest
import torch as th
from torch import nn

from sb3_trpo_plus.linear_chain import ChainMseGradient, LinearChain, chain_fisher_vector_product


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
    assert chain.parameters == [*body.parameters(), *head.parameters()]
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
    assert th.allclose(chain.forward(x).output, head(body(x)))


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

    fvp = chain_fisher_vector_product(chain, chain.forward(x), metric)
    params = chain.parameters
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
    flat = th.cat([p.detach().reshape(-1) for p in chain.parameters])
    buffer = th.empty_like(flat)
    gradient = ChainMseGradient(chain, flat, buffer)
    loss = gradient(x, targets)
    expected_loss = nn.functional.mse_loss(head(body(x)).flatten(), targets)
    expected = th.cat([g.reshape(-1) for g in th.autograd.grad(expected_loss, chain.parameters)])
    assert th.allclose(loss, expected_loss)
    assert th.allclose(buffer, expected, rtol=1e-10, atol=1e-12)
    # the flat parameters are read at every call: an in-place update is seen
    flat.mul_(0.5)
    with th.no_grad():
        for param in chain.parameters:
            param.mul_(0.5)
    gradient(x, targets)
    expected_loss = nn.functional.mse_loss(head(body(x)).flatten(), targets)
    expected = th.cat([g.reshape(-1) for g in th.autograd.grad(expected_loss, chain.parameters)])
    assert th.allclose(buffer, expected, rtol=1e-10, atol=1e-12)
