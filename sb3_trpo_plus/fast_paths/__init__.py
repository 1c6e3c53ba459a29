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

``TRPOPlus(fast_paths=True)`` (the default) takes them only where :func:`decide` proves that they compute what
SB3's own code computes for that very policy object: SB3's ``ActorCriticPolicy`` methods, not overridden on the
class or on the instance, SB3's ``MlpExtractor``, no module hooks, Linear/Tanh/ReLU chains. Anything else (and
``fast_paths=False``) takes the generic paths: SB3's rollout loop, autograd Fisher-vector products, the
optimizer's own ``step``. Each fast path is tested against the generic path it replaces
(``tests/test_fast_paths.py``). A path that does not serve a policy returns :class:`Declined` with its reason,
which ``TRPOPlus`` prints once at ``verbose >= 1``.

One module per idea: :mod:`~sb3_trpo_plus.fast_paths.decision` (the proof, :class:`Plan`),
:mod:`~sb3_trpo_plus.fast_paths.chains` (Linear-chain calculus), :mod:`~sb3_trpo_plus.fast_paths.rollout` (the torch
and NumPy rollout forwards), :mod:`~sb3_trpo_plus.fast_paths.collect` (SB3's rollout loop around it),
:mod:`~sb3_trpo_plus.fast_paths.fisher_product` and :mod:`~sb3_trpo_plus.fast_paths.critic_fit`. The switches below
are read at each call, so ``fast_paths.NUMPY = False`` takes effect at the next rollout.
"""

from __future__ import annotations

#: On the CPU, run the rollout forward in float32 NumPy (a microsecond per small product instead of a torch operator's
#: dispatch). ``False`` keeps the torch closed form: the same rollouts up to float rounding, for A/B benchmarks
#: (``benchmarks/speed/rollout_ab.py``) and the tests of the torch form (which a GPU policy takes).
NUMPY = True
#: The most envs the NumPy rollout forward serves: from about 64 rows its products cost more than torch's (measured
#: on HalfCheetah's 64x64 MLP, one torch thread: 400 us against 263 us a call at 64 envs, 108 against 175 at 16)
NUMPY_MAX_ENVS = 32

from sb3_trpo_plus.fast_paths.chains import LinearChain, chain_fisher_vector_product  # noqa: E402
from sb3_trpo_plus.fast_paths.collect import collect_rollouts  # noqa: E402
from sb3_trpo_plus.fast_paths.critic_fit import fit_critic, plain_adam, use_fused_adam  # noqa: E402
from sb3_trpo_plus.fast_paths.decision import (  # noqa: E402
    MLP_HEAD_DISTRIBUTIONS,
    POLICY_METHODS,
    Declined,
    Plan,
    Support,
    decide,
    plan,
    supports,
)
from sb3_trpo_plus.fast_paths.fisher_product import fisher_vector_product  # noqa: E402
from sb3_trpo_plus.fast_paths.rollout import RolloutForward, rollout_forward  # noqa: E402
from sb3_trpo_plus.fast_paths.sequences import lstm_along_sequences  # noqa: E402

__all__ = [
    "MLP_HEAD_DISTRIBUTIONS",
    "NUMPY",
    "NUMPY_MAX_ENVS",
    "POLICY_METHODS",
    "Declined",
    "LinearChain",
    "Plan",
    "RolloutForward",
    "Support",
    "chain_fisher_vector_product",
    "collect_rollouts",
    "decide",
    "fisher_vector_product",
    "fit_critic",
    "lstm_along_sequences",
    "plain_adam",
    "plan",
    "rollout_forward",
    "supports",
    "use_fused_adam",
]
