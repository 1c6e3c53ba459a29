"""torch's intra-op thread count while learning (``torch_threads``): one thread where threads cost more than they give."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Literal

import torch as th
from torch import nn

#: torch's intra-op thread count when this module was imported: a different count later was chosen by someone
_THREADS_AT_IMPORT = th.get_num_threads()

ThreadSetting = int | Literal["auto"] | None

#: the layers of the policies that ``torch_threads="auto"`` runs on one thread: measured faster there for MLP, masked
#: MLP and LSTM policies on 2 busy cores (4-8x for sb3-contrib's default LSTM); convolutions are left out
SMALL_LAYERS: tuple[type[nn.Module], ...] = (nn.Linear, nn.LSTM, nn.GRU, nn.RNN, nn.LSTMCell, nn.GRUCell, nn.LayerNorm)


def thread_cap(setting: ThreadSetting, policy: nn.Module) -> int | None:
    """
    The number of torch intra-op threads to use while learning, or ``None`` to leave torch's setting alone.

    ``"auto"`` gives 1 when every module of the policy that has parameters is one of :data:`SMALL_LAYERS` (MLP and
    LSTM policies, masked or not: their per-step batch of ``n_envs`` rows and their small matrices gain nothing from
    threads, and lose a lot to them on a busy machine: ``benchmarks/speed/family_threads.csv``), unless the thread
    count was chosen already: the ``OMP_NUM_THREADS`` or ``MKL_NUM_THREADS`` environment variable is set, or torch's
    count differs from what it was when ``sb3_trpo_plus`` was imported (``torch.set_num_threads``, the Zoo's
    ``--num-threads``). A policy with convolutions (images) keeps torch's count: large images can use the cores.

    :param setting: ``torch_threads``: ``"auto"``, an integer >= 1, or ``None`` (never change torch's setting)
    :param policy: the policy that will learn
    """
    if setting is None:
        return None
    if setting != "auto":
        return int(setting)
    chosen = any(os.environ.get(name) for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"))
    if chosen or th.get_num_threads() != _THREADS_AT_IMPORT:
        return None
    leaves = [module for module in policy.modules() if next(module.parameters(recurse=False), None) is not None]
    small = all(type(module) in SMALL_LAYERS for module in leaves if module is not policy)
    return 1 if small else None


@contextlib.contextmanager
def threads(cap: int | None) -> Iterator[None]:
    """Torch's intra-op thread count set to ``cap`` inside (``None``: unchanged), and restored afterwards."""
    previous = th.get_num_threads()
    if cap is None or cap == previous:
        yield
        return
    th.set_num_threads(cap)
    try:
        yield
    finally:
        th.set_num_threads(previous)
