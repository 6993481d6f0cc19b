"""Pairwise two-proportion z-tests of error rates between groups, multiplicity-adjusted.

Test statistics come from statsmodels; this module only arranges cells into families and
records the results.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest

FAMILY_KEYS = ["model", "model_version", "dataset", "protocol", "grouping", "true_emotion"]

ZTEST_COLUMNS = [
    *FAMILY_KEYS,
    "group_a", "group_b", "n_a", "errors_a", "error_rate_a", "n_b", "errors_b", "error_rate_b",
    "difference", "ci_low", "ci_high", "z", "p_value", "p_adjusted", "correction", "family",
    "family_size", "alpha", "significant", "below_min_n",
]


def pairwise_error_ztests(
    accuracy: pd.DataFrame,
    *,
    groupings: tuple[str, ...] = ("race", "gender", "race_gender"),
    correction: str = "holm",
    alpha: float = 0.05,
    min_n: int = 10,
) -> pd.DataFrame:
    """z-test every pair of groups' error rates within each (model, dataset, grouping, emotion).

    `accuracy` has the columns of marts.group_accuracy (n = answered images, correct).
    One family = all pairs of one (model version, dataset, protocol, grouping, true emotion);
    p-values are adjusted within it by `correction` (a statsmodels multipletests method).
    """
    cells = accuracy[accuracy["grouping"].isin(groupings) & (accuracy["n"] > 0)]
    results = []
    for family_values, family in cells.groupby(FAMILY_KEYS, sort=True):
        rows = [_pair_test(a, b) for a, b in itertools.combinations(
            family.sort_values("group_value").itertuples(index=False), 2)]
        if not rows:
            continue
        frame = pd.DataFrame(rows)
        for key, value in zip(FAMILY_KEYS, family_values):
            frame[key] = value
        frame["family"] = "/".join(str(v) for v in family_values)
        frame["family_size"] = len(frame)
        frame["correction"] = correction
        frame["alpha"] = alpha
        testable = frame["p_value"].notna()
        frame["p_adjusted"] = np.nan
        if testable.any():
            reject, adjusted, _, _ = multipletests(frame.loc[testable, "p_value"], alpha=alpha, method=correction)
            frame.loc[testable, "p_adjusted"] = adjusted
        frame["significant"] = frame["p_adjusted"] < alpha
        frame["below_min_n"] = (frame["n_a"] < min_n) | (frame["n_b"] < min_n)
        results.append(frame)
    if not results:
        return pd.DataFrame(columns=ZTEST_COLUMNS)
    return pd.concat(results, ignore_index=True)[ZTEST_COLUMNS]


def _pair_test(a, b) -> dict:
    errors_a, errors_b = int(a.n - a.correct), int(b.n - b.correct)
    n_a, n_b = int(a.n), int(b.n)
    z = p = low = high = np.nan
    # Both groups error-free (or both always wrong): the pooled variance is 0, no test exists.
    if 0 < errors_a + errors_b < n_a + n_b:
        z, p = proportions_ztest([errors_a, errors_b], [n_a, n_b])
        low, high = confint_proportions_2indep(errors_a, n_a, errors_b, n_b, method="wald", compare="diff")
    return {
        "group_a": a.group_value,
        "group_b": b.group_value,
        "n_a": n_a,
        "errors_a": errors_a,
        "error_rate_a": errors_a / n_a,
        "n_b": n_b,
        "errors_b": errors_b,
        "error_rate_b": errors_b / n_b,
        "difference": errors_a / n_a - errors_b / n_b,
        "ci_low": float(low),
        "ci_high": float(high),
        "z": float(z),
        "p_value": float(p),
    }
