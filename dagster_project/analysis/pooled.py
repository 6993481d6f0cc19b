"""Misclassification tests pooled across the datasets of a model version (Chhua et al. report
z-tests and ratios "across all datasets": neutral read as sad 3.38x more for White than Black
women across RADIATE, Tarr and Chicago Face).

Why stratified, and by what: summing counts over datasets (Chhua's crude pooled ratio) lets the
datasets' own differences -- base rates of an error, and how many faces of each group each set
holds -- masquerade as a group difference (Simpson's paradox: a group concentrated in the harder
dataset looks worse though it is not worse in any dataset). The Cochran-Mantel-Haenszel test
compares the groups WITHIN each dataset and combines the strata: statsmodels
`StratifiedTable` (one 2 x 2 table per dataset: rows group a / group b, columns this error /
not) gives the CMH test of no association in every stratum (`test_null_odds`, no continuity
correction, as the per-dataset z-tests), the Mantel-Haenszel pooled rate ratio
(`riskratio_pooled`, the estimate: comparable to Chhua's ratio; statsmodels gives it no
interval) and odds ratio with its interval (`oddsratio_pooled_confint`), and the Breslow-Day
test of a common odds ratio (`test_equal_odds`): a small p says the datasets disagree, and one
pooled number hides that. The crude pooled ratio and its pooled two-proportion z-test
(statsmodels `proportions_ztest` on the summed counts) stand beside it (columns crude_*).

A dataset is a stratum when both groups have answered images with that true emotion there; a
pool needs two strata (one is the per-dataset test, which stays in stats.misclassification_tests).
Orientation: group_a has the higher crude pooled rate; `mh_rate_ratio` < 1 then means the
direction reverses within datasets (detail.note says so). Families as the per-dataset tests
(statistics.family), with the pooled datasets in place of the dataset.

Cluster-aware as the per-dataset tests (analysis/clustered.py): images of one person are not
independent. Where a stratum's group repeats identities, the CMH test runs on effective counts
-- each group's count and n in each dataset divided by its design effect there (the marts'
design_effect_a / _b, clustered by identity) -- the Rao-Scott adjustment applied stratum by
stratum (Donald & Donner 1987, "Adjustments to the Mantel-Haenszel chi-square statistic and
odds ratio variance estimator when the data are clustered", Stat Med 6:491-499, with
group-specific design effects as in Rao & Scott 1992). The naive CMH test stays beside it
(statistic_naive, p_value_naive), `inference` says which decides. The Mantel-Haenszel ratio
and the crude ratio are point estimates and keep the raw counts.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd

from dagster_project.analysis.clustered import CLUSTER_METHOD, NAIVE_METHOD, NO_CLUSTER_INFO, group_cell, inference_method
from dagster_project.analysis.proportions import FAMILY_KEYS, family_name
from dagster_project.analysis.results import (
    RESULT_COLUMNS,
    adjust_within_families,
    none_if_nan,
    result_frame,
    result_row,
)

POOL_KEYS = ["model", "model_version", "protocol", "grouping", "true_emotion", "predicted_emotion",
             "group_a", "group_b"]
POOLED_EXTRA_COLUMNS = [
    "true_emotion", "predicted_emotion", "group_a", "group_b", "n_datasets", "datasets",
    "n_a", "count_a", "n_b", "count_b", "crude_ratio", "crude_z", "crude_p_value",
    "statistic_naive", "p_value_naive", "inference",
]
CELL_COLUMNS = ["count_a", "n_a", "count_b", "n_b"]


def pooled_misclassification_tests(ratios: pd.DataFrame, *, correction: str = "holm", min_n: int = 10,
                                   alpha: float = 0.05, family: str = "grouping",
                                   continuity_correction: bool = False) -> pd.DataFrame:
    """One row per model version x protocol x grouping x true emotion x error x pair of groups
    pooled over two or more datasets (rows of marts.misclassification_ratios, every slice).
    RESULT_COLUMNS: analysis 'pooled_misclassification', measure 'mh_rate_ratio', dataset = the
    pooled datasets joined by '+', subset_kind = grouping, subset 'a vs b', estimate = the
    Mantel-Haenszel rate ratio, statistic / p_value = the CMH chi-square test, p_adjusted by
    `correction` within the family; then POOLED_EXTRA_COLUMNS."""
    canonical = ratios[ratios["group_a"].astype(str) < ratios["group_b"].astype(str)]
    canonical = canonical[(canonical["n_a"] > 0) & (canonical["n_b"] > 0)]
    # Only pools of two or more datasets are tested; the others are dropped in one pass, not
    # looped over (200 versions on one dataset made a million one-stratum groups).
    canonical = canonical[canonical.groupby(POOL_KEYS)["dataset"].transform("nunique") >= 2]
    rows = [_pooled_row(dict(zip(POOL_KEYS, keys)), strata.sort_values("dataset"), alpha, continuity_correction)
            for keys, strata in canonical.groupby(POOL_KEYS, sort=True)]
    columns = [*RESULT_COLUMNS, *POOLED_EXTRA_COLUMNS]
    if not rows:
        return pd.DataFrame({column: pd.Series(dtype=object) for column in columns})
    frame = result_frame([{k: r[k] for k in RESULT_COLUMNS} for r in rows], min_n)
    frame = pd.concat([frame, pd.DataFrame([{k: r[k] for k in POOLED_EXTRA_COLUMNS} for r in rows],
                                           index=frame.index)], axis=1)
    frame["below_min_n"] = (frame["n_a"] < min_n) | (frame["n_b"] < min_n)
    keys = frame.assign(grouping=frame["subset_kind"])[FAMILY_KEYS]
    frame["family"] = family_name(keys, family)  # its dataset: the pooled datasets, 'a+b+c'
    frame = adjust_within_families(frame, correction, alpha)
    return frame[columns]


def _strata_cells(strata: pd.DataFrame) -> list[tuple]:
    """Per dataset, the two groups' GroupCells (design effects from the marts; a frame without
    them counts images as independent)."""
    return [(group_cell(r["count_a"], r["n_a"], r.get("n_clusters_a"), r.get("design_effect_a")),
             group_cell(r["count_b"], r["n_b"], r.get("n_clusters_b"), r.get("design_effect_b")))
            for _, r in strata.iterrows()]


def _pooled_inference(cells: list[tuple]) -> str:
    """Cluster-aware when any stratum's group repeats identities; naive when none does."""
    methods = {inference_method(a, b) for a, b in cells}
    if CLUSTER_METHOD in methods:
        return CLUSTER_METHOD
    return NO_CLUSTER_INFO if NO_CLUSTER_INFO in methods else NAIVE_METHOD


