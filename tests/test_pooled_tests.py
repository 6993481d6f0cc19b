"""Misclassification tests pooled across datasets, stratified by dataset (analysis/pooled.py):
statsmodels' Cochran-Mantel-Haenszel test against the published R reference, a Simpson's
paradox where Chhua's crude pooled ratio shows a disparity no dataset has, and the cluster-aware
test (faces of one person are not independent) under a null with a strong identity effect."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from cluster_support import clustered_errors, null_rejection_rates, statsmodels_design_effect
from dagster_project.analysis.clustered import CLUSTER_METHOD, NAIVE_METHOD, NO_CLUSTER_INFO
from dagster_project.analysis.pooled import pooled_misclassification_tests

# Cochran's (1954) penicillin rabbits, R's datasets::Rabbits: per penicillin level, delay None /
# 1.5h x cured / died. R's documented `mantelhaen.test(Rabbits)`: "Mantel-Haenszel X-squared =
# 3.9286, df = 1, p-value = 0.04747" (with continuity correction); common odds ratio 7.
RABBITS = {"1/8": ((0, 6), (0, 5)), "1/4": ((3, 3), (0, 6)), "1/2": ((6, 0), (2, 4)), "1": ((5, 1), (6, 0)),
           "4": ((2, 0), (5, 0))}


def _ratios(strata: dict, *, grouping="race", groups=("black", "white"), true="neutral", predicted="sad"):
    """marts.misclassification_ratios rows (both orientations) from {dataset: ((a errs, a not), (b errs, b not))}."""
    rows = []
    for dataset, ((ea, ca), (eb, cb)) in strata.items():
        for (ga, xa, na), (gb, xb, nb) in (((groups[0], ea, ea + ca), (groups[1], eb, eb + cb)),
                                            ((groups[1], eb, eb + cb), (groups[0], ea, ea + ca))):
            rows.append({"model": "gpt4o", "model_version": "v", "dataset": dataset, "protocol": "single",
                         "grouping": grouping, "true_emotion": true, "predicted_emotion": predicted,
                         "group_a": ga, "group_b": gb, "count_a": xa, "n_a": na, "count_b": xb, "n_b": nb})
    return pd.DataFrame(rows)


def test_cmh_reproduces_rs_mantelhaen_test_on_the_rabbits():
    out = pooled_misclassification_tests(_ratios(RABBITS), continuity_correction=True, min_n=1)
    row = out.iloc[0]
    assert row["statistic"] == pytest.approx(3.9286, abs=5e-5) and row["p_value"] == pytest.approx(0.04747, abs=5e-6)
    assert json.loads(row["detail"])["mh_odds_ratio"] == pytest.approx(7.0)
    assert row["n_datasets"] == 5 and row["analysis"] == "pooled_misclassification"
    # without the continuity correction (the default, as the per-dataset z-tests): the plain CMH
    # statistic sum(a - E a)^2 / sum Var(a), computed here by hand as an independent check
    plain = pooled_misclassification_tests(_ratios(RABBITS), min_n=1).iloc[0]
    a, expected, variance = 0.0, 0.0, 0.0
    for (ea, ca), (eb, cb) in RABBITS.values():
        n, row_a, col_e = ea + ca + eb + cb, ea + ca, ea + eb
        a += ea
        expected += row_a * col_e / n
        variance += row_a * (n - row_a) * col_e * (n - col_e) / (n * n * (n - 1))
    assert plain["statistic"] == pytest.approx((a - expected) ** 2 / variance, rel=1e-12)


def test_stratifying_by_dataset_removes_a_disparity_that_only_pooling_makes():
    # Within each dataset both groups read neutral as sad equally often (10 % and 40 %); white
    # faces are mostly in the hard dataset. Summed counts (Chhua's crude ratio) make white 2.85x.
    strata = {"easy": ((9, 81), (1, 9)), "hard": ((4, 6), (36, 54))}  # (errors, rest): black, white
    row = pooled_misclassification_tests(_ratios(strata), min_n=1).iloc[0]
    assert (row["group_a"], row["group_b"]) == ("white", "black")
    assert row["crude_ratio"] == pytest.approx((37 / 100) / (13 / 100)) and row["crude_p_value"] < 0.001
    assert row["estimate"] == pytest.approx(1.0) and row["p_value"] == pytest.approx(1.0)
    assert row["dataset"] == "easy+hard" and row["family"] == "gpt4o/v/easy+hard/single/race/emotions"
    assert json.loads(row["detail"])["strata"]["hard"] == {"count_a": 36, "n_a": 90, "count_b": 4, "n_b": 10,
                                                         "design_effect_a": 1.0, "design_effect_b": 1.0}


def test_one_dataset_is_not_pooled_and_families_are_adjusted():
    assert pooled_misclassification_tests(_ratios({"only": ((5, 5), (1, 9))})).empty
    frames = [_ratios({"d1": ((8, 2), (2, 8)), "d2": ((7, 3), (3, 7))}, predicted=p) for p in ("sad", "fear")]
    out = pooled_misclassification_tests(pd.concat(frames), min_n=1)
    assert len(out) == 2 and (out["family_m"] == 2).all() and (out["correction"] == "holm").all()
    assert np.all(out["p_adjusted"] >= out["p_value"])
    assert out["below_min_n"].eq(False).all()


def _clustered_ratios(rng, *, people=30, faces=4, rate=0.2, concentration=1.5, datasets=("d1", "d2")):
    """misclassification_ratios rows over `datasets`, each group's errors clustered by person,
    with the marts' cluster columns (design effects computed independently, statsmodels)."""
    strata, cluster_columns = {}, {}
    for dataset in datasets:
        cells = [clustered_errors(rng, people, faces, mean_rate=rate, icc_concentration=concentration)
                 for _ in ("black", "white")]
        strata[dataset] = tuple((int(e.sum()), len(e) - int(e.sum())) for e, _ in cells)
        cluster_columns[dataset] = {g: (people, statsmodels_design_effect(e, p)) for g, (e, p) in
                                    zip(("black", "white"), cells)}
    frame = _ratios(strata)
    for column, index in (("n_clusters", 0), ("design_effect", 1)):
        for side in ("a", "b"):
            frame[f"{column}_{side}"] = [cluster_columns[d][g][index] for d, g in
                                         zip(frame["dataset"], frame[f"group_{side}"])]
    return frame


