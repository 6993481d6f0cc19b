"""Cluster-aware two-group comparisons: images of one person are not independent.

Every face set the project reads repeats identities (neutral and smiling; several expressions,
sessions or angles per person). When a model fails on a person rather than on an image, a
binomial test that counts images as independent understates the variance and overstates
significance. The marts record, per cell, the design effect d = v_cluster / v_binomial of its
rate clustered by identity (dbt macro `design_effect`: the sandwich variance of the ratio
estimator over the identities, floored at 1; 1 where no identity repeats).

Method (Rao & Scott 1992, "A simple method for the analysis of clustered binary data",
Biometrics 48): divide each group's count and denominator by its design effect and run the
ordinary test on these effective counts. For two proportions this is the Rao-Scott adjusted
chi-square (= z^2) test; the same effective counts give the cluster-aware Wald interval of the
difference, the Katz interval of a ratio and the Wilson interval of a rate (Korn & Graubard
1998). Chosen over a per-cell GEE fit or a cluster bootstrap because it needs only per-cell
moments (SQL, no model fit per cell, no resampling at 100,000 images), reduces exactly to
the naive test when no identity repeats, and keeps the paper's pooled z-test as its special
case; tests/test_cluster_inference.py checks it against a cluster bootstrap and a GEE.

The test functions are statsmodels'; this module only passes them effective counts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

CLUSTER_METHOD = "rao_scott_identity"  # effective counts count / deff, n / deff (deff by identity)
NAIVE_METHOD = "naive_independent"     # images independent: no identity repeats in either group
NO_CLUSTER_INFO = "naive_no_design_effect"  # input without design effects (not from the marts)


@dataclass(frozen=True)
class GroupCell:
    """One group's count (errors, or images read as an emotion) out of n answered images,
    with the identities behind them and the design effect of count / n."""

    count: int
    n: int
    n_clusters: float
    design_effect: float

    @property
    def effective(self) -> tuple[float, float]:
        return self.count / self.design_effect, self.n / self.design_effect


def group_cell(count: int, n: int, n_clusters=None, design_effect=None) -> GroupCell:
    """A GroupCell; a missing design effect (a frame not from the marts) means independent images."""
    deff = float(design_effect) if design_effect is not None and pd.notna(design_effect) else 1.0
    clusters = float(n_clusters) if n_clusters is not None and pd.notna(n_clusters) else float("nan")
    return GroupCell(int(count), int(n), clusters, max(deff, 1.0))


def group_cells(count, n, n_clusters=None, design_effect=None) -> GroupCell:
    """`group_cell` of many cells at once: a GroupCell whose fields are arrays (a missing design
    effect means independent images, a missing cluster count NaN, as in group_cell)."""
    count = np.asarray(count, dtype=np.int64)
    deff = _floats(design_effect, len(count))
    return GroupCell(count, np.asarray(n, dtype=np.int64), _floats(n_clusters, len(count)),
                     np.maximum(np.where(np.isnan(deff), 1.0, deff), 1.0))


def side_cells(pairs: pd.DataFrame, counts, side: str) -> GroupCell:
    """The cells of one side ("a" or "b") of a frame of pairs whose columns carry the side as a
    suffix (n_a, n_clusters_a, design_effect_a, ...); `counts`: that side's counts."""
    return group_cells(counts, pairs[f"n_{side}"], pairs.get(f"n_clusters_{side}"), pairs.get(f"design_effect_{side}"))


def _floats(values, size: int) -> np.ndarray:
    if values is None:
        return np.full(size, np.nan)
    return pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").to_numpy(float)


def inference_methods(a: GroupCell, b: GroupCell) -> np.ndarray:
    """Which values decide significance: cluster-aware where a group repeats identities (cells
    of scalars or of arrays)."""
    no_info = np.isnan(a.n_clusters) | np.isnan(b.n_clusters)
    repeats = (a.n_clusters < a.n) | (b.n_clusters < b.n)
    return np.where(no_info, NO_CLUSTER_INFO, np.where(repeats, CLUSTER_METHOD, NAIVE_METHOD))


def inference_method(a: GroupCell, b: GroupCell) -> str:
    return str(inference_methods(a, b))


def _counts(cell: GroupCell, clustered) -> tuple:
    """The counts a test reads: effective (count / deff, n / deff) where `clustered`."""
    effective_count, effective_n = cell.effective
    return np.where(clustered, effective_count, cell.count), np.where(clustered, effective_n, cell.n)


def _testable(a: GroupCell, b: GroupCell):
    """A pooled rate strictly between 0 and 1: the pooled variance is positive, a test exists."""
    pooled = a.count + b.count
    return (0 < pooled) & (pooled < a.n + b.n)


