"""An LSTM along padded sequences in one call: what sb3-contrib's ``RecurrentActorCriticPolicy._process_sequence``
computes, without its step-by-step loop where episodes start only at the sequences' first steps.

``RecurrentRolloutBuffer`` cuts its minibatches into sequences at episode starts, so an episode starts at most at a
sequence's first step; yet ``_process_sequence`` takes its one-call branch only when no episode starts at all, and
otherwise calls the LSTM once per time step (the padded length: up to hundreds of calls per minibatch). Zeroing the
state of each sequence whose first step starts an episode, as that loop does at its first step, and then running
the LSTM once over the whole sequence computes the same function (the loop resets nothing after the first step).
"""

from __future__ import annotations

import torch as th
from torch import nn


def lstm_along_sequences(
    lstm: nn.LSTM, features: th.Tensor, lstm_states: tuple[th.Tensor, th.Tensor], episode_starts: th.Tensor
) -> th.Tensor | None:
    """
    The LSTM's output along padded sequences, flattened as ``_process_sequence`` returns it, or ``None`` where an
    episode starts after a sequence's first step (``_process_sequence``'s loop is needed there).

    :param lstm: the LSTM (``batch_first=False``, as sb3-contrib builds it)
    :param features: ``(n_seq * max_length, input_size)``, sequence by sequence
    :param lstm_states: the (hidden, cell) states at each sequence's start, ``(n_layers, n_seq, hidden_size)``
    :param episode_starts: 1.0 where an episode starts, ``(n_seq * max_length,)``
    :return: ``(n_seq * max_length, hidden_size)``, or ``None``
    """
    n_seq = lstm_states[0].shape[1]
    sequences = features.reshape((n_seq, -1, lstm.input_size)).swapaxes(0, 1)
    starts = episode_starts.reshape((n_seq, -1)).swapaxes(0, 1)
    if bool(th.any(starts[1:] != 0.0)):
        return None
    keep = (1.0 - starts[0]).view(1, n_seq, 1)
    output, _ = lstm(sequences, (keep * lstm_states[0], keep * lstm_states[1]))
    return th.flatten(output.transpose(0, 1), start_dim=0, end_dim=1)


__all__ = ["lstm_along_sequences"]
