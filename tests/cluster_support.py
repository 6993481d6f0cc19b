"""Design effects computed independently of the marts' SQL (statsmodels' cluster-robust
variance), and clustered binary data for the cluster-inference tests."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import statsmodels.api as sm


def statsmodels_design_effect(y: np.ndarray, clusters: np.ndarray) -> float:
    """The rules of the dbt macro design_effect, with the clustered variance from statsmodels:
    an intercept-only OLS with cov_type='cluster' gives G / (G - 1) * sum_i (y_i - p m_i)^2 / n^2."""
    y = np.asarray(y, dtype=float)
    codes = pd.factorize(pd.Series(clusters))[0]
    n, n_clusters, p = len(y), len(np.unique(codes)), y.mean()
    sizes = np.bincount(codes)
    if n_clusters >= n:
        return 1.0
    if n_clusters < 2 or p in (0.0, 1.0):
        return float((sizes.astype(float) ** 2).sum() / n)
    fit = sm.OLS(y, np.ones((n, 1))).fit(cov_type="cluster", cov_kwds={"groups": codes})
    return max(1.0, float(fit.bse[0] ** 2) / (p * (1 - p) / n))


def clustered_errors(rng: np.random.Generator, people: int, faces: int, mean_rate: float,
                     icc_concentration: float) -> tuple[np.ndarray, np.ndarray]:
    """`people` x `faces` binary errors whose per-person error rate is Beta with mean
    `mean_rate` and concentration a + b = `icc_concentration` (small: strong identity effect;
    the ICC of a beta-binomial is 1 / (1 + a + b)). Returns (errors, person ids)."""
    a = mean_rate * icc_concentration
    rates = rng.beta(a, icc_concentration - a, size=people)
    errors = rng.random((people, faces)) < rates[:, None]
    return errors.ravel().astype(int), np.repeat(np.arange(people), faces)


def person_failures(people: int, faces: int, failing: int) -> tuple[np.ndarray, np.ndarray]:
    """The issue's design: `failing` of `people` fail on every one of their `faces`, the rest never."""
    errors = np.zeros((people, faces), dtype=int)
    errors[:failing] = 1
    return errors.ravel(), np.repeat(np.arange(people), faces)


def null_rejection_rates(sims: int, p_values: Callable[[], tuple[float, float] | None],
                         alpha: float = 0.05) -> tuple[float, float, int]:
    """Rejection rates at `alpha` of the naive and the cluster-aware test over `sims` null data
    sets; `p_values()` draws one and returns (naive p, cluster-aware p), or None when it has no
    test. Returns (naive rate, cluster-aware rate, data sets tested)."""
    naive = clustered = tested = 0
    for _ in range(sims):
        drawn = p_values()
        if drawn is None:
            continue
        tested += 1
        naive += drawn[0] < alpha
        clustered += drawn[1] < alpha
    return naive / tested, clustered / tested, tested
