"""Pairwise two-proportion z-tests of error rates between groups, multiplicity-adjusted.

* `pairwise_error_ztests`: error-rate differences from marts.group_accuracy (own columns).
* `misclassification_tests`: per-confusion rate ratios from marts.misclassification_ratios
  (RESULT_COLUMNS shape): the counts, ratio and Katz interval are the mart's (one home per
  statistic); this module adds the z-tests and the multiplicity adjustment.

Families (statistics.family, recorded in `family` with m = the testable tests in `family_m`):

* "grouping" (default): one model version x dataset x protocol x grouping, across the true
  emotions (all pairs and outcomes of every emotion adjusted together); the pooled emotion
  'all' re-tests the same images and is a family of its own. Family name ".../<grouping>/
  emotions" or ".../<grouping>/all".
* "emotion": one family per true emotion as well (".../<grouping>/<true_emotion>"); a
  two-level grouping (gender) then has m = 1 per emotion and is never corrected.

A pair without a test (pooled rate 0 or 1) has no p-value and is not counted in m.

Test statistics come from statsmodels; this module only arranges cells into families and
records the results.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from dagster_project.analysis.clustered import (
    CLUSTER_COLUMNS,
    CLUSTER_METHOD,
    comparisons,
    group_cell,
    side_cells,
    zero_count_ratio_bound,
)
from dagster_project.analysis.results import (
    RESULT_COLUMNS,
    adjust_within_families,
    collections_of_new_objects_only,
    result_frame,
    result_row,
)

UNIT_KEYS = ["model", "model_version", "dataset", "protocol"]
FAMILY_KEYS = [*UNIT_KEYS, "grouping", "true_emotion"]
FAMILY_SCOPES = ("grouping", "emotion")

ZTEST_COLUMNS = [
    *FAMILY_KEYS,
    "group_a", "group_b", "n_a", "errors_a", "error_rate_a", "n_b", "errors_b", "error_rate_b",
    "difference", "ci_low", "ci_high", "z", "p_value", "p_adjusted", "correction", "family",
    "family_size", "family_m", "alpha", "significant", "below_min_n",
    # issue 22: z / p_value / ci_low / ci_high are the values that decide (cluster-aware where a
    # group repeats identities: clustered.comparisons); the naive ones and the design beside them.
    *CLUSTER_COLUMNS, "note",
]


def family_name(keys: pd.DataFrame, family: str) -> pd.Series:
    """The family of each row with FAMILY_KEYS columns under scope `family` (module docstring)."""
    if family not in FAMILY_SCOPES:
        raise ValueError(f"statistics.family must be one of {FAMILY_SCOPES}, got {family!r}")
    last = keys["true_emotion"].astype(str)
    if family == "grouping":
        last = last.where(last == "all", "emotions")
    parts = [keys[k].astype(str) for k in FAMILY_KEYS[:-1]] + [last]
    return pd.Series(["/".join(values) for values in zip(*parts)], index=keys.index, dtype=object)


def pairwise_error_ztests(
    accuracy: pd.DataFrame,
    *,
    groupings: tuple[str, ...] = ("race", "gender", "race_gender"),
    correction: str = "holm",
    alpha: float = 0.05,
    min_n: int = 10,
    family: str = "grouping",
) -> pd.DataFrame:
    """z-test every pair of groups' error rates within each (model, dataset, grouping, emotion).

    `accuracy` has the columns of marts.group_accuracy (n = answered images, correct, and
    n_clusters / design_effect: the identities behind a cell and its design effect).
    z / p_value / ci_low / ci_high: the Rao-Scott test and interval on effective counts where
    either group repeats identities, else the naive pooled z-test (`inference` says which;
    the naive values stay in z_naive, p_value_naive, ci_low_naive, ci_high_naive).
    p-values are adjusted by `correction` (a statsmodels multipletests method) within each
    family (see the module docstring); family_size = pairs in the family, family_m = those
    with a test (the m of the adjustment).
    """
    from statsmodels.stats.multitest import multipletests
    cells = accuracy[accuracy["grouping"].isin(groupings) & (accuracy["n"] > 0)]
    frame = _group_pairs(cells)
    if frame.empty:
        return pd.DataFrame(columns=ZTEST_COLUMNS)
    # issue 22: a pair with a group below min_cell_n is flagged and NOT tested (no p-value, not
    # counted in the family's m), so a few faces can never be called a significant disparity.
    frame["below_min_n"] = (frame["n_a"] < min_n) | (frame["n_b"] < min_n)
    frame.loc[frame["below_min_n"], ["z", "p_value"]] = np.nan
    frame["note"] = np.where(frame["below_min_n"], f"not tested: a group has fewer than {min_n} answered images", "")
    frame["family"] = family_name(frame, family)
    frame["correction"] = correction
    frame["alpha"] = alpha
    frame["p_adjusted"] = np.nan
    frame["family_size"] = frame.groupby("family")["family"].transform("size")
    frame["family_m"] = frame.groupby("family")["p_value"].transform("count")
    with collections_of_new_objects_only():
        for _, idx in frame.groupby("family").groups.items():
            p = frame.loc[idx, "p_value"]
            if p.notna().any():
                _, adjusted, _, _ = multipletests(p.dropna(), alpha=alpha, method=correction)
                frame.loc[p.dropna().index, "p_adjusted"] = adjusted
    frame["significant"] = frame["p_adjusted"] < alpha
    return frame[ZTEST_COLUMNS]


def _group_pairs(cells: pd.DataFrame) -> pd.DataFrame:
    """Every pair of groups (group_a < group_b) within each FAMILY_KEYS cell of `cells`, ordered
    by FAMILY_KEYS, group_a, group_b, with their error counts and both tests (clustered.comparisons,
    all pairs at once). The design effect of an error rate is that of its accuracy; both groups
    error-free (or both always wrong): the pooled variance is 0, no test exists (NaN)."""
    keyed = cells.dropna(subset=FAMILY_KEYS).assign(group_value=lambda f: f["group_value"].astype(str))
    pairs = keyed.merge(keyed, on=FAMILY_KEYS, suffixes=("_a", "_b"))
    pairs = pairs[pairs["group_value_a"] < pairs["group_value_b"]].sort_values(
        [*FAMILY_KEYS, "group_value_a", "group_value_b"], ignore_index=True)
    cell_a, cell_b = (side_cells(pairs, pairs[f"n_{side}"] - pairs[f"correct_{side}"], side) for side in ("a", "b"))
    (errors_a, n_a), (errors_b, n_b) = (cell_a.count, cell_a.n), (cell_b.count, cell_b.n)
    with np.errstate(divide="ignore", invalid="ignore"):
        counts = pd.DataFrame({
            "group_a": pairs["group_value_a"], "group_b": pairs["group_value_b"],
            "n_a": n_a, "errors_a": errors_a, "error_rate_a": errors_a / n_a,
            "n_b": n_b, "errors_b": errors_b, "error_rate_b": errors_b / n_b,
            "difference": errors_a / n_a - errors_b / n_b,
        })
    return pd.concat([comparisons(cell_a, cell_b), counts, pairs[FAMILY_KEYS]], axis=1)


# --------------------------------------------------------------------------------------------
# Misclassification rate ratios between groups (Chhua et al.: "anger read as disgust 2.1x more
# often for Black women than White women"), in the common RESULT_COLUMNS shape.
# --------------------------------------------------------------------------------------------

POOLED_ERROR = "error"   # predicted_emotion label of the pooled "any misclassification" test
ALL_EMOTIONS = "all"     # true_emotion label of the overall (all emotions pooled) family

MISCLASSIFICATION_EXTRA_COLUMNS = [
    "true_emotion", "predicted_emotion", "group_a", "group_b",
    "n_a", "count_a", "rate_a", "n_b", "count_b", "rate_b",
    # issue 22: the naive values beside the deciding (cluster-aware) ones, and the design
    "statistic_naive", "p_value_naive", "ci_low_naive", "ci_high_naive", "inference",
    "n_clusters_a", "n_clusters_b", "design_effect_a", "design_effect_b",
]


def higher_first(ratios: pd.DataFrame) -> pd.DataFrame:
    """One orientation per pair of marts.misclassification_ratios (which holds both): group_a
    is the group with the HIGHER rate (ties: the alphabetically first), so ratio >= 1 and
    ci_low > 1 finds every disparity whichever group is worse off."""
    higher = (ratios["rate_a"] > ratios["rate_b"]) | (
        (ratios["rate_a"] == ratios["rate_b"]) & (ratios["group_a"].astype(str) < ratios["group_b"].astype(str)))
    return ratios[higher]


def misclassification_tests(
    ratios: pd.DataFrame,
    *,
    corrections: tuple[str, ...] = ("holm", "fdr_bh"),
    min_n: int = 10,
    alpha: float = 0.05,
    family: str = "grouping",
) -> pd.DataFrame:
    """Rate ratio and two-proportion z-test of every misclassification between every pair of groups.

    `ratios`: rows of marts.misclassification_ratios (both orientations of each pair of groups;
    per grouping, true emotion and wrong emotion of the vocabulary, plus predicted_emotion
    'error' = any misclassification and true_emotion 'all' = emotions pooled). Denominators are
    the answered images of the group with that true emotion.

    One row per pair, oriented "higher / lower" (`higher_first`). Columns (RESULT_COLUMNS,
    analysis='misclassification', measure='rate_ratio'):

    * subset_kind = grouping, subset = "group_a vs group_b" (group_a the higher rate);
    * estimate, ci_low, ci_high = the mart's ratio and Katz log interval -- its cluster-aware
      one (cluster_ci_*, on effective counts) where a group repeats identities (`inference`,
      module clustered) -- null where the lower rate or a count is 0: the row is kept and
      says so in detail.note;
    * statistic/p_value = the pooled two-proportion z-test (clustered.pooled_ztests) that
      Chhua et al. report (z >= 0 here), on effective counts (Rao-Scott) where a group repeats
      identities; the naive test and interval in statistic_naive, p_value_naive, ci_*_naive.
      NaN when the pooled rate is 0 or 1 (not counted in m).
      The z-test is on the difference while the interval is on the ratio, so near p = 0.05
      they can disagree on "significant";
    * n = n_a + n_b; below_min_n is True when EITHER group has fewer than `min_n` images;
    * family (module docstring; `family` = "grouping" or "emotion"), family_m = tests in it;
    * p_adjusted / correction = the FIRST of `corrections` (statsmodels multipletests within
      family); every further correction gets an extra column ``p_adjusted_<method>``.

    Extra columns after RESULT_COLUMNS: MISCLASSIFICATION_EXTRA_COLUMNS, then the
    ``p_adjusted_<method>`` columns. detail (JSON) repeats the counts and names the methods.
    """
    if not corrections:
        raise ValueError("corrections needs at least one multipletests method")
    extra_p = [f"p_adjusted_{method}" for method in corrections[1:]]
    columns = [*RESULT_COLUMNS, *MISCLASSIFICATION_EXTRA_COLUMNS, *extra_p]
    pairs = higher_first(ratios)
    if pairs.empty:
        return pd.DataFrame({col: pd.Series(dtype=object) for col in columns})
    pairs = pairs.sort_values([*FAMILY_KEYS, "predicted_emotion", "group_a", "group_b"], key=lambda c: c.astype(str))
    families = family_name(pairs, family)
    cells = [side_cells(pairs, pairs[f"count_{side}"], side) for side in ("a", "b")]
    tested = comparisons(*cells).to_dict("records")  # every pair's tests at once
    # Python objects for the row loop: iterating an Arrow-backed string column costs ~2 us a value
    by_row = pairs.astype({column: object for column in pairs.columns if pd.api.types.is_string_dtype(pairs[column])})
    rows = [_misclassification_row(r, fam, test, alpha)
            for r, fam, test in zip(by_row.itertuples(index=False), families, tested)]
    frame = result_frame([{k: r[k] for k in RESULT_COLUMNS} for r in rows], min_n)
    extras = pd.DataFrame([{k: r[k] for k in MISCLASSIFICATION_EXTRA_COLUMNS} for r in rows], index=frame.index)
    frame = pd.concat([frame, extras], axis=1)
    frame["below_min_n"] = (frame["n_a"] < min_n) | (frame["n_b"] < min_n)
    # issue 22: flagged and not tested (no p-value, not in m); the counts and ratio stay.
    frame.loc[frame["below_min_n"], ["statistic", "p_value"]] = np.nan
    frame.loc[frame["below_min_n"], "detail"] = frame.loc[frame["below_min_n"], "detail"].map(
        lambda text: _with_note(text, f"not tested: a group has fewer than {min_n} answered images"))
    for method, column in zip(corrections[1:], extra_p):
        frame[column] = adjust_within_families(frame[RESULT_COLUMNS], method, alpha)["p_adjusted"]
    frame = adjust_within_families(frame, corrections[0], alpha)
    return frame[columns]


def _with_note(detail: str, note: str) -> str:
    values = json.loads(detail)
    values["note"] = "; ".join(part for part in (values.get("note", ""), note) if part)
    return json.dumps(values)


def _misclassification_row(r, family: str, tested: dict, alpha: float) -> dict:
    """One result row from a pair of marts.misclassification_ratios and its tests (`tested`: a
    row of clustered.comparisons)."""
    count_a, n_a, count_b, n_b = int(r.count_a), int(r.n_a), int(r.count_b), int(r.n_b)
    z, p = tested["z"], tested["p_value"]
    clustered = tested["inference"] == CLUSTER_METHOD
    ci_low, ci_high = ((getattr(r, "cluster_ci_low", np.nan), getattr(r, "cluster_ci_high", np.nan)) if clustered
                       else (r.ci_low, r.ci_high))
    notes = []
    bound = ""
    if count_b == 0 and count_a > 0:
        # No Katz interval exists; the score interval is one-sided there: [low, inf).
        ci_low, ci_high = zero_count_ratio_bound(
            group_cell(count_a, n_a, tested["n_clusters_a"], tested["design_effect_a"]),
            group_cell(count_b, n_b, tested["n_clusters_b"], tested["design_effect_b"]), clustered, alpha)
        bound = "score (Miettinen-Nurminen) interval, statsmodels; one-sided: the lower rate is 0"
        notes.append(f"{count_a} vs 0: ratio unbounded above; lower bound from the score interval")
    # Pooled rate 0 or 1: the pooled variance is 0 and no z-test exists.
    if not 0 < count_a + count_b < n_a + n_b:
        notes.append("no test: pooled rate is 0 or 1")
    if count_a == 0 and count_b == 0:
        notes.append("no ratio: neither group has such an error")
    elif count_a == 0:
        notes.append("no ratio interval: a count is 0")
    rate_a, rate_b = count_a / n_a, count_b / n_b
    return {
        **result_row(
            analysis="misclassification", model=r.model, model_version=r.model_version, dataset=r.dataset,
            protocol=r.protocol, subset_kind=r.grouping, subset=f"{r.group_a} vs {r.group_b}", measure="rate_ratio",
            n=n_a + n_b, estimate=r.ratio, ci_low=ci_low, ci_high=ci_high, statistic=z, p_value=p,
            family=family,
            detail=json.dumps({
                "true_emotion": str(r.true_emotion), "predicted_emotion": str(r.predicted_emotion),
                "group_a": str(r.group_a), "group_b": str(r.group_b), "orientation": "group_a has the higher rate",
                "count_a": count_a, "n_a": n_a, "count_b": count_b, "n_b": n_b,
                "rate_difference": rate_a - rate_b,
                "test": "pooled two-proportion z (statsmodels test_proportions_2indep, score, no correction: "
                        "proportions_ztest's z; z > 0: a higher)",
                "ci_method": (bound or "marts.misclassification_ratios (Katz log interval, dbt macro "
                                        "katz_ratio_interval)") + (", on effective counts count / design_effect"
                                                                   if clustered else ""),
                "inference": tested["inference"], "design_effect_a": tested["design_effect_a"],
                "design_effect_b": tested["design_effect_b"],
                "alpha": alpha, "note": "; ".join(notes),
            }),
        ),
        "true_emotion": str(r.true_emotion), "predicted_emotion": str(r.predicted_emotion),
        "group_a": str(r.group_a), "group_b": str(r.group_b),
        "n_a": n_a, "count_a": count_a, "rate_a": rate_a, "n_b": n_b, "count_b": count_b, "rate_b": rate_b,
        "statistic_naive": tested["z_naive"], "p_value_naive": tested["p_value_naive"],
        "ci_low_naive": r.ci_low, "ci_high_naive": r.ci_high,
        **{key: tested[key] for key in ("inference", "n_clusters_a", "n_clusters_b", "design_effect_a",
                                         "design_effect_b")},
    }
