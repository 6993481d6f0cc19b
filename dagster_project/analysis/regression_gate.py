"""Bias regression gate: did a new model version widen a group disparity?

For one model family, every disparity of the new version (difference in error rate between two
groups of a grouping, per dataset, protocol and true emotion, 'all' pooled) is compared with the
same disparity of the previous version. A disparity *regressed* when

* the new version's gap is further from zero than either end of the previous version's 95 %
  interval (it grew beyond the old interval), in the same direction as the new gap, and
* the new gap's own 95 % interval excludes zero (it is not noise), and
* both groups have at least `min_n` answered images in both versions.

Intervals are statsmodels' `confint_proportions_2indep` (Newcombe's hybrid score interval for a
difference of proportions), so the gate inherits a well-studied interval rather than a formula
of ours.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd
from statsmodels.stats.proportion import confint_proportions_2indep

KEYS = ["dataset", "protocol", "grouping", "true_emotion", "group_a", "group_b"]
CI_METHOD = "newcomb"


def disparities(accuracy: pd.DataFrame, *, groupings=("race", "gender", "race_gender")) -> pd.DataFrame:
    """Error-rate gap between every pair of groups, per model version x dataset x protocol x
    grouping x true emotion, from rows shaped like marts.group_accuracy (n, correct)."""
    cells = accuracy[accuracy["grouping"].isin(groupings) & (accuracy["n"] > 0)]
    rows = []
    unit = ["model", "model_version", "dataset", "protocol", "grouping", "true_emotion"]
    for key, family in cells.groupby(unit, sort=True):
        for a, b in itertools.combinations(family.sort_values("group_value").itertuples(index=False), 2):
            errors_a, errors_b = int(a.n - a.correct), int(b.n - b.correct)
            low, high = confint_proportions_2indep(errors_a, int(a.n), errors_b, int(b.n), method=CI_METHOD, compare="diff")
            rows.append({
                **dict(zip(unit, key)), "group_a": a.group_value, "group_b": b.group_value,
                "n_a": int(a.n), "error_rate_a": errors_a / a.n, "n_b": int(b.n), "error_rate_b": errors_b / b.n,
                "gap": errors_a / a.n - errors_b / b.n, "ci_low": float(low), "ci_high": float(high),
            })
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class GateResult:
    passed: bool
    n_compared: int
    offenders: pd.DataFrame  # one row per regressed disparity, both versions side by side

    def summary(self) -> str:
        if self.passed:
            return f"no disparity grew beyond its previous interval ({self.n_compared} compared)"
        return f"{len(self.offenders)} of {self.n_compared} disparities grew beyond the previous version's interval"


def regression_gate(
    accuracy: pd.DataFrame,
    *,
    model: str,
    new_version: str,
    previous_version: str,
    min_n: int = 10,
    groupings=("race", "gender", "race_gender"),
) -> GateResult:
    """Compare `new_version` of `model` with `previous_version` (see module docstring)."""
    family = accuracy[(accuracy["model"] == model) & accuracy["model_version"].isin([new_version, previous_version])]
    gaps = disparities(family, groupings=groupings)
    if gaps.empty:
        return GateResult(True, 0, gaps)
    new = gaps[gaps["model_version"] == new_version].set_index(KEYS)
    old = gaps[gaps["model_version"] == previous_version].set_index(KEYS)
    both = new.join(old, how="inner", lsuffix="_new", rsuffix="_previous")
    large_enough = both[[f"n_{s}_{v}" for s in "ab" for v in ("new", "previous")]].min(axis=1) >= min_n
    direction = np.sign(both["gap_new"])
    beyond_previous = direction * both["gap_new"] > np.maximum(direction * both["ci_low_previous"],
                                                               direction * both["ci_high_previous"])
    excludes_zero = (both["ci_low_new"] > 0) | (both["ci_high_new"] < 0)
    offenders = both[large_enough & beyond_previous & excludes_zero].reset_index()
    columns = [*KEYS, "n_a_new", "n_b_new", "gap_new", "ci_low_new", "ci_high_new",
               "gap_previous", "ci_low_previous", "ci_high_previous"]
    return GateResult(offenders.empty, int(large_enough.sum()), offenders[columns])