@pytest.mark.parametrize(("concentration", "naive_at_least", "cluster_at_most"), [
    (1.5, 0.15, 0.08),  # ICC 0.4; measured (seed 20): naive 0.203, cluster-aware 0.035
])
def test_with_an_identity_effect_the_naive_pooled_test_rejects_often_the_cluster_aware_near_alpha(
        concentration, naive_at_least, cluster_at_most):
    # Two datasets, 30 people per group in each, 4 faces each; no group difference anywhere.
    rng = np.random.default_rng(20)

    def p_values():
        row = pooled_misclassification_tests(_clustered_ratios(rng, concentration=concentration), min_n=1).iloc[0]
        if np.isnan(row["p_value"]):
            return None
        assert row["inference"] == CLUSTER_METHOD
        return row["p_value_naive"], row["p_value"]

    naive_rate, cluster_rate, tested = null_rejection_rates(400, p_values)
    print(f"pooled CMH rejection rate at alpha 0.05 over {tested} null simulations: naive {naive_rate:.3f}, "
          f"cluster-aware {cluster_rate:.3f}")
    assert naive_rate > naive_at_least
    assert 0.02 < cluster_rate < cluster_at_most


def test_the_cluster_aware_test_is_the_cmh_of_the_effective_counts_and_naive_without_repeats():
    strata = {"d1": ((12, 28), (4, 36)), "d2": ((10, 30), (6, 34))}  # (errors, rest): black, white; even
    frame = _ratios(strata).assign(n_clusters_a=10, n_clusters_b=10, design_effect_a=2.0, design_effect_b=2.0)
    row = pooled_misclassification_tests(frame, min_n=1).iloc[0]
    halved = pooled_misclassification_tests(_ratios({d: ((ea / 2, ca / 2), (eb / 2, cb / 2))
                                                     for d, ((ea, ca), (eb, cb)) in strata.items()}), min_n=1).iloc[0]
    naive = pooled_misclassification_tests(_ratios(strata), min_n=1).iloc[0]
    assert row["inference"] == CLUSTER_METHOD and naive["inference"] == NO_CLUSTER_INFO
    assert row["statistic"] == pytest.approx(halved["statistic"], rel=1e-12)
    assert row["statistic_naive"] == pytest.approx(naive["statistic"], rel=1e-12)
    assert row["statistic"] < row["statistic_naive"] and row["p_value"] > row["p_value_naive"]
    assert row["estimate"] == pytest.approx(naive["estimate"])  # the MH ratio keeps the raw counts
    # every person seen once: the naive test decides
    once = _ratios(strata).assign(n_clusters_a=40, n_clusters_b=40, design_effect_a=1.0, design_effect_b=1.0)
    row = pooled_misclassification_tests(once, min_n=1).iloc[0]
    assert row["inference"] == NAIVE_METHOD and row["p_value"] == row["p_value_naive"] == naive["p_value"]
