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

import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd

KEYS = ["dataset", "protocol", "grouping", "true_emotion", "group_a", "group_b"]
CI_METHOD = "newcomb"
OFFENDER_COLUMNS = [*KEYS, "n_a_new", "n_b_new", "gap_new", "ci_low_new", "ci_high_new",
                    "gap_previous", "ci_low_previous", "ci_high_previous",
                    "change", "change_ci_low", "change_ci_high", "p_value", "p_adjusted"]


def disparities(accuracy: pd.DataFrame, *, groupings=("race", "gender", "race_gender")) -> pd.DataFrame:
    """Error-rate gap between every pair of groups, per model version x dataset x protocol x
    grouping x true emotion, from rows shaped like marts.group_accuracy (n, correct)."""
    from statsmodels.stats.proportion import confint_proportions_2indep
    cells = accuracy[accuracy["grouping"].isin(groupings) & (accuracy["n"] > 0)]
    rows = []
    unit = ["model", "model_version", "dataset", "protocol", "grouping", "true_emotion"]
    for key, family in cells.groupby(unit, sort=True):
        for a, b in itertools.combinations(family.sort_values("group_value").itertuples(index=False), 2):
            errors_a, errors_b = int(a.n - a.correct), int(b.n - b.correct)
            low, high = confint_proportions_2indep(errors_a, int(a.n), errors_b, int(b.n), method=CI_METHOD, compare="diff")
            rate_a, rate_b = errors_a / a.n, errors_b / b.n
            rows.append({
                **dict(zip(unit, key)), "group_a": a.group_value, "group_b": b.group_value,
                "n_a": int(a.n), "error_rate_a": rate_a, "n_b": int(b.n), "error_rate_b": rate_b,
                "gap": rate_a - rate_b, "ci_low": float(low), "ci_high": float(high),
                # issue 22: each rate's binomial variance times its design effect (clustered by identity)
                "gap_variance": _design_effect(a) * rate_a * (1 - rate_a) / a.n
                                + _design_effect(b) * rate_b * (1 - rate_b) / b.n,
            })
    return pd.DataFrame(rows)


def _design_effect(cell) -> float:
    value = getattr(cell, "design_effect", None)
    return float(value) if value is not None and pd.notna(value) else 1.0


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
    from statsmodels.stats.multitest import multipletests
    family = accuracy[(accuracy["model"] == model) & accuracy["model_version"].isin([new_version, previous_version])]
    gaps = disparities(family, groupings=groupings)
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
        compared.loc[testable, "p_adjusted"] = multipletests(compared.loc[testable, "p_value"], alpha=alpha,
                                                             method=correction)[1]
    widened = (compared["gap_new"].abs() > compared["gap_previous"].abs()) & (
        np.sign(compared["change"]) == np.sign(compared["gap_new"]))
    offenders = compared[widened & (compared["p_adjusted"] < alpha)].reset_index()
    return GateResult(offenders.empty, int(len(compared)), offenders[OFFENDER_COLUMNS], correction)
