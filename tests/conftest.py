"""Settings of the whole test session.

One torch thread: the suite's networks are tiny, and torch's default (one thread per core) only oversubscribes a
shared machine; on 2 busy cores the LSTM tests' double-backward products ran many times slower with it. Tests of
``torch_threads`` set the count they need themselves.
"""

import torch

torch.set_num_threads(1)
