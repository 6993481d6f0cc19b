"""Where is the model worst? One answer per slice that survives multiple testing.

Every pairwise error-rate test of a slice (proportions.pairwise_error_ztests: every configured
grouping and intersection, every true emotion and 'all'; cluster-aware where identities
repeat) becomes one family, m = every test with a p-value, adjusted together by Benjamini-
Hochberg (statsmodels multipletests 'fdr_bh': the expected share of false disparities among
those reported is at most alpha). Each pair is oriented worse / better (group_a has the higher
error rate); the disparities that survive are ranked by their error-rate difference, largest
first. Pairs with a group below min_cell_n are not tested (not in m) and never ranked.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from dagster_project.analysis.results import adjust_within_families, result_frame, result_row

WORST_EXTRA_COLUMNS = ["rank", "survives_fdr", "true_emotion", "group_a", "group_b", "error_rate_a", "error_rate_b",
                       "inference"]


def worst_subgroups(ztests: pd.DataFrame, *, alpha: float = 0.05, min_n: int = 10) -> pd.DataFrame:
    """RESULT_COLUMNS rows (analysis 'worst_subgroup', measure 'error_rate_difference', one per
    tested pair, worse group first), p_adjusted = BH over the slice, then WORST_EXTRA_COLUMNS:
    rank (1 = the largest surviving disparity; null when it does not survive)."""
    columns = [*result_frame([], min_n).columns, *WORST_EXTRA_COLUMNS]
    tested = ztests[ztests["p_value"].notna()] if len(ztests) else ztests
    if tested.empty:
        return pd.DataFrame({col: pd.Series(dtype=object) for col in columns})
    rows = [_oriented_row(r, min_n) for r in tested.itertuples(index=False)]
    frame = result_frame([row for row, _ in rows], min_n)
    extras = pd.DataFrame([extra for _, extra in rows], index=frame.index)
    frame = adjust_within_families(frame, "fdr_bh", alpha)
    frame["survives_fdr"] = frame["p_adjusted"] < alpha
    survivors = frame[frame["survives_fdr"]].sort_values(["estimate", "p_adjusted"], ascending=[False, True])
    frame["rank"] = pd.Series(np.arange(1, len(survivors) + 1), index=survivors.index).astype("Int64")
    frame = pd.concat([frame, extras], axis=1)
    return frame.sort_values(["rank", "p_adjusted"], na_position="last")[columns].reset_index(drop=True)


def _oriented_row(r, min_n: int) -> tuple[dict, dict]:
    """One test, the group with the higher error rate first (the difference and its interval
    flip with it; a two-sided p-value does not change)."""
    flip = r.error_rate_a < r.error_rate_b
    worse, better = (r.group_b, r.group_a) if flip else (r.group_a, r.group_b)
    rate_worse, rate_better = (r.error_rate_b, r.error_rate_a) if flip else (r.error_rate_a, r.error_rate_b)
    low, high = (-r.ci_high, -r.ci_low) if flip else (r.ci_low, r.ci_high)
    family = "/".join(str(v) for v in (r.model, r.model_version, r.dataset, r.protocol, "every grouping and emotion"))
    row = result_row(
        analysis="worst_subgroup", model=r.model, model_version=r.model_version, dataset=r.dataset,
        protocol=r.protocol, subset_kind=r.grouping, subset=f"{worse} vs {better}", measure="error_rate_difference",
        n=int(r.n_a + r.n_b), estimate=rate_worse - rate_better, ci_low=low, ci_high=high, statistic=abs(r.z),
        p_value=r.p_value, family=family,
        detail=json.dumps({
            "true_emotion": str(r.true_emotion), "test": "stats.error_rate_ztests (pooled z; Rao-Scott where "
            "identities repeat)", "inference": str(r.inference), "denominator": "answered images of each group",
            "ci_method": "Wald interval of the difference (on effective counts where identities repeat)",
            "min_cell_n": min_n,
        }),
    )
    extra = {"true_emotion": str(r.true_emotion), "group_a": str(worse), "group_b": str(better),
             "error_rate_a": float(rate_worse), "error_rate_b": float(rate_better), "inference": str(r.inference)}
    return row, extra