def _null_odds_test(table, continuity: bool) -> tuple[float, float]:
    test = table.test_null_odds(correction=continuity)
    return float(test.statistic), float(test.pvalue)


def _pooled_row(keys: dict, strata: pd.DataFrame, alpha: float, continuity: bool) -> dict:
    from statsmodels.stats.contingency_tables import StratifiedTable
    from statsmodels.stats.proportion import proportions_ztest

    cells = _strata_cells(strata)
    counts = strata[CELL_COLUMNS].astype(int).to_numpy()
    count_a, n_a, count_b, n_b = (int(v) for v in counts.sum(axis=0))
    # Orientation: the group with the higher crude pooled rate first (ties: alphabetical).
    if count_b / n_b > count_a / n_a:
        keys = {**keys, "group_a": keys["group_b"], "group_b": keys["group_a"]}
        counts = counts[:, [2, 3, 0, 1]]
        cells = [(b, a) for a, b in cells]
        count_a, n_a, count_b, n_b = count_b, n_b, count_a, n_a
    tables = [np.array([[ca, na - ca], [cb, nb - cb]], dtype=float) for ca, na, cb, nb in counts]
    inference = _pooled_inference(cells)
    effective_tables = [np.array([[a.effective[0], a.effective[1] - a.effective[0]],
                                  [b.effective[0], b.effective[1] - b.effective[0]]]) for a, b in cells]
    notes = []
    mh_ratio = statistic = p_value = statistic_naive = p_value_naive = np.nan
    odds = odds_low = odds_high = homogeneity_p = crude_z = crude_p = np.nan
    if 0 < count_a + count_b < n_a + n_b:
        crude_z, crude_p = proportions_ztest([count_a, count_b], [n_a, n_b])
        with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            table = StratifiedTable(tables)
            mh_ratio, odds = float(table.riskratio_pooled), float(table.oddsratio_pooled)
            statistic_naive, p_value_naive = _null_odds_test(table, continuity)
            # the test, the odds ratio's interval and the homogeneity test count people where they repeat
            decisive = StratifiedTable(effective_tables) if inference == CLUSTER_METHOD else table
            statistic, p_value = (_null_odds_test(decisive, continuity) if decisive is not table
                                  else (statistic_naive, p_value_naive))
            odds_low, odds_high = (float(v) for v in decisive.oddsratio_pooled_confint(alpha=alpha))
            homogeneity_p = float(decisive.test_equal_odds().pvalue)
    else:
        notes.append("no test: the pooled rate is 0 or 1")
    crude_ratio = (count_a / n_a) / (count_b / n_b) if count_b else np.nan
    if np.isfinite(mh_ratio) and mh_ratio < 1 <= crude_ratio:
        notes.append("direction reverses within datasets: the crude pooled ratio is confounded by dataset")
    datasets = [str(d) for d in strata["dataset"]]
    row = result_row(
        analysis="pooled_misclassification", model=keys["model"], model_version=keys["model_version"],
        dataset="+".join(datasets), protocol=keys["protocol"], subset_kind=keys["grouping"],
        subset=f"{keys['group_a']} vs {keys['group_b']}", measure="mh_rate_ratio", n=n_a + n_b,
        estimate=mh_ratio, statistic=statistic, p_value=p_value,
        detail=json.dumps({
            "true_emotion": str(keys["true_emotion"]), "predicted_emotion": str(keys["predicted_emotion"]),
            "strata": {d: {"count_a": int(c[0]), "n_a": int(c[1]), "count_b": int(c[2]), "n_b": int(c[3]),
                           "design_effect_a": ab[0].design_effect, "design_effect_b": ab[1].design_effect}
                       for d, c, ab in zip(datasets, counts, cells)},
            "test": f"Cochran-Mantel-Haenszel chi-square, 1 df, {'with' if continuity else 'no'} continuity "
                    f"correction (statsmodels StratifiedTable.test_null_odds), strata = datasets"
                    + (", on effective counts count / design_effect per dataset and group (Rao-Scott; "
                       "Donald & Donner 1987)" if inference == CLUSTER_METHOD else ""),
            "inference": inference,
            "estimate": "Mantel-Haenszel pooled rate ratio (statsmodels riskratio_pooled; no interval)",
            "mh_odds_ratio": none_if_nan(odds), "mh_odds_ratio_ci": [none_if_nan(odds_low), none_if_nan(odds_high)],
            "breslow_day_homogeneity_p": none_if_nan(homogeneity_p),
            "crude": "Chhua et al.'s pooled ratio: counts summed over datasets; z = proportions_ztest on the sums",
            "orientation": "group_a has the higher crude pooled rate", "alpha": alpha, "note": "; ".join(notes),
        }),
    )
    return {**row, "true_emotion": str(keys["true_emotion"]), "predicted_emotion": str(keys["predicted_emotion"]),
            "group_a": str(keys["group_a"]), "group_b": str(keys["group_b"]), "n_datasets": len(datasets),
            "datasets": ",".join(datasets), "n_a": n_a, "count_a": count_a, "n_b": n_b, "count_b": count_b,
            "crude_ratio": crude_ratio, "crude_z": none_if_nan(float(crude_z)),
            "crude_p_value": none_if_nan(float(crude_p)), "statistic_naive": none_if_nan(statistic_naive),
            "p_value_naive": none_if_nan(p_value_naive), "inference": inference}


__all__ = ["POOLED_EXTRA_COLUMNS", "pooled_misclassification_tests"]
