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


def inference_method(a: GroupCell, b: GroupCell) -> str:
    """Which values decide significance: cluster-aware where a group repeats identities."""
    if np.isnan(a.n_clusters) or np.isnan(b.n_clusters):
        return NO_CLUSTER_INFO
    return CLUSTER_METHOD if (a.n_clusters < a.n or b.n_clusters < b.n) else NAIVE_METHOD


def pooled_ztest(a: GroupCell, b: GroupCell, clustered: bool) -> tuple[float, float]:
    """statsmodels' pooled two-proportion z-test (a minus b) on the counts, or on the
    effective counts (the Rao-Scott test); NaN when the pooled rate is 0 or 1."""
    from statsmodels.stats.proportion import proportions_ztest
    if not 0 < a.count + b.count < a.n + b.n:
        return float("nan"), float("nan")
    (ca, na), (cb, nb) = (a.effective, b.effective) if clustered else ((a.count, a.n), (b.count, b.n))
    z, p = proportions_ztest(np.array([ca, cb]), np.array([na, nb]))
    return float(z), float(p)


def difference_interval(a: GroupCell, b: GroupCell, clustered: bool, alpha: float = 0.05) -> tuple[float, float]:
    """Wald interval of rate_a - rate_b (statsmodels), on effective counts when `clustered`."""
    from statsmodels.stats.proportion import confint_proportions_2indep
    if not 0 < a.count + b.count < a.n + b.n:
        return float("nan"), float("nan")
    (ca, na), (cb, nb) = (a.effective, b.effective) if clustered else ((a.count, a.n), (b.count, b.n))
    low, high = confint_proportions_2indep(ca, na, cb, nb, method="wald", compare="diff", alpha=alpha)
    return float(low), float(high)


def comparison(a: GroupCell, b: GroupCell, alpha: float = 0.05) -> dict:
    """Naive and cluster-aware z-test and difference interval of one pair of groups, and which
    of them decides (`inference`): the naive values in *_naive columns, the deciding ones in
    z / p_value / ci_low / ci_high."""
    method = inference_method(a, b)
    clustered = method == CLUSTER_METHOD
    z_naive, p_naive = pooled_ztest(a, b, clustered=False)
    low_naive, high_naive = difference_interval(a, b, clustered=False, alpha=alpha)
    z, p = pooled_ztest(a, b, clustered=True) if clustered else (z_naive, p_naive)
    low, high = difference_interval(a, b, clustered=True, alpha=alpha) if clustered else (low_naive, high_naive)
    return {
        "z": z, "p_value": p, "ci_low": low, "ci_high": high,
        "z_naive": z_naive, "p_value_naive": p_naive, "ci_low_naive": low_naive, "ci_high_naive": high_naive,
        "inference": method,
        "n_clusters_a": a.n_clusters, "n_clusters_b": b.n_clusters,
        "design_effect_a": a.design_effect, "design_effect_b": b.design_effect,
    }


def zero_count_ratio_bound(a: GroupCell, b: GroupCell, clustered: bool, alpha: float = 0.05) -> tuple[float, float]:
    """The interval of rate_a / rate_b when b has no such error (count_b = 0 < count_a): the
    score (Miettinen-Nurminen) interval of statsmodels, which there is one-sided, [low, inf)
    (e.g. 10/40 vs 0/40: [2.76, inf)); on effective counts when `clustered`. A zero group's
    design effect is the ICC = 1 bound of its cluster sizes (dbt macro design_effect), so it
    counts people, not faces."""
    from statsmodels.stats.proportion import confint_proportions_2indep
    (ca, na), (cb, nb) = (a.effective, b.effective) if clustered else ((a.count, a.n), (b.count, b.n))
    low, _ = confint_proportions_2indep(ca, na, cb, nb, method="score", compare="ratio", alpha=alpha)
    return float(low), float("inf")


CLUSTER_COLUMNS = ["z_naive", "p_value_naive", "ci_low_naive", "ci_high_naive", "inference",
                   "n_clusters_a", "n_clusters_b", "design_effect_a", "design_effect_b"]
