"""Fast paths: closed forms for SB3's MLP heads, behind one switch and one decision.

SB3's ``MlpPolicy`` builds its actor as ``mlp_extractor.policy_net`` (Linear, activation, ...) followed by
``action_net`` (Linear), and its critic as ``mlp_extractor.value_net`` followed by ``value_net``. On a CPU the
cost of TRPO's inner loops (one policy call per environment step, 25 Fisher-vector products, hundreds of critic
minibatches) is dominated by per-operation overhead (module calls, distribution objects, autograd), not by
arithmetic. For these chains the needed quantities have short closed forms, computed here with a handful of
matrix products:

* :func:`rollout_forward`: the policy's ``forward`` during rollouts (actions, values, log-probabilities), used by
  :func:`collect_rollouts`, which is SB3's rollout loop with that one call swapped (the user's policy object is
  never modified).
* :func:`fisher_vector_product`: Gauss-Newton products ``J^T M J v`` with the tangent pushed forward and the
  cotangent back through activations cached once per update, no autograd graph.
* :func:`fit_critic`: the critic's regression with closed-form MSE gradients and torch's functional Adam on one
  flat parameter vector (its state kept in the policy's optimizer), or, with another optimizer, autograd on
  features computed once per update.
* :func:`use_fused_adam`: the policy's default Adam rebuilt as torch's fused implementation.

``TRPOPlus(fast_paths=True)`` (the default) takes them only where :func:`supports` proves that they compute what
SB3's own code computes for that very policy object: SB3's ``ActorCriticPolicy`` methods, not overridden on the
class or on the instance, SB3's ``MlpExtractor``, no module hooks, Linear/Tanh/ReLU chains. Anything else (and
``fast_paths=False``) takes the generic paths: SB3's rollout loop, autograd Fisher-vector products, the
optimizer's own ``step``. Each fast path is tested against the generic path it replaces
(``tests/test_fast_paths.py``).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import RolloutBuffer as SB3RolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.distributions import (
    BernoulliDistribution,
    CategoricalDistribution,
    DiagGaussianDistribution,
    Distribution,
    MultiCategoricalDistribution,
)
from stable_baselines3.common.policies import ActorCriticPolicy, BaseModel
from stable_baselines3.common.preprocessing import is_image_space, preprocess_obs
from stable_baselines3.common.torch_layers import FlattenExtractor, MlpExtractor
from stable_baselines3.common.type_aliases import PyTorchObs
from stable_baselines3.common.utils import obs_as_tensor
from stable_baselines3.common.vec_env import VecEnv
from torch import nn
from torch.nn.modules import module as torch_module
from torch.nn.utils import parameters_to_vector, vector_to_parameters
from torch.optim.adam import adam

from sb3_trpo_plus.critic import regress
from sb3_trpo_plus.fisher import GaussianFisher, fisher_for
from sb3_trpo_plus.natural_gradient import MatVec
from sb3_trpo_plus.normalization import NormalizedFlattenExtractor, ObservationNormalizer, normalize
from sb3_trpo_plus.validation import NON_FINITE_OBSERVATION, NonFiniteObservationError

if TYPE_CHECKING:
    from stable_baselines3.common.buffers import RolloutBuffer
    from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm

LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)

#: On the CPU, run the rollout forward in float32 NumPy (a microsecond per small product instead of a torch operator's
#: dispatch). ``False`` keeps the torch closed form: the same rollouts up to float rounding, for A/B benchmarks
#: (``benchmarks/speed/rollout_ab.py``) and the tests of the torch form (which a GPU policy takes).
NUMPY = True
#: The most envs the NumPy rollout forward serves: from about 64 rows its products cost more than torch's (measured
#: on HalfCheetah's 64x64 MLP, one torch thread: 400 us against 263 us a call at 64 envs, 108 against 175 at 16)
NUMPY_MAX_ENVS = 32

#: SB3 distributions whose parameters are the plain output of ``action_net`` (plus a state-independent log std)
MLP_HEAD_DISTRIBUTIONS = (
    DiagGaussianDistribution,
    CategoricalDistribution,
    MultiCategoricalDistribution,
    BernoulliDistribution,
)

#: ``ActorCriticPolicy`` methods the fast paths stand in for: a policy whose class overrides any of them is served
#: by the generic paths
POLICY_METHODS = (
    "forward",
    "extract_features",
    "predict_values",
    "evaluate_actions",
    "get_distribution",
    "_get_action_dist_from_latent",
)


# ------------------------------------------------------------------------------------------- the decision
class Support(NamedTuple):
    """Whether the fast paths may serve a policy, and why not when they may not."""

    ok: bool
    reason: str


@functools.cache
def _methods(cls: type) -> frozenset[str]:
    """The names of the functions and properties of a class (its own and inherited)."""
    attributes = {name: getattr(cls, name, None) for name in dir(cls)}
    return frozenset(name for name, value in attributes.items() if inspect.isfunction(value) or isinstance(value, property))


def _instance_overrides(module: nn.Module) -> list[str]:
    """Names of methods that ``module`` has replaced on the instance (``module.forward = wrapper``)."""
    return sorted(vars(module).keys() & _methods(type(module)))  # type: ignore[arg-type]


def _hooks(module: nn.Module) -> list[str]:
    """The kinds of hooks registered on ``module`` (forward, backward, pre-hooks)."""
    kinds = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
    return [kind.strip("_") for kind in kinds if getattr(module, kind, None)]


def _global_hooks() -> list[str]:
    """The kinds of global module hooks registered with ``torch.nn.modules.module``."""
    kinds = (
        "_global_forward_hooks",
        "_global_forward_pre_hooks",
        "_global_backward_hooks",
        "_global_backward_pre_hooks",
    )
    return [kind.strip("_") for kind in kinds if getattr(torch_module, kind, None)]


@dataclass(frozen=True)
class Plan:
    """
    What the fast paths may assume of one policy object, decided by :func:`decide` (the one place where a policy's
    structure is proven) and read by every path: its actor and critic as Linear chains, and how its features are
    computed (``features``: ``"flatten"``, SB3's ``FlattenExtractor`` for both; ``"normalized"``, one shared
    :class:`~sb3_trpo_plus.normalization.NormalizedFlattenExtractor`; ``None``, the policy's own ``extract_features``).
    TRPOPlus decides at each rollout and each update, so that a policy changed in place between them (a module
    replaced, a hook added) is seen.
    """

    policy: ActorCriticPolicy
    actor: LinearChain
    critic: LinearChain
    features: str | None


def supports(policy: nn.Module) -> Support:
    """Whether the fast paths may serve this policy object, and why not (see :func:`decide`)."""
    return decide(policy)[1]


def plan(policy: nn.Module) -> Plan | None:
    """The fast paths' :class:`Plan` for this policy object, or ``None`` where they may not serve it (:func:`decide`)."""
    return decide(policy)[0]


def decide(policy: nn.Module) -> tuple[Plan | None, Support]:
    """
    Whether the fast paths compute exactly what SB3's own code computes for this very policy object, and what they
    may then assume of it (a :class:`Plan`).

    The policy must be SB3's ``ActorCriticPolicy`` (or a subclass that overrides none of
    :data:`POLICY_METHODS`), with no method replaced on the instance or on any of its modules, no module hooks
    (on its modules or global), SB3's ``MlpExtractor`` (exactly that class), and an ``action_net`` and ``value_net``
    that with the extractor's ``policy_net``/``value_net`` form chains of ``nn.Linear`` layers and Tanh/ReLU/Identity
    activations. A wrapper module (``torch.compile``'s ``OptimizedModule``, for example) is not such a policy.
    Each path then asks for what its closed form needs of the action distribution: the rollout forward a diagonal
    Gaussian (not squashed) or categorical one, the Fisher-vector product one of :data:`MLP_HEAD_DISTRIBUTIONS`
    (gSDE, whose noise depends on the state, takes the autograd product); the critic's fit needs nothing of it.

    :param policy: the policy, as the algorithm holds it
    :return: ``(plan, (True, ""))``, or ``(None, (False, reason))``
    """
    if not isinstance(policy, ActorCriticPolicy):
        return None, Support(False, f"the policy is a {type(policy).__name__}, not SB3's ActorCriticPolicy")
    cls = type(policy)
    overridden = [name for name in POLICY_METHODS if getattr(cls, name) is not getattr(ActorCriticPolicy, name)]
    if overridden:
        return None, Support(False, f"{cls.__name__} overrides {', '.join(overridden)}")
    for name, module in policy.named_modules():
        where = f"policy.{name}" if name else "the policy"
        replaced = _instance_overrides(module)
        if replaced:
            return None, Support(False, f"{where} has {', '.join(replaced)} replaced on the instance")
        hooks = _hooks(module)
        if hooks:
            return None, Support(False, f"{where} has {', '.join(hooks)}")
    global_hooks = _global_hooks()
    if global_hooks:
        return None, Support(False, f"torch has {', '.join(global_hooks)} registered")
    if type(policy.mlp_extractor) is not MlpExtractor:
        return None, Support(False, f"the mlp_extractor is a {type(policy.mlp_extractor).__name__}, not SB3's MlpExtractor")
    actor, critic = _chain(policy, "policy_net", "action_net"), _chain(policy, "value_net", "value_net")
    if actor is None or critic is None:
        return None, Support(False, "the actor or critic head is not a chain of Linear layers with Tanh/ReLU activations")
    return Plan(policy, actor, critic, _features(policy)), Support(True, "")


def _chain(policy: ActorCriticPolicy, body: str, head: str) -> LinearChain | None:
    """``mlp_extractor.<body>`` followed by ``policy.<head>`` as a :class:`LinearChain`, or ``None``."""
    modules = (getattr(policy.mlp_extractor, body, None), getattr(policy, head, None))
    if not all(isinstance(module, nn.Module) for module in modules):
        return None
    return LinearChain.from_modules(*modules)  # type: ignore[arg-type]


FeatureMap = Callable[[th.Tensor], th.Tensor]


def _features(policy: ActorCriticPolicy) -> str | None:
    """:attr:`Plan.features`: ``"flatten"`` when both features extractors are SB3's ``FlattenExtractor``,
    ``"normalized"`` for one shared :class:`~sb3_trpo_plus.normalization.NormalizedFlattenExtractor` (exactly these
    classes), ``None`` for any other extractor."""
    actor, critic = policy.pi_features_extractor, policy.vf_features_extractor
    if type(actor) is FlattenExtractor and type(critic) is FlattenExtractor:
        return "flatten"
    if type(actor) is NormalizedFlattenExtractor and actor is critic and type(actor.normalizer) is ObservationNormalizer:
        return "normalized"
    return None


def _normalizer(plan: Plan) -> ObservationNormalizer:
    """The shared extractor's normalizer, for a plan whose ``features`` is ``"normalized"``."""
    normalizer = plan.policy.pi_features_extractor.normalizer
    assert isinstance(normalizer, ObservationNormalizer)
    return normalizer


def _feature_map(plan: Plan) -> FeatureMap | None:
    """
    The features of a batch of preprocessed observations as one function (:attr:`Plan.features`): a flatten, or a
    flatten then :func:`~sb3_trpo_plus.normalization.normalize` with the statistics read now, which do not change
    during a rollout; ``None`` for any other extractor (the policy's own ``extract_features`` is called instead).
    """
    if plan.features == "flatten":
        return lambda x: x.flatten(1)
    if plan.features == "normalized":
        normalizer = _normalizer(plan)
        with th.no_grad():
            mean, std, clip_obs = normalizer.mean.clone(), normalizer.std(), normalizer.clip_obs
        return lambda x: normalize(x.flatten(1), mean, std, clip_obs)
    return None


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


# ------------------------------------------------------------------------------------------- rollouts
RolloutForward = Callable[[PyTorchObs], tuple[th.Tensor, th.Tensor, th.Tensor]]


def rollout_forward(plan: Plan, n_envs: int = 1) -> RolloutForward | None:
    """
    ``policy.forward(obs)`` (actions, values, log-probabilities; stochastic actions) in closed form, for a policy
    that :func:`supports` accepts, with a diagonal Gaussian (not squashed) or categorical distribution; ``None``
    for any other. Sampling consumes torch's random stream exactly as SB3's distributions do, so a rollout is the
    one SB3 would collect up to float rounding. Built once per rollout (the parameters, the observation statistics
    and the standard deviation change only in ``train()``): on the CPU, for Box observations through SB3's
    ``FlattenExtractor`` or our shared ``NormalizedFlattenExtractor``, the arithmetic runs in float32 NumPy on
    weights laid out once (:func:`_numpy_forward`: a microsecond per small product instead of a torch operator's
    dispatch); otherwise in torch, reading the parameters at each call.

    :param plan: the policy's plan (:func:`plan`; the policy is not modified)
    :param n_envs: the rows of each call (the env's ``num_envs``); the NumPy form serves up to
        :data:`NUMPY_MAX_ENVS`
    :return: the forward function, or ``None``
    """
    policy, actor, critic = plan.policy, plan.actor, plan.critic
    if type(policy.action_dist) not in (DiagGaussianDistribution, CategoricalDistribution) or policy.squash_output:
        return None
    numpy_features = _numpy_feature_map(plan) if n_envs <= NUMPY_MAX_ENVS else None
    if numpy_features is not None:
        return _numpy_forward(policy, actor, critic, numpy_features)
    feature_map = _feature_map(plan)
    action_shape = policy.action_space.shape
    with th.no_grad():
        gaussian = isinstance(policy.action_dist, DiagGaussianDistribution)
        std = policy.log_std.exp() if gaussian else None
        log_prob_offset = -(policy.log_std + LOG_SQRT_2PI).sum() if gaussian else None

    def forward(obs: PyTorchObs) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        with th.no_grad():
            if feature_map is not None:  # the extractor's computation without the module calls
                preprocessed = preprocess_obs(obs, policy.observation_space, normalize_images=policy.normalize_images)
                pi_features = vf_features = feature_map(preprocessed)  # type: ignore[arg-type]
            else:
                features = policy.extract_features(obs)
                pi_features, vf_features = features if isinstance(features, tuple) else (features, features)
            if not bool(th.isfinite(pi_features).all()):
                raise NonFiniteObservationError(NON_FINITE_OBSERVATION)
            params = actor.run(pi_features).output
            values = critic.run(vf_features).output
            if std is not None and log_prob_offset is not None:
                noise = th.randn_like(params)
                actions = th.addcmul(params, noise, std)
                log_prob = noise.square().sum(dim=1).mul_(-0.5).add_(log_prob_offset)
            else:
                log_probs = th.log_softmax(params, dim=1)
                actions = th.multinomial(log_probs.exp(), 1).squeeze(1)
                log_prob = log_probs.gather(1, actions.unsqueeze(1)).squeeze(1)
        return actions.reshape((-1, *action_shape)), values, log_prob  # type: ignore[misc]

    return forward


NumpyFeatureMap = Callable[[np.ndarray], np.ndarray]
#: a chain's layers as ``(W^T, b, activation)`` in float32 NumPy
NumpyLayers = list[tuple[np.ndarray, np.ndarray, Callable[[np.ndarray], np.ndarray] | None]]
#: NumPy counterparts of the supported activations (in place on a fresh product)
_NUMPY_ACTIVATIONS: dict[type[nn.Module], Callable[[np.ndarray], np.ndarray]] = {
    nn.Tanh: lambda h: np.tanh(h, out=h),
    nn.ReLU: lambda h: np.maximum(h, np.float32(0.0), out=h),
}


def _numpy_feature_map(plan: Plan) -> NumpyFeatureMap | None:
    """
    :func:`_feature_map` on observations the NumPy forward has already flattened to float32 (as ``preprocess_obs``
    makes a Box's) and found finite, for a CPU policy with a non-image Box observation space; ``None`` otherwise.
    """
    policy = plan.policy
    space = policy.observation_space
    if (
        not NUMPY
        or policy.device.type != "cpu"
        or not isinstance(space, spaces.Box)
        or is_image_space(space, check_channels=False)
    ):
        return None
    if plan.features == "flatten":
        return lambda x: x
    if plan.features == "normalized":
        normalizer = _normalizer(plan)
        with th.no_grad():
            mean = normalizer.mean.float().numpy().copy()
            std = normalizer.std().float().numpy().copy()
        clip_obs = np.float32(normalizer.clip_obs)

        def normalized(x: np.ndarray) -> np.ndarray:
            y = x - mean
            y /= std
            np.minimum(y, clip_obs, out=y)  # clip((x - mean) / std, -clip_obs, clip_obs), in place
            np.maximum(y, -clip_obs, out=y)
            return y

        return normalized
    return None


def _numpy_layers(chain: LinearChain) -> NumpyLayers:
    """The chain's layers as float32 NumPy ``(W^T, b, activation)``, copied (the rollout's snapshot)."""
    with th.no_grad():
        return [
            (
                weight.detach().float().numpy().T.copy(),
                bias.detach().float().numpy().copy(),
                _NUMPY_ACTIVATIONS.get(activation) if activation is not None else None,
            )
            for weight, bias, activation in chain._layers
        ]


def _run_numpy(layers: NumpyLayers, x: np.ndarray) -> np.ndarray:
    for weight, bias, activation in layers:
        x = x @ weight
        x += bias
        if activation is not None:
            x = activation(x)
    return x


def _merged_layers(actor: NumpyLayers, critic: NumpyLayers) -> NumpyLayers | None:
    """Actor and critic as one chain on the same features (``None`` unless they have the same depth and the same
    activation at each layer): the first layers side by side, the others block-diagonal, so that one product per
    layer gives both; the output is ``[actor's | critic's]``. The zero blocks add exact zeros."""
    if len(actor) != len(critic) or any(a[2] is not c[2] for a, c in zip(actor, critic, strict=True)):
        return None
    merged: NumpyLayers = []
    for index, ((weight_a, bias_a, activation), (weight_c, bias_c, _)) in enumerate(zip(actor, critic, strict=True)):
        if index == 0:
            weight = np.concatenate([weight_a, weight_c], axis=1)
        else:
            weight = np.zeros((weight_a.shape[0] + weight_c.shape[0], weight_a.shape[1] + weight_c.shape[1]), np.float32)
            weight[: weight_a.shape[0], : weight_a.shape[1]] = weight_a
            weight[weight_a.shape[0] :, weight_a.shape[1] :] = weight_c
        merged.append((weight, np.concatenate([bias_a, bias_c]), activation))
    return merged


def _numpy_forward(
    policy: ActorCriticPolicy, actor: LinearChain, critic: LinearChain, features: NumpyFeatureMap
) -> RolloutForward:
    """The rollout forward on NumPy observations: the same products as the torch one in float32 NumPy, with the
    Gaussian noise drawn by ``torch.randn`` and categorical actions by ``torch.multinomial`` (torch's random stream,
    as SB3's distributions consume it). Takes the observations as ``collect_rollouts`` holds them (NumPy)."""
    actor_layers, critic_layers = _numpy_layers(actor), _numpy_layers(critic)
    merged = _merged_layers(actor_layers, critic_layers)
    n_params = actor_layers[-1][1].shape[0]
    action_shape = policy.action_space.shape
    gaussian = isinstance(policy.action_dist, DiagGaussianDistribution)
    with th.no_grad():
        std = policy.log_std.exp().float().numpy().copy() if gaussian else None
        offset = np.float32(-(policy.log_std + LOG_SQRT_2PI).sum().item()) if gaussian else None

    def forward(obs: PyTorchObs) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        raw = obs.numpy() if isinstance(obs, th.Tensor) else obs
        x = np.asarray(raw, dtype=np.float32).reshape(len(raw), -1)  # type: ignore[arg-type]
        if not np.isfinite(x).all():  # checked on the observation: a broken one is never clipped into a plausible one
            raise NonFiniteObservationError(NON_FINITE_OBSERVATION)
        x = features(x)
        if merged is not None:  # one product per layer for both
            output = _run_numpy(merged, x)
            params, values = output[:, :n_params], output[:, n_params:]
        else:
            params, values = _run_numpy(actor_layers, x), _run_numpy(critic_layers, x)
        if std is not None and offset is not None:
            noise = th.randn(params.shape).numpy()
            actions = params + noise * std
            log_prob = (noise * noise).sum(axis=1) * np.float32(-0.5) + offset
            action_tensor = th.from_numpy(actions)
        else:
            shifted = params - params.max(axis=1, keepdims=True)
            log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
            action_tensor = th.multinomial(th.from_numpy(np.exp(log_probs)), 1).squeeze(1)
            log_prob = np.take_along_axis(log_probs, action_tensor.numpy()[:, None], axis=1)[:, 0]
        return action_tensor.reshape((-1, *action_shape)), th.from_numpy(values), th.from_numpy(log_prob)  # type: ignore[misc]

    forward.takes_numpy = True  # type: ignore[attr-defined]
    return forward


def collect_rollouts(
    model: OnPolicyAlgorithm,
    env: VecEnv,
    callback: BaseCallback,
    rollout_buffer: RolloutBuffer,
    n_rollout_steps: int,
    forward: RolloutForward,
) -> bool:
    """
    SB3's ``OnPolicyAlgorithm.collect_rollouts`` with the policy call ``model.policy(obs_tensor)`` replaced by
    ``forward(obs_tensor)``: the same steps in the same order (actions clipped to the Box bounds, callbacks
    given the same local names, time-outs bootstrapped with ``policy.predict_values``, the same buffer writes).
    No gSDE (the fast forward does not serve it). ``tests/test_fast_paths.py`` checks that both loops fill the
    same buffer.

    :return: ``True`` if ``n_rollout_steps`` were collected, ``False`` if a callback stopped the rollout
    """
    assert model._last_obs is not None, "No previous observation was provided"
    policy = model.policy
    policy.set_training_mode(False)
    n_steps = 0
    rollout_buffer.reset()
    callback.on_rollout_start()
    space = model.action_space
    bounds = (space.low, space.high) if isinstance(space, spaces.Box) else None
    discrete = isinstance(model.action_space, spaces.Discrete)

    takes_numpy = getattr(forward, "takes_numpy", False)
    # SB3's RolloutBuffer itself (not a subclass, add() not replaced on the instance) with the NumPy forward's Box
    # observations: its add() written out, the same arrays at the same places without its copies and tensor round trips
    direct = takes_numpy and type(rollout_buffer) is SB3RolloutBuffer and "add" not in vars(rollout_buffer)
    while n_steps < n_rollout_steps:
        with th.no_grad():
            # obs_tensor as SB3 makes it (a callback may read it); the NumPy forward reads the NumPy observations
            obs_tensor = obs_as_tensor(model._last_obs, model.device)  # type: ignore[arg-type]
            actions, values, log_probs = forward(model._last_obs if takes_numpy else obs_tensor)  # type: ignore[arg-type]
        actions = actions.cpu().numpy()  # type: ignore[assignment]
        clipped_actions = actions
        if bounds is not None:  # the fast forward serves unsquashed Gaussians only: clip to the bounds, as SB3 does (np.clip)
            clipped_actions = np.minimum(np.maximum(actions, bounds[0]), bounds[1])  # type: ignore[assignment]

        new_obs, rewards, dones, infos = env.step(clipped_actions)  # type: ignore[arg-type]
        model.num_timesteps += env.num_envs

        callback.update_locals(locals())
        if not callback.on_step():
            return False

        model._update_info_buffer(infos, dones)
        n_steps += 1

        if discrete:
            actions = actions.reshape(-1, 1)

        for idx, done in enumerate(dones):
            if done and infos[idx].get("terminal_observation") is not None and infos[idx].get("TimeLimit.truncated", False):
                terminal_obs = policy.obs_to_tensor(infos[idx]["terminal_observation"])[0]
                with th.no_grad():
                    terminal_value = policy.predict_values(terminal_obs)[0]  # type: ignore[arg-type]
                rewards[idx] += model.gamma * terminal_value

        if direct:
            position = rollout_buffer.pos
            rollout_buffer.observations[position] = model._last_obs
            rollout_buffer.actions[position] = actions.reshape((rollout_buffer.n_envs, rollout_buffer.action_dim))
            rollout_buffer.rewards[position] = rewards
            rollout_buffer.episode_starts[position] = model._last_episode_starts
            rollout_buffer.values[position] = values.numpy().ravel()
            rollout_buffer.log_probs[position] = log_probs.numpy()
            rollout_buffer.pos += 1
            rollout_buffer.full = rollout_buffer.pos == rollout_buffer.buffer_size
        else:
            rollout_buffer.add(model._last_obs, actions, rewards, model._last_episode_starts, values, log_probs)  # type: ignore[arg-type]
        model._last_obs = new_obs  # type: ignore[assignment]
        model._last_episode_starts = dones

    with th.no_grad():
        values = policy.predict_values(obs_as_tensor(new_obs, model.device))  # type: ignore[arg-type]
    rollout_buffer.compute_returns_and_advantage(last_values=values, dones=dones)
    callback.update_locals(locals())
    callback.on_rollout_end()
    return True


# ------------------------------------------------------------------------------------------- Fisher
def fisher_vector_product(
    plan: Plan,
    obs: PyTorchObs,
    actor_params: list[nn.Parameter],
    damping: float,
    distribution: Distribution,
) -> tuple[list[nn.Parameter], MatVec] | None:
    """
    The damped Fisher-vector product ``v -> (F + damping I) v`` in closed form, for a policy that
    :func:`supports` accepts with an action distribution of :data:`MLP_HEAD_DISTRIBUTIONS` and whose actor's
    parameters are exactly the actor chain's (and the state-independent ``log_std``): no features extractor with
    trainable parameters. ``None`` for any other actor (gSDE included).

    :param plan: the policy's plan (:func:`plan`)
    :param obs: the batch the Fisher is taken on
    :param actor_params: the parameters the surrogate depends on
    :param distribution: the policy's distribution at ``obs`` (its parameters give the metric ``M``)
    :return: the actor's parameters in the product's order and the product, or ``None``
    """
    policy, chain = plan.policy, plan.actor
    fisher = fisher_for(policy.action_dist)
    if type(policy.action_dist) not in MLP_HEAD_DISTRIBUTIONS or fisher is None:
        return None
    log_std = [policy.log_std] if isinstance(fisher, GaussianFisher) else []
    ordered = [*chain.layer_params, *log_std]
    if {id(param) for param in ordered} != {id(param) for param in actor_params}:
        return None  # e.g. a features extractor with parameters
    with th.no_grad():
        features = BaseModel.extract_features(policy, obs, policy.pi_features_extractor)
        chain_fvp = chain_fisher_vector_product(chain, chain.run(features, keep=True), fisher.output_metric(distribution))
    n_chain = sum(param.numel() for param in chain.layer_params)

    def fvp(vector: th.Tensor) -> th.Tensor:
        product = chain_fvp(vector[:n_chain])
        if log_std:  # state-independent log std: its Fisher block is a constant diagonal
            product = th.cat([product, GaussianFisher.LOG_STD_FISHER * vector[n_chain:]])
        return product + damping * vector if damping else product

    return ordered, fvp


# ------------------------------------------------------------------------------------------- critic
def plain_adam(optimizer: th.optim.Optimizer) -> bool:
    """Whether ``optimizer`` is one-group Adam without the variants the flat-vector critic path leaves out."""
    if type(optimizer) is not th.optim.Adam or len(optimizer.param_groups) != 1:
        return False
    group = optimizer.param_groups[0]
    return not (
        group["amsgrad"]
        or group["maximize"]
        or group["weight_decay"]
        or group.get("capturable")
        or group.get("differentiable")
        or group.get("decoupled_weight_decay")
    )


def _step_device(group: dict, param: th.Tensor) -> th.device:
    """Where torch's Adam keeps a parameter's ``step``: beside the parameter when fused or capturable, else the CPU."""
    return param.device if group.get("fused") or group.get("capturable") else th.device("cpu")


def gather_adam_state(
    optimizer: th.optim.Optimizer, params: list[nn.Parameter], like: th.Tensor
) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
    """Adam's first and second moments of ``params`` as flat vectors, and its step count (zeros when new)."""
    states = [optimizer.state.get(param, {}) for param in params]
    device = _step_device(optimizer.param_groups[0], like)
    if not all("exp_avg" in state for state in states):
        return th.zeros_like(like), th.zeros_like(like), th.zeros((), dtype=th.float32, device=device)
    exp_avg = th.cat([state["exp_avg"].reshape(-1) for state in states])
    exp_avg_sq = th.cat([state["exp_avg_sq"].reshape(-1) for state in states])
    step = th.as_tensor(float(states[0]["step"]), dtype=th.float32, device=device)
    return exp_avg, exp_avg_sq, step


def scatter_adam_state(
    optimizer: th.optim.Optimizer, params: list[nn.Parameter], exp_avg: th.Tensor, exp_avg_sq: th.Tensor, step: th.Tensor
) -> None:
    """Write flat Adam moments and the step count back into ``optimizer.state``, where torch keeps each."""
    for param, first, second in zip(params, _split(exp_avg, params), _split(exp_avg_sq, params), strict=True):
        optimizer.state[param] = {"step": step.clone(), "exp_avg": first.clone(), "exp_avg_sq": second.clone()}


def _fit_chain(
    chain: LinearChain,
    optimizer: th.optim.Optimizer,
    features: th.Tensor,
    returns: th.Tensor,
    minibatches: Iterator[th.Tensor],
) -> list[th.Tensor]:
    """
    The critic's regression for an MLP critic head: closed-form gradients (:class:`ChainMseGradient`) and torch's
    functional Adam on one flat parameter vector. The Adam state lives in ``optimizer`` before and after, so
    saving, loading and the generic path see the same optimizer.
    """
    params = chain.layer_params
    group = optimizer.param_groups[0]
    flat = parameters_to_vector(params).detach().clone()
    grad = th.empty_like(flat)
    exp_avg, exp_avg_sq, step = gather_adam_state(optimizer, params, flat)
    beta1, beta2 = group["betas"]
    losses = []
    mse_gradient = ChainMseGradient(chain, flat, grad)
    for index in minibatches:
        losses.append(mse_gradient(features[index], returns[index]))
        adam(
            [flat],
            [grad],
            [exp_avg],
            [exp_avg_sq],
            [],
            [step],
            foreach=False,
            fused=bool(group.get("fused")),
            amsgrad=False,
            beta1=beta1,
            beta2=beta2,
            lr=group["lr"],
            weight_decay=0.0,
            eps=group["eps"],
            maximize=False,
        )
    vector_to_parameters(flat, params)
    scatter_adam_state(optimizer, params, exp_avg, exp_avg_sq, step)
    return losses


def fit_critic(
    plan: Plan,
    obs: PyTorchObs,
    returns: th.Tensor,
    critic_params: list[nn.Parameter],
    minibatches: Iterator[th.Tensor],
) -> list[th.Tensor] | None:
    """
    The critic's regression for a policy that :func:`supports` accepts whose critic's features extractor has no
    parameters the critic trains: the critic's features are computed once for the whole update instead of once
    per minibatch (bit for bit the same values), and when the critic is exactly the value chain and the optimizer
    is plain Adam, the gradients are closed-form and Adam runs on one flat vector (the same algorithm, up to
    rounding). ``None`` (nothing done) for any other critic.

    :param plan: the policy's plan (:func:`plan`)
    :param minibatches: the indices of each minibatch, in order
    :return: each minibatch's loss, or ``None``
    """
    policy = plan.policy
    extractor = policy.vf_features_extractor
    critic_ids = {id(param) for param in critic_params}
    if any(id(param) in critic_ids for param in extractor.parameters()):
        return None
    optimizer = policy.optimizer
    with th.no_grad():
        features = BaseModel.extract_features(policy, obs, extractor)
    chain = plan.critic
    if {id(p) for p in chain.layer_params} == critic_ids and plain_adam(optimizer):
        return _fit_chain(chain, optimizer, features, returns, minibatches)  # type: ignore[arg-type]
    critic = lambda index: policy.value_net(policy.mlp_extractor.forward_critic(features[index])).flatten()  # type: ignore[index]  # noqa: E731
    losses = (th.nn.functional.mse_loss(critic(index), returns[index]) for index in minibatches)
    return regress(optimizer, critic_params, losses)


def use_fused_adam(policy: ActorCriticPolicy, optimizer_kwargs: dict) -> None:
    """
    Rebuild the policy's default Adam optimizer as torch's fused implementation (one kernel per step instead
    of a Python loop over parameters; same algorithm), where the device supports it. A user who chose an
    implementation in ``optimizer_kwargs`` (``fused`` or ``foreach``), or another optimizer class, keeps it.
    """
    optimizer = policy.optimizer
    if type(optimizer) is not th.optim.Adam or "fused" in optimizer_kwargs or "foreach" in optimizer_kwargs:
        return
    with contextlib.suppress(RuntimeError, ValueError):  # fused kernels unavailable for this device or dtype
        policy.optimizer = th.optim.Adam(policy.parameters(), **{**optimizer.defaults, "fused": True})
