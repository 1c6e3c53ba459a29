"""The damped Fisher-vector product of an MLP actor head in closed form."""

from __future__ import annotations

import torch as th
from stable_baselines3.common.distributions import (
    Distribution,
)
from stable_baselines3.common.policies import BaseModel
from stable_baselines3.common.type_aliases import PyTorchObs
from torch import nn

from sb3_trpo_plus.fast_paths.chains import chain_fisher_vector_product
from sb3_trpo_plus.fast_paths.decision import MLP_HEAD_DISTRIBUTIONS, Declined, Plan
from sb3_trpo_plus.fisher import GaussianFisher, fisher_for
from sb3_trpo_plus.natural_gradient import MatVec


# ------------------------------------------------------------------------------------------- Fisher
def fisher_vector_product(
    plan: Plan,
    obs: PyTorchObs,
    actor_params: list[nn.Parameter],
    damping: float,
    distribution: Distribution,
) -> tuple[list[nn.Parameter], MatVec] | Declined:
    """
    The damped Fisher-vector product ``v -> (F + damping I) v`` in closed form, for a policy that
    :func:`supports` accepts with an action distribution of :data:`MLP_HEAD_DISTRIBUTIONS` and whose actor's
    parameters are exactly the actor chain's (and the state-independent ``log_std``): no features extractor with
    trainable parameters. :class:`Declined` for any other actor (gSDE included).

    :param plan: the policy's plan (:func:`plan`)
    :param obs: the batch the Fisher is taken on
    :param actor_params: the parameters the surrogate depends on
    :param distribution: the policy's distribution at ``obs`` (its parameters give the metric ``M``)
    :return: the actor's parameters in the product's order and the product, or :class:`Declined`
    """
    policy, chain = plan.policy, plan.actor
    fisher = fisher_for(policy.action_dist)
    if type(policy.action_dist) not in MLP_HEAD_DISTRIBUTIONS or fisher is None:
        name = type(policy.action_dist).__name__
        return Declined("Fisher-vector product", f"{name}'s parameters are not the plain output of action_net")
    log_std = [policy.log_std] if isinstance(fisher, GaussianFisher) else []
    ordered = [*chain.layer_params, *log_std]
    if {id(param) for param in ordered} != {id(param) for param in actor_params}:
        return Declined("Fisher-vector product", "the actor trains parameters outside its Linear chain (a features extractor)")
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
