"""Running statistics, merged in one way for observations and returns alike."""

from __future__ import annotations

import numpy as np
from stable_baselines3.common.running_mean_std import RunningMeanStd


def finite_rows(batch: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``batch`` as float64 entries of ``shape`` (any leading shape, flattened), without those holding a NaN or an
    infinite value."""
    rows = np.asarray(batch, dtype=np.float64).reshape(-1, *shape)
    return rows[np.isfinite(rows.reshape(rows.shape[0], -1)).all(axis=1)]


def merge_finite(statistics: RunningMeanStd, batch: np.ndarray) -> None:
    """
    Merge a batch into ``statistics`` with ``RunningMeanStd``'s parallel formula, leaving out every entry that holds a
    NaN or infinite value: the batch is read as entries of the statistics' shape (any leading shape, flattened).
    """
    rows = finite_rows(batch, statistics.mean.shape)
    if rows.shape[0]:
        statistics.update(rows)


def merge_higher_moments(
    count: float, mean: np.ndarray, var: np.ndarray, third: np.ndarray, fourth: np.ndarray, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    r"""
    The third and fourth central moments (per sample, like ``var``) of the union of the statistics so far and
    ``rows``, by the pairwise formulas of Pébay (2008) for the sums :math:`M_k = \sum (x - \bar x)^k`, with
    :math:`\delta = \bar x_b - \bar x_a`, :math:`n = n_a + n_b`:

    .. math::
        M_3 = M_{3a} + M_{3b} + \delta^3 \frac{n_a n_b (n_a - n_b)}{n^2} + 3 \delta \frac{n_a M_{2b} - n_b M_{2a}}{n}

        M_4 = M_{4a} + M_{4b} + \delta^4 \frac{n_a n_b (n_a^2 - n_a n_b + n_b^2)}{n^3}
              + 6 \delta^2 \frac{n_a^2 M_{2b} + n_b^2 M_{2a}}{n^2} + 4 \delta \frac{n_a M_{3b} - n_b M_{3a}}{n}

    :param count, mean, var, third, fourth: the statistics so far (``var``, ``third``, ``fourth`` per sample)
    :param rows: the new samples, finite (:func:`finite_rows`), one per row
    :return: the union's third and fourth central moments, per sample
    """
    n_b = rows.shape[0]
    if n_b == 0:
        return third, fourth
    n_a, n = count, count + n_b
    mean_b = rows.mean(axis=0)
    centred = rows - mean_b
    m2_a, m3_a, m4_a = var * n_a, third * n_a, fourth * n_a
    m2_b, m3_b, m4_b = (centred**2).sum(axis=0), (centred**3).sum(axis=0), (centred**4).sum(axis=0)
    delta = mean_b - mean
    m3 = m3_a + m3_b + delta**3 * n_a * n_b * (n_a - n_b) / n**2 + 3.0 * delta * (n_a * m2_b - n_b * m2_a) / n
    m4 = (
        m4_a
        + m4_b
        + delta**4 * n_a * n_b * (n_a**2 - n_a * n_b + n_b**2) / n**3
        + 6.0 * delta**2 * (n_a**2 * m2_b + n_b**2 * m2_a) / n**2
        + 4.0 * delta * (n_a * m3_b - n_b * m3_a) / n
    )
    return m3 / n, m4 / n
