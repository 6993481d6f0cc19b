"""Misclassification tests pooled across datasets, stratified by dataset (analysis/pooled.py):
statsmodels' Cochran-Mantel-Haenszel test against the published R reference, and a Simpson's
paradox where Chhua's crude pooled ratio shows a disparity no dataset has."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

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
    assert json.loads(row["detail"])["strata"]["hard"] == {"count_a": 36, "n_a": 90, "count_b": 4, "n_b": 10}


def test_one_dataset_is_not_pooled_and_families_are_adjusted():
    assert pooled_misclassification_tests(_ratios({"only": ((5, 5), (1, 9))})).empty
    frames = [_ratios({"d1": ((8, 2), (2, 8)), "d2": ((7, 3), (3, 7))}, predicted=p) for p in ("sad", "fear")]
    out = pooled_misclassification_tests(pd.concat(frames), min_n=1)
    assert len(out) == 2 and (out["family_m"] == 2).all() and (out["correction"] == "holm").all()
    assert np.all(out["p_adjusted"] >= out["p_value"])
    assert out["below_min_n"].eq(False).all()
