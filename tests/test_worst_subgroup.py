"""stats.worst_subgroups (issue 22): every pairwise error-rate test of a slice, one
Benjamini-Hochberg family, worse group first, the survivors ranked."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.multitest import multipletests

from dagster_project.analysis.proportions import pairwise_error_ztests
from dagster_project.analysis.results import RESULT_COLUMNS
from dagster_project.analysis.worst_subgroup import worst_subgroups

KEYS = dict(model="m", model_version="1", dataset="d", protocol="p")


def _accuracy() -> pd.DataFrame:
    cells = [  # grouping, group, emotion, n, correct
        ("race", "a", "all", 300, 270), ("race", "b", "all", 300, 210), ("race", "c", "all", 300, 262),
        ("race", "a", "fear", 100, 90), ("race", "b", "fear", 100, 60), ("race", "c", "fear", 8, 2),
        ("gender", "f", "all", 450, 380), ("gender", "m", "all", 450, 362),
    ]
    return pd.DataFrame([{**KEYS, "grouping": g, "group_value": v, "true_emotion": e, "n": n, "correct": c,
                          "n_clusters": n, "design_effect": 1.0} for g, v, e, n, c in cells])


def test_one_bh_family_over_the_slice_worse_group_first_survivors_ranked():
    tests = pairwise_error_ztests(_accuracy(), groupings=("race", "gender"), min_n=10)
    worst = worst_subgroups(tests, alpha=0.05, min_n=10)
    assert list(worst.columns[: len(RESULT_COLUMNS)]) == RESULT_COLUMNS
    tested = tests[tests["p_value"].notna()]
    assert len(worst) == len(tested) == 5  # the two pairs with 8 fear images of 'c' are not tested
    assert set(worst["family_m"]) == {5} and set(worst["correction"]) == {"fdr_bh"}
    _, q, _, _ = multipletests(worst["p_value"], method="fdr_bh")
    assert worst["p_adjusted"].to_numpy() == pytest.approx(q)
    assert (worst["error_rate_a"] >= worst["error_rate_b"]).all() and (worst["estimate"] >= 0).all()
    survivors = worst[worst["survives_fdr"]]
    assert list(survivors["rank"]) == list(range(1, len(survivors) + 1))
    assert survivors["estimate"].is_monotonic_decreasing
    top = survivors.iloc[0]
    assert (top["group_a"], top["true_emotion"]) == ("b", "fear") and top["estimate"] == pytest.approx(0.3)
    assert worst.loc[~worst["survives_fdr"], "rank"].isna().all()
    # the flipped interval still brackets the (positive) difference
    assert (worst["ci_low"] <= worst["estimate"]).all() and (worst["estimate"] <= worst["ci_high"]).all()


def test_nothing_tested_gives_an_empty_table_with_the_columns():
    empty = worst_subgroups(pairwise_error_ztests(_accuracy().iloc[0:0], groupings=("race",)))
    assert empty.empty and list(empty.columns[: len(RESULT_COLUMNS)]) == RESULT_COLUMNS
    assert np.isin(["rank", "survives_fdr"], empty.columns).all()
