"""The Optuna sampler and converter of the RL Zoo names ``trpo_plus``, ``trpo_plus_mask`` and ``trpo_plus_lstm``.

:mod:`sb3_trpo_plus.zoo` puts them into the Zoo's ``HYPERPARAMS_SAMPLER`` and ``HYPERPARAMS_CONVERTER``;
:mod:`sb3_trpo_plus.study` converts a study's best trial with them. Neither ``rl_zoo3`` nor ``optuna`` is imported.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from torch import nn

from sb3_trpo_plus.families import FAMILIES

if TYPE_CHECKING:
    import optuna

#: ``net_arch`` and ``activation_fn`` choices of the Optuna sampler (the names the Zoo's own samplers use).
NET_ARCHS: dict[str, dict[str, list[int]]] = {
    "tiny": {"pi": [64], "vf": [64]},
    "small": {"pi": [64, 64], "vf": [64, 64]},
    "medium": {"pi": [256, 256], "vf": [256, 256]},
}
ACTIVATION_FNS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU, "leaky_relu": nn.LeakyReLU}


def convert_trpo_plus_params(sampled_params: dict[str, Any]) -> dict[str, Any]:
    """
    Turn the values an Optuna trial sampled (``trial.params``) into TRPOPlus arguments.

    Used by :func:`sample_trpo_plus_params` and, as ``HYPERPARAMS_CONVERTER["trpo_plus"]``, by
    ``train --storage ... --study-name ... --trial-id N``. ``one_minus_gamma``/``one_minus_gae_lambda``
    become ``gamma``/``gae_lambda``, ``*_pow`` become powers of two, ``net_arch``/``activation_fn`` names
    become ``policy_kwargs``; every other value is a TRPOPlus argument already.
    """
    params = dict(sampled_params)
    if "one_minus_gamma" in params:
        params["gamma"] = 1 - params.pop("one_minus_gamma")
    if "one_minus_gae_lambda" in params:
        params["gae_lambda"] = 1 - params.pop("one_minus_gae_lambda")
    for name in ("batch_size", "n_steps"):
        if f"{name}_pow" in params:
            params[name] = 2 ** params.pop(f"{name}_pow")
    policy_kwargs: dict[str, Any] = {}
    if "net_arch" in params:
        policy_kwargs["net_arch"] = NET_ARCHS[params.pop("net_arch")]
    if "activation_fn" in params:
        policy_kwargs["activation_fn"] = ACTIVATION_FNS[params.pop("activation_fn")]
    if "lstm_hidden_size" in params:  # trpo_plus_lstm
        policy_kwargs["lstm_hidden_size"] = params.pop("lstm_hidden_size")
    if policy_kwargs:
        params["policy_kwargs"] = policy_kwargs
    return params


def sample_trpo_plus_params(trial: optuna.Trial, n_actions: int, n_envs: int, additional_args: dict) -> dict[str, Any]:
    """
    Optuna sampler for TRPOPlus (``HYPERPARAMS_SAMPLER["trpo_plus"]``, the Zoo's sampler signature).

    ``target_kl`` is sampled in TRPOPlus's unit, the KL of the whole action distribution: its range is the Zoo's
    TRPO range (0.001 to 0.1 per action dimension) times the number of action dimensions (``n_actions``,
    0 for non-Box spaces, where the two units agree). Only arguments of the exact TRPO step are sampled:
    ``fisher_sub_sampling`` and ``sub_sampling_factor`` (which approximate it to save time) stay at 1.

    :param trial: the Optuna trial
    :param n_actions: action dimensions of a Box action space, else 0 (computed by the Zoo)
    :param n_envs: number of parallel environments (unused: ``n_steps`` is per environment)
    :param additional_args: the Zoo's extra information (unused)
    :return: TRPOPlus keyword arguments
    """
    kl_scale = max(1, n_actions)
    sampled: dict[str, Any] = {
        "n_steps_pow": trial.suggest_int("n_steps_pow", 6, 12),  # 64 to 4096 steps per environment
        "batch_size_pow": trial.suggest_int("batch_size_pow", 5, 10),  # critic minibatches of 32 to 1024
        "one_minus_gamma": trial.suggest_float("one_minus_gamma", 0.0001, 0.03, log=True),
        "one_minus_gae_lambda": trial.suggest_float("one_minus_gae_lambda", 0.0001, 0.1, log=True),
        "learning_rate": trial.suggest_float("learning_rate", 1e-5, 3e-3, log=True),  # critic's Adam
        "n_critic_updates": trial.suggest_int("n_critic_updates", 5, 30),
        "target_kl": trial.suggest_float("target_kl", 0.001 * kl_scale, 0.1 * kl_scale, log=True),
        "cg_max_steps": trial.suggest_int("cg_max_steps", 5, 30),
        "cg_damping": trial.suggest_float("cg_damping", 1e-3, 0.5, log=True),
        "line_search_shrinking_factor": trial.suggest_categorical("line_search_shrinking_factor", [0.5, 0.6, 0.7, 0.8, 0.9]),
        "line_search_max_iter": trial.suggest_int("line_search_max_iter", 5, 20),
        "ent_coef": trial.suggest_float("ent_coef", 1e-8, 0.01, log=True),  # PPO's Zoo range, capped at 0.01
        "net_arch": trial.suggest_categorical("net_arch", ["small", "medium"]),
        "activation_fn": trial.suggest_categorical("activation_fn", ["tanh", "relu"]),
    }
    # Show the values the model gets in Optuna's tables
    trial.set_user_attr("gamma", 1 - sampled["one_minus_gamma"])
    trial.set_user_attr("gae_lambda", 1 - sampled["one_minus_gae_lambda"])
    trial.set_user_attr("n_steps", 2 ** sampled["n_steps_pow"])
    trial.set_user_attr("batch_size", 2 ** sampled["batch_size_pow"])
    return convert_trpo_plus_params(sampled)


def sample_trpo_plus_lstm_params(trial: optuna.Trial, n_actions: int, n_envs: int, additional_args: dict) -> dict[str, Any]:
    """
    Optuna sampler for RecurrentTRPOPlus (``HYPERPARAMS_SAMPLER["trpo_plus_lstm"]``): TRPOPlus's
    (:func:`sample_trpo_plus_params`) and the LSTM's size.
    """
    params = sample_trpo_plus_params(trial, n_actions, n_envs, additional_args)
    params.setdefault("policy_kwargs", {})["lstm_hidden_size"] = trial.suggest_categorical("lstm_hidden_size", [32, 64, 128])
    return params


#: Zoo name -> its Optuna sampler (the Zoo's ``HYPERPARAMS_SAMPLER`` signature)
SAMPLERS: dict[str, Callable[..., dict[str, Any]]] = {
    FAMILIES["plain"].zoo_name: sample_trpo_plus_params,
    FAMILIES["masked"].zoo_name: sample_trpo_plus_params,
    FAMILIES["recurrent"].zoo_name: sample_trpo_plus_lstm_params,
}
#: Zoo name -> the converter of its trials' values (the same for every family)
CONVERTERS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = dict.fromkeys(SAMPLERS, convert_trpo_plus_params)

__all__ = [
    "ACTIVATION_FNS",
    "CONVERTERS",
    "NET_ARCHS",
    "SAMPLERS",
    "convert_trpo_plus_params",
    "sample_trpo_plus_lstm_params",
    "sample_trpo_plus_params",
]
