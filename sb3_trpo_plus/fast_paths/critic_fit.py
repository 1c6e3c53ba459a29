"""The critic's regression on features computed once per update, in closed form with Adam on one flat vector where
the critic is the value chain; and the policy's default Adam as torch's fused implementation."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch as th
from stable_baselines3.common.policies import ActorCriticPolicy, BaseModel
from stable_baselines3.common.type_aliases import PyTorchObs
from torch import nn
from torch.nn.utils import parameters_to_vector, vector_to_parameters
from torch.optim.adam import adam

from sb3_trpo_plus.critic import regress
from sb3_trpo_plus.fast_paths.chains import ChainMseGradient, LinearChain, _split
from sb3_trpo_plus.fast_paths.decision import Declined, Plan


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
) -> list[th.Tensor] | Declined:
    """
    The critic's regression for a policy that :func:`supports` accepts whose critic's features extractor has no
    parameters the critic trains: the critic's features are computed once for the whole update instead of once
    per minibatch (bit for bit the same values), and when the critic is exactly the value chain and the optimizer
    is plain Adam, the gradients are closed-form and Adam runs on one flat vector (the same algorithm, up to
    rounding). :class:`Declined` (nothing done) for any other critic.

    :param plan: the policy's plan (:func:`plan`)
    :param minibatches: the indices of each minibatch, in order
    :return: each minibatch's loss, or :class:`Declined`
    """
    policy = plan.policy
    extractor = policy.vf_features_extractor
    critic_ids = {id(param) for param in critic_params}
    if any(id(param) in critic_ids for param in extractor.parameters()):
        return Declined("critic fit", "the critic trains its features extractor's parameters")
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