def pooled_ztests(a: GroupCell, b: GroupCell, clustered) -> tuple[np.ndarray, np.ndarray]:
    """The pooled two-proportion z-test (a minus b) of every pair of cells at once, on the
    counts or, where `clustered`, on the effective counts (the Rao-Scott test); NaN where the
    pooled rate is 0 or 1. statsmodels' score test of the difference without the small-sample
    correction is this test (proportions_ztest's z to ~1e-14, tests/test_cluster_inference.py),
    and takes arrays where proportions_ztest takes one pair (0.16 ms a call: ~10^6 pairs at 200
    versions)."""
    from statsmodels.stats.proportion import test_proportions_2indep
    (count_a, n_a), (count_b, n_b) = _counts(a, clustered), _counts(b, clustered)
    with np.errstate(divide="ignore", invalid="ignore"):
        result = test_proportions_2indep(count_a, n_a, count_b, n_b, method="score", compare="diff",
                                         correction=False)
    testable = _testable(a, b)
    return np.where(testable, result.statistic, np.nan), np.where(testable, result.pvalue, np.nan)


def difference_intervals(a: GroupCell, b: GroupCell, clustered, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Wald interval of rate_a - rate_b (statsmodels) of every pair of cells, on effective
    counts where `clustered`; NaN where the pooled rate is 0 or 1."""
    from statsmodels.stats.proportion import confint_proportions_2indep
    (count_a, n_a), (count_b, n_b) = _counts(a, clustered), _counts(b, clustered)
    with np.errstate(divide="ignore", invalid="ignore"):
        low, high = confint_proportions_2indep(count_a, n_a, count_b, n_b, method="wald", compare="diff",
                                               alpha=alpha)
    testable = _testable(a, b)
    return np.where(testable, low, np.nan), np.where(testable, high, np.nan)


def comparisons(a: GroupCell, b: GroupCell, alpha: float = 0.05) -> pd.DataFrame:
    """Naive and cluster-aware z-test and difference interval of every pair (a[i], b[i]) of
    cells (`group_cells`), and which of them decides (`inference`): the naive values in
    *_naive columns, the deciding ones in z / p_value / ci_low / ci_high. A row per pair."""
    method = inference_methods(a, b)
    clustered = method == CLUSTER_METHOD
    z_naive, p_naive = pooled_ztests(a, b, clustered=False)
    low_naive, high_naive = difference_intervals(a, b, clustered=False, alpha=alpha)
    z, p = pooled_ztests(a, b, clustered=True)
    low, high = difference_intervals(a, b, clustered=True, alpha=alpha)
    return pd.DataFrame({
        "z": np.where(clustered, z, z_naive), "p_value": np.where(clustered, p, p_naive),
        "ci_low": np.where(clustered, low, low_naive), "ci_high": np.where(clustered, high, high_naive),
        "z_naive": z_naive, "p_value_naive": p_naive, "ci_low_naive": low_naive, "ci_high_naive": high_naive,
        "inference": method.astype(object),
        "n_clusters_a": a.n_clusters, "n_clusters_b": b.n_clusters,
        "design_effect_a": a.design_effect, "design_effect_b": b.design_effect,
    }, index=pd.RangeIndex(len(method)))


def comparison(a: GroupCell, b: GroupCell, alpha: float = 0.05) -> dict:
    """`comparisons` of one pair of cells, as a dict of scalars."""
    def one(cell: GroupCell) -> GroupCell:
        return GroupCell(*(np.atleast_1d(value) for value in (cell.count, cell.n, cell.n_clusters, cell.design_effect)))
    return {key: (value.item() if hasattr(value, "item") else value)
            for key, value in comparisons(one(a), one(b), alpha).iloc[0].items()}


def zero_count_ratio_bound(a: GroupCell, b: GroupCell, clustered: bool, alpha: float = 0.05) -> tuple[float, float]:
    """The interval of rate_a / rate_b when b has no such error (count_b = 0 < count_a): the
    score (Miettinen-Nurminen) interval of statsmodels, which there is one-sided, [low, inf)
    (e.g. 10/40 vs 0/40: [2.76, inf)); on effective counts when `clustered`. A zero group's
    design effect is the ICC = 1 bound of its cluster sizes (dbt macro design_effect), so it
    counts people, not faces."""
    from statsmodels.stats.proportion import confint_proportions_2indep
    (ca, na), (cb, nb) = (a.effective, b.effective) if clustered else ((a.count, a.n), (b.count, b.n))
    # statsmodels (Koopman's interval) divides by two roots of a cubic; with count_b = 0 one
    # root is 0, and that division is the upper end, +inf: expected here, so no warning.
    with np.errstate(divide="ignore", invalid="ignore"):
        low, _ = confint_proportions_2indep(ca, na, cb, nb, method="score", compare="ratio", alpha=alpha)
    return float(low), float("inf")


CLUSTER_COLUMNS = ["z_naive", "p_value_naive", "ci_low_naive", "ci_high_naive", "inference",
                   "n_clusters_a", "n_clusters_b", "design_effect_a", "design_effect_b"]
