"""Running statistics, merged in one way for observations and returns alike."""

from __future__ import annotations

import numpy as np
from stable_baselines3.common.running_mean_std import RunningMeanStd


def merge_finite(statistics: RunningMeanStd, batch: np.ndarray) -> None:
    """
    Merge a batch into ``statistics`` with ``RunningMeanStd``'s parallel formula, leaving out every entry that holds a
    NaN or infinite value: the batch is read as entries of the statistics' shape (any leading shape, flattened).
    """
    rows = np.asarray(batch, dtype=np.float64).reshape(-1, *statistics.mean.shape)
    rows = rows[np.isfinite(rows.reshape(rows.shape[0], -1)).all(axis=1)]
    if rows.shape[0]:
        statistics.update(rows)
