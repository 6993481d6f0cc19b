"""Bias regression gate: did a new model version widen a group disparity?

For one model family, every disparity of the new version (difference in error rate between two
groups of a grouping, per dataset, protocol and true emotion, 'all' pooled) is paired with the
same disparity of the previous version, and the CHANGE in the gap is tested:

    change = gap_new - gap_previous,  gap = error_rate_a - error_rate_b,
    SE(change) = sqrt(sum over the four rates of deff p (1 - p) / n)   (Wald, unpooled),

deff being the rate's design effect over identities (marts.group_accuracy.design_effect: a
person's images are not independent; 1 where no identity repeats or the column is absent),

with its (1 - alpha) interval and a two-sided z-test of change = 0 (scipy.stats.norm). The
versions are treated as independent samples; they answer the same images, and a positive
correlation between them only makes this SE larger than the paired one (conservative). The
p-values of all compared disparities of one version pair are one family, controlled by
`correction` (statsmodels multipletests: 'holm' for the family-wise error rate, 'fdr_bh' for
the false discovery rate; statistics.gate_correction). A disparity *regressed* when

* its change is significant after the correction, and
* the gap moved away from zero (|gap_new| > |gap_previous|, the change in the new gap's
  direction), and
* both groups have at least `min_n` answered images in both versions.

Per-version gap intervals are statsmodels' `confint_proportions_2indep` (Newcombe's hybrid
score interval), reported beside the change.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from dagster_project.analysis.results import collections_of_new_objects_only

KEYS = ["dataset", "protocol", "grouping", "true_emotion", "group_a", "group_b"]
CI_METHOD = "newcomb"
GAP_COLUMNS = ["group_a", "group_b", "n_a", "error_rate_a", "n_b", "error_rate_b", "gap", "ci_low", "ci_high",
               "gap_variance"]
OFFENDER_COLUMNS = [*KEYS, "n_a_new", "n_b_new", "gap_new", "ci_low_new", "ci_high_new",
                    "gap_previous", "ci_low_previous", "ci_high_previous",
                    "change", "change_ci_low", "change_ci_high", "p_value", "p_adjusted"]


def disparities(accuracy: pd.DataFrame, *, groupings=("race", "gender", "race_gender")) -> pd.DataFrame:
    """Error-rate gap between every pair of groups, per model version x dataset x protocol x
    grouping x true emotion, from rows shaped like marts.group_accuracy (n, correct): within
    each of those, every pair (a, b) of groups in group_value order, a first. The intervals come
    from one vectorised call for every pair (a report of 200 slices has ~10^5 pairs)."""
    from statsmodels.stats.proportion import confint_proportions_2indep
    unit = ["model", "model_version", "dataset", "protocol", "grouping", "true_emotion"]
    cells = accuracy[accuracy["grouping"].isin(groupings) & (accuracy["n"] > 0)].dropna(subset=unit)
    cells = cells.sort_values([*unit, "group_value"], kind="stable")
    cells = pd.DataFrame({
        **{column: cells[column] for column in unit}, "group_value": cells["group_value"],
        "n": cells["n"].astype(int), "errors": (cells["n"] - cells["correct"]).astype(int),
        # issue 22: each rate's binomial variance is times its design effect (clustered by identity)
        "deff": cells["design_effect"].astype(float).fillna(1.0) if "design_effect" in cells else 1.0,
        "position": cells.groupby(unit, sort=False).cumcount(),
    })
    pairs = cells.merge(cells, on=unit, suffixes=("_a", "_b"))
    pairs = pairs[pairs["position_a"] < pairs["position_b"]].sort_values([*unit, "position_a", "position_b"],
                                                                         kind="stable")
    if pairs.empty:
        return pd.DataFrame(columns=[*unit, *GAP_COLUMNS])
    low, high = confint_proportions_2indep(pairs["errors_a"].to_numpy(), pairs["n_a"].to_numpy(),
                                           pairs["errors_b"].to_numpy(), pairs["n_b"].to_numpy(),
                                           method=CI_METHOD, compare="diff")
    rate_a, rate_b = pairs["errors_a"] / pairs["n_a"], pairs["errors_b"] / pairs["n_b"]
    return pd.DataFrame({
        **{column: pairs[column] for column in unit}, "group_a": pairs["group_value_a"],
        "group_b": pairs["group_value_b"], "n_a": pairs["n_a"], "error_rate_a": rate_a, "n_b": pairs["n_b"],
        "error_rate_b": rate_b, "gap": rate_a - rate_b, "ci_low": np.asarray(low, dtype=float),
        "ci_high": np.asarray(high, dtype=float),
        "gap_variance": pairs["deff_a"] * rate_a * (1 - rate_a) / pairs["n_a"]
                        + pairs["deff_b"] * rate_b * (1 - rate_b) / pairs["n_b"],
    }).reset_index(drop=True)


def gap_changes(new: pd.DataFrame, old: pd.DataFrame, *, alpha: float = 0.05) -> pd.DataFrame:
    """new.join(old) on KEYS with the change in gap, its Wald interval and z-test p-value."""
    from scipy.stats import norm
    both = new.join(old, how="inner", lsuffix="_new", rsuffix="_previous")
    both["change"] = both["gap_new"] - both["gap_previous"]
    se = np.sqrt(both["gap_variance_new"] + both["gap_variance_previous"])
    half = norm.ppf(1 - alpha / 2) * se
    both["change_ci_low"], both["change_ci_high"] = both["change"] - half, both["change"] + half
    with np.errstate(divide="ignore", invalid="ignore"):
        z = both["change"] / se
    # SE 0 (all four rates 0 or 1): no test exists; an unchanged gap is no evidence either way
    both["p_value"] = np.where(se > 0, 2 * norm.sf(np.abs(z)), np.nan)
    return both


@dataclass(frozen=True)
class GateResult:
    passed: bool
    n_compared: int
    offenders: pd.DataFrame  # one row per regressed disparity, both versions side by side
    correction: str = "holm"

    def summary(self) -> str:
        if self.passed:
            return f"no disparity widened significantly ({self.n_compared} compared, {self.correction})"
        return (f"{len(self.offenders)} of {self.n_compared} disparities widened significantly "
                f"(change in gap, {self.correction})")


def regression_gate(
    accuracy: pd.DataFrame,
    *,
    model: str,
    new_version: str,
    previous_version: str,
    min_n: int = 10,
    groupings=("race", "gender", "race_gender"),
    alpha: float = 0.05,
    correction: str = "holm",
) -> GateResult:
    """Compare `new_version` of `model` with `previous_version` (see module docstring)."""
    family = accuracy[(accuracy["model"] == model) & accuracy["model_version"].isin([new_version, previous_version])]
    return gate_from_gaps(disparities(family, groupings=groupings), new_version=new_version,
                          previous_version=previous_version, min_n=min_n, alpha=alpha, correction=correction)


def gate_from_gaps(gaps: pd.DataFrame, *, new_version: str, previous_version: str, min_n: int = 10,
                   alpha: float = 0.05, correction: str = "holm") -> GateResult:
    """regression_gate on the disparities of one model's versions (computed once for many
    comparisons: the report compares every version with the one before)."""
    from statsmodels.stats.multitest import multipletests
    if gaps.empty:
        return GateResult(True, 0, pd.DataFrame(columns=OFFENDER_COLUMNS), correction)
    new = gaps[gaps["model_version"] == new_version].set_index(KEYS)
    old = gaps[gaps["model_version"] == previous_version].set_index(KEYS)
    both = gap_changes(new, old, alpha=alpha)
    large_enough = both[[f"n_{s}_{v}" for s in "ab" for v in ("new", "previous")]].min(axis=1) >= min_n
    compared = both[large_enough].copy()
    compared["p_adjusted"] = np.nan
    testable = compared["p_value"].notna()
    if testable.any():
        with collections_of_new_objects_only():  # Holm's gc.collect() would walk the whole heap
            compared.loc[testable, "p_adjusted"] = multipletests(compared.loc[testable, "p_value"], alpha=alpha,
                                                                 method=correction)[1]
    widened = (compared["gap_new"].abs() > compared["gap_previous"].abs()) & (
        np.sign(compared["change"]) == np.sign(compared["gap_new"]))
    offenders = compared[widened & (compared["p_adjusted"] < alpha)].reset_index()
    return GateResult(offenders.empty, int(len(compared)), offenders[OFFENDER_COLUMNS], correction)
