"""The statistics the benchmark reports use: Welch's t-test (scipy) and the interquartile mean with stratified
bootstrap intervals (rliable, the ``bench`` extra)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

ALTERNATIVES = ("two-sided", "less", "greater")


def welch_p(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, alternative: str = "two-sided") -> float:
    """
    Welch's t-test (unequal variances) of the means of ``a`` and ``b``: ``scipy.stats.ttest_ind(equal_var=False)``.

    Where neither side has any spread the test is degenerate; its limit is used: 1.0 for equal means, and for
    different means 0.0 when the difference goes the alternative's way, 1.0 otherwise.

    :param a: the first sample (e.g. ours)
    :param b: the second sample
    :param alternative: ``"two-sided"``, ``"less"`` (the mean of ``a`` is below that of ``b``) or ``"greater"``
    :return: the p-value, ``nan`` with fewer than two values on a side
    """
    if alternative not in ALTERNATIVES:
        raise ValueError(f"alternative must be one of {ALTERNATIVES}, got {alternative!r}")
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(x) < 2 or len(y) < 2:
        return math.nan
    if np.std(x) == 0 and np.std(y) == 0:
        difference = float(np.mean(x) - np.mean(y))
        if difference == 0:
            return 1.0
        favoured = alternative == "two-sided" or (difference < 0) == (alternative == "less")
        return 0.0 if favoured else 1.0
    from scipy import stats

    return float(stats.ttest_ind(x, y, equal_var=False, alternative=alternative).pvalue)


def iqm_intervals(
    scores: Mapping[str, np.ndarray], reps: int = 2000, seed: int = 0
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """
    IQM, median and mean of each algorithm's normalized scores with 95% stratified-bootstrap intervals
    (rliable's ``get_interval_estimates``; Agarwal et al. 2021, "Deep RL at the Edge of the Statistical Precipice").

    rliable's ``StratifiedBootstrap`` draws from numpy's global generator (its ``random_state`` does not reach
    those draws), so that generator is seeded with ``seed`` before each algorithm: the same scores give the same
    intervals every time.

    :param scores: algorithm -> array of shape (runs, tasks)
    :param reps: bootstrap replications
    :param seed: the bootstrap's seed
    :return: ``(points, intervals)``: algorithm -> [IQM, median, mean], and algorithm -> array (2, 3) of the
        intervals' lower and upper ends
    """
    try:
        from rliable import library as rly
        from rliable import metrics
    except ImportError as error:
        raise ImportError("the IQM needs rliable: pip install 'sb3-trpo-plus[bench]'") from error

    aggregate: Callable[[Any], np.ndarray] = lambda x: np.array(  # noqa: E731
        [metrics.aggregate_iqm(x), metrics.aggregate_median(x), metrics.aggregate_mean(x)]
    )
    points, intervals = {}, {}
    for algo, algo_scores in scores.items():
        np.random.seed(seed)
        estimate = rly.get_interval_estimates({algo: algo_scores}, aggregate, reps=reps)
        points[algo], intervals[algo] = estimate[0][algo], estimate[1][algo]
    return points, intervals
