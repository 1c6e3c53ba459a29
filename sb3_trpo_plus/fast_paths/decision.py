"""The decision: whether the fast paths compute exactly what SB3's own code computes for a policy object, and
what they may then assume of it (a :class:`Plan`), decided once per rollout and once per update."""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from typing import NamedTuple

from gymnasium import spaces
from stable_baselines3.common.distributions import (
    BernoulliDistribution,
    CategoricalDistribution,
    DiagGaussianDistribution,
    MultiCategoricalDistribution,
)
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.torch_layers import CombinedExtractor, FlattenExtractor, MlpExtractor
from torch import nn
from torch.nn.modules import module as torch_module

from sb3_trpo_plus.fast_paths.chains import LinearChain
from sb3_trpo_plus.normalization import NormalizedCombinedExtractor, NormalizedFlattenExtractor, ObservationNormalizer

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


class Declined(NamedTuple):
    """A fast path that does not serve a policy, and why: the generic path computes that part instead."""

    #: the part: ``"rollout forward"``, ``"Fisher-vector product"`` or ``"critic fit"``
    path: str
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
    :class:`~sb3_trpo_plus.normalization.NormalizedFlattenExtractor`; ``None``, the policy's own ``extract_features``)
    from which observation (``key``: ``None`` for the observation itself; a Dict observation's one key, whose Box entry
    SB3's ``CombinedExtractor`` or our ``NormalizedCombinedExtractor`` maps as those extractors map a Box).
    TRPOPlus decides at each rollout and each update, so that a policy changed in place between them (a module
    replaced, a hook added) is seen.
    """

    policy: ActorCriticPolicy
    actor: LinearChain
    critic: LinearChain
    features: str | None
    key: str | None = None


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
    return Plan(policy, actor, critic, *_features(policy)), Support(True, "")


def _chain(policy: ActorCriticPolicy, body: str, head: str) -> LinearChain | None:
    """``mlp_extractor.<body>`` followed by ``policy.<head>`` as a :class:`LinearChain`, or ``None``."""
    modules = (getattr(policy.mlp_extractor, body, None), getattr(policy, head, None))
    if not all(isinstance(module, nn.Module) for module in modules):
        return None
    return LinearChain.from_modules(*modules)  # type: ignore[arg-type]


def _features(policy: ActorCriticPolicy) -> tuple[str | None, str | None]:
    """
    :attr:`Plan.features` and :attr:`Plan.key`: ``"flatten"`` when both features extractors flatten (SB3's
    ``FlattenExtractor``), ``"normalized"`` for one shared :class:`~sb3_trpo_plus.normalization.NormalizedFlattenExtractor`
    (exactly these classes), ``(None, None)`` for any other extractor. For a Dict observation space, the same of the
    modules that map its entry, where it has exactly one, a Box, and both extractors are exactly SB3's
    ``CombinedExtractor`` or exactly :class:`~sb3_trpo_plus.normalization.NormalizedCombinedExtractor` (their
    ``th.cat`` of one entry's features is those features: the Box case's function), with that entry's key.
    """
    actor: nn.Module = policy.pi_features_extractor
    critic: nn.Module = policy.vf_features_extractor
    key = None
    if isinstance(policy.observation_space, spaces.Dict):
        key = _single_box_key(policy.observation_space)
        entries = _combined_entries(actor, critic, key) if key is not None else None
        if entries is None:
            return None, None
        actor, critic = entries
    if _flattens(actor) and _flattens(critic):
        return "flatten", key
    if type(actor) is NormalizedFlattenExtractor and actor is critic and type(actor.normalizer) is ObservationNormalizer:
        return "normalized", key
    return None, None


def _flattens(module: nn.Module) -> bool:
    """Whether ``module`` is SB3's ``FlattenExtractor`` or the ``nn.Flatten()`` that ``CombinedExtractor`` gives a
    vector entry."""
    if type(module) is nn.Flatten:
        return (module.start_dim, module.end_dim) == (1, -1)
    return type(module) is FlattenExtractor


def _single_box_key(space: spaces.Dict) -> str | None:
    """The key of a Dict observation space whose one entry is a Box, else ``None``."""
    if len(space.spaces) != 1:
        return None
    key, entry = next(iter(space.spaces.items()))
    return key if isinstance(entry, spaces.Box) else None


def _combined_entries(actor: nn.Module, critic: nn.Module, key: str) -> tuple[nn.Module, nn.Module] | None:
    """The modules that map the entry ``key`` in the actor's and the critic's extractors, where both are exactly
    ``CombinedExtractor`` or exactly ``NormalizedCombinedExtractor`` with that entry only; else ``None``."""
    if type(actor) not in (CombinedExtractor, NormalizedCombinedExtractor) or type(critic) is not type(actor):
        return None
    assert isinstance(actor, CombinedExtractor) and isinstance(critic, CombinedExtractor)
    if list(actor.extractors) != [key] or list(critic.extractors) != [key]:
        return None
    return actor.extractors[key], critic.extractors[key]
