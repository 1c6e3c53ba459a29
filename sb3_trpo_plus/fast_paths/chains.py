"""The calculus of Linear chains: forward passes without autograd, Gauss-Newton Fisher-vector products and the
MSE gradient, written out with a handful of matrix products."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch as th
from torch import nn

# ------------------------------------------------------------------------------------------- the algebra
#: activations supported: the function, and its derivative written in terms of the activation's output ``h``
_ACTIVATIONS: dict[type[nn.Module], tuple[Callable[[th.Tensor], th.Tensor], Callable[[th.Tensor], th.Tensor]]] = {
    nn.Tanh: (th.tanh, lambda h: 1.0 - h * h),
    nn.ReLU: (th.relu, lambda h: (h > 0).to(h.dtype)),
}


@dataclass
class ChainCache:
    """What a forward pass of a :class:`LinearChain` keeps for its derivatives."""

    #: input of each linear layer (``h_{k-1}``)
    inputs: list[th.Tensor]
    #: derivative ``f'(z_k)`` of the activation after each linear layer (``None`` where there is none)
    derivatives: list[th.Tensor | None]
    #: the chain's output
    output: th.Tensor


def _split(vector: th.Tensor, like: Sequence[th.Tensor]) -> list[th.Tensor]:
    """Views of a flat vector shaped like the tensors ``like``."""
    chunks = th.split(vector, [t.numel() for t in like])
    return [chunk.view_as(t) for chunk, t in zip(chunks, like, strict=True)]


def _run_layers(layers: Sequence[tuple[th.Tensor, th.Tensor, type[nn.Module] | None]], x: th.Tensor, keep: bool) -> ChainCache:
    """
    The forward pass of a chain given as ``(weight, bias, activation)`` triples, without autograd.

    :param keep: keep each layer's input and activation derivative (for derivatives); else only the output
    """
    inputs: list[th.Tensor] = []
    derivatives: list[th.Tensor | None] = []
    h = x
    with th.no_grad():
        for weight, bias, activation in layers:
            if keep:
                inputs.append(h)
            h = th.addmm(bias, h, weight.t())
            function, derivative = _ACTIVATIONS.get(activation, (None, None))  # type: ignore[arg-type]
            if function is not None:
                h = function(h)
            if keep:
                derivatives.append(None if derivative is None else derivative(h))
    return ChainCache(inputs, derivatives, h)


class LinearChain:
    """
    A sequence of ``nn.Linear`` layers (with biases), each optionally followed by one supported elementwise
    activation (``Tanh``, ``ReLU``, ``Identity``), the last one without activation. Build it with
    :meth:`from_modules`, which returns ``None`` for anything else.
    """

    def __init__(self, linears: Sequence[nn.Linear], activations: Sequence[type[nn.Module] | None]):
        self.linears = list(linears)
        self.activations = list(activations)
        # Parameters looked up once: nn.Module attribute access costs more than a small matmul.
        self._layers = [
            (linear.weight, linear.bias, activation) for linear, activation in zip(self.linears, self.activations, strict=True)
        ]

    @classmethod
    def from_modules(cls, *modules: nn.Module) -> LinearChain | None:
        """
        The chain formed by ``modules`` (``nn.Sequential`` containers are flattened), or ``None`` when they are
        not Linear layers with biases and supported activations, ending with a Linear layer.

        :param modules: the modules applied one after the other
        :return: the chain, or ``None``
        """
        layers: list[nn.Module] = []
        for module in modules:
            layers.extend(module if type(module) is nn.Sequential else [module])
        linears: list[nn.Linear] = []
        activations: list[type[nn.Module] | None] = []
        for layer in layers:
            if type(layer) is nn.Linear and layer.bias is not None:
                linears.append(layer)
                activations.append(None)
            elif (type(layer) in _ACTIVATIONS or type(layer) is nn.Identity) and linears and activations[-1] is None:
                activations[-1] = type(layer)
            else:
                return None
        if not linears or activations[-1] not in (None, nn.Identity):
            return None
        return cls(linears, activations)

    @property
    def layer_params(self) -> list[nn.Parameter]:
        """``[W_1, b_1, W_2, b_2, ...]``, the order of every flat vector used here."""
        return [p for linear in self.linears for p in (linear.weight, linear.bias)]  # type: ignore[misc]

    def run(self, x: th.Tensor, keep: bool = False) -> ChainCache:
        """
        Forward pass without autograd.

        :param x: batch of inputs, shape ``(N, in_features)``
        :param keep: keep each layer's input and activation derivative (for :func:`chain_fisher_vector_product`)
        :return: the cache, whose ``output`` is the chain's output, shape ``(N, out_features)``
        """
        return _run_layers(self._layers, x, keep)

    def split(self, vector: th.Tensor) -> list[th.Tensor]:
        """Views of a flat vector shaped like :attr:`layer_params`."""
        return _split(vector, self.layer_params)


def chain_fisher_vector_product(
    chain: LinearChain, cache: ChainCache, output_metric: Callable[[th.Tensor], th.Tensor]
) -> Callable[[th.Tensor], th.Tensor]:
    r"""
    Gauss-Newton product :math:`v \mapsto \frac{1}{N} J^\top M J v` for the chain's parameters, where
    :math:`J` is the Jacobian of the chain's output and ``output_metric`` applies :math:`M` per sample.

    :math:`J v` propagates the tangent forward through the cached activations
    (:math:`dz_k = dW_k h_{k-1} + db_k + W_k\, dh_{k-1}`, :math:`dh_k = f'(z_k) \odot dz_k`) and
    :math:`J^\top u` back-propagates the cotangent (:math:`dW_k = \delta_k^\top h_{k-1}`,
    :math:`\delta_{k-1} = (\delta_k W_k) \odot f'(z_{k-1})`): about four matrix products per hidden layer, no
    autograd graph and no forward pass per product.

    :param chain: the chain
    :param cache: its forward pass on the batch with ``keep=True`` (at the parameters where the Fisher is taken)
    :param output_metric: ``u -> M u`` for output tangents of shape ``(N, out_features)``
    :return: the product on flat vectors laid out as ``chain.layer_params``
    """
    n_samples = cache.output.shape[0]
    weights = [linear.weight.detach() for linear in chain.linears]

    def fvp(vector: th.Tensor) -> th.Tensor:
        tangents = chain.split(vector)
        with th.no_grad():
            dh: th.Tensor | None = None
            for k, h in enumerate(cache.inputs):
                dz = th.addmm(tangents[2 * k + 1], h, tangents[2 * k].t())
                if dh is not None:
                    dz.addmm_(dh, weights[k].t())
                derivative = cache.derivatives[k]
                dh = dz if derivative is None else dz.mul_(derivative)
            assert dh is not None
            delta = output_metric(dh) / n_samples
            grads: list[th.Tensor] = [delta] * (2 * len(weights))
            for k in range(len(weights) - 1, -1, -1):
                grads[2 * k] = th.mm(delta.t(), cache.inputs[k]).reshape(-1)
                grads[2 * k + 1] = delta.sum(dim=0)
                if k > 0:
                    delta = th.mm(delta, weights[k])
                    derivative = cache.derivatives[k - 1]
                    if derivative is not None:
                        delta = delta.mul_(derivative)
            return th.cat(grads)

    return fvp


class ChainMseGradient:
    """
    Gradient of ``mean((chain(x) - targets)^2)`` (a chain with one output), for parameters held in one flat
    vector and a gradient written into one flat buffer: both split into per-layer views once, so a call costs
    only the forward and backward matrix products (ordinary back-propagation, written out).

    :param chain: the chain (its structure; its modules' own parameters are not read)
    :param flat_params: the parameters, laid out as ``chain.layer_params``; read at every call, so in-place
        updates (an optimizer step on the flat vector) are seen
    :param flat_grad: buffer the gradient is written into, same layout
    """

    def __init__(self, chain: LinearChain, flat_params: th.Tensor, flat_grad: th.Tensor):
        weights, grads = chain.split(flat_params), chain.split(flat_grad)
        self._layers = [(weights[2 * k], weights[2 * k + 1], activation) for k, activation in enumerate(chain.activations)]
        self._grads = [(grads[2 * k], grads[2 * k + 1]) for k in range(len(chain.activations))]

    def __call__(self, x: th.Tensor, targets: th.Tensor) -> th.Tensor:
        """
        :param x: inputs, shape ``(N, in_features)``
        :param targets: regression targets, shape ``(N,)``
        :return: the loss (a 0-dim tensor, no host synchronisation); the gradient is in ``flat_grad``
        """
        cache = _run_layers(self._layers, x, keep=True)
        with th.no_grad():
            error = cache.output.squeeze(1) - targets
            delta = (error * (2.0 / error.shape[0])).unsqueeze(1)
            for k in range(len(self._layers) - 1, -1, -1):
                grad_weight, grad_bias = self._grads[k]
                th.mm(delta.t(), cache.inputs[k], out=grad_weight)
                th.sum(delta, dim=0, out=grad_bias)
                if k > 0:
                    delta = th.mm(delta, self._layers[k][0])
                    slope = cache.derivatives[k - 1]
                    if slope is not None:
                        delta = delta * slope
            return (error * error).mean()
