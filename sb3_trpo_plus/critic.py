"""The critic's regression, written once: every path (TRPOPlus's generic loop, the fast paths' fallback loop, the
recurrent family's sequence loop) runs its minibatch losses through :func:`regress`."""

from __future__ import annotations

from collections.abc import Iterable

import torch as th
from torch import nn


def regress(optimizer: th.optim.Optimizer, critic_params: list[nn.Parameter], losses: Iterable[th.Tensor]) -> list[th.Tensor]:
    """
    One optimizer step per minibatch loss, the gradient taken for ``critic_params`` only (the actor's parameters
    get none and do not move).

    :param losses: the minibatch losses, built lazily (a generator), so that each is computed after the previous
        step, at the parameters it moved to
    :return: the losses, detached
    """
    done = []
    for loss in losses:
        optimizer.zero_grad(set_to_none=True)
        loss.backward(inputs=critic_params)
        optimizer.step()
        done.append(loss.detach())
    return done
