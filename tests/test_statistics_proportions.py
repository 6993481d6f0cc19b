"""Pairwise error-rate z-tests: checked against published worked examples."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dagster_project.analysis.proportions import pairwise_error_ztests


def _cells(groups: dict[str, tuple[int, int]], emotion: str = "all", grouping: str = "race") -> pd.DataFrame:
    """group -> (n answered, n correct) as rows shaped like marts.group_accuracy."""
    return pd.DataFrame(
        [
            {"model": "m", "model_version": "v1", "dataset": "d", "protocol": "classify",
             "grouping": grouping, "group_value": g, "true_emotion": emotion, "n": n, "correct": c}
            for g, (n, c) in groups.items()
        ]
    )


def test_matches_openstax_two_proportion_example():
    # OpenStax, Introductory Statistics 2e, Example 10.9 (medication for hives): 20 of 200
    # vs 12 of 200 still had hives; pooled two-proportion z-test, p-value = 0.1404.
    tests = pairwise_error_ztests(_cells({"a": (200, 180), "b": (200, 188)}))
    row = tests.iloc[0]
    assert (row.errors_a, row.errors_b) == (20, 12)
    assert row.z == pytest.approx(1.4744, abs=1e-4)
    assert row.p_value == pytest.approx(0.1404, abs=1e-4)
    assert row.family_size == 1 and row.p_adjusted == pytest.approx(row.p_value)


def test_holm_adjustment_matches_textbook_example():
    # Holm (1979) step-down, worked example on Wikipedia "Holm-Bonferroni method": raw p-values
    # 0.01, 0.04, 0.03, 0.005 -> adjusted 0.03, 0.06, 0.06, 0.02.
    from statsmodels.stats.multitest import multipletests

    _, adjusted, _, _ = multipletests([0.01, 0.04, 0.03, 0.005], method="holm")
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # Our families use exactly that adjustment: 4 groups -> 6 pairs in one family.
    cells = _cells({"a": (100, 90), "b": (100, 80), "c": (100, 70), "d": (100, 60)})
    tests = pairwise_error_ztests(cells)
    assert len(tests) == 6 and set(tests.family_size) == {6}
    _, expected, _, _ = multipletests(tests.p_value, method="holm")
    assert tests.p_adjusted.to_numpy() == pytest.approx(expected)
    assert tests.family.iloc[0] == "m/v1/d/classify/race/all"


def test_families_are_separate_per_emotion_and_grouping_and_small_cells_flagged():
    cells = pd.concat(
        [
            _cells({"a": (50, 40), "b": (50, 30)}, emotion="happy"),
            _cells({"a": (5, 4), "b": (50, 30)}, emotion="sad"),
            _cells({"f": (60, 50), "m": (60, 40)}, grouping="gender"),
        ]
    )
    tests = pairwise_error_ztests(cells, min_n=10)
    assert tests.family.nunique() == 3
    assert tests.set_index("true_emotion").loc["sad", "below_min_n"]
    assert not tests.set_index("true_emotion").loc["happy", "below_min_n"]


def test_no_variance_gives_no_test_instead_of_a_fake_p_value():
    tests = pairwise_error_ztests(_cells({"a": (30, 30), "b": (40, 40)}))
    assert np.isnan(tests.p_value.iloc[0]) and not tests.significant.iloc[0]


def test_nominal_false_positive_rate_under_no_effect():
    # Same true error rate in both groups: a 5 % test rejects about 5 % of the time.
    rng = np.random.default_rng(7)
    trials = 1000
    errors = rng.binomial(200, 0.3, size=(trials, 2))
    # One family per simulated study (encoded as the emotion), all tested in one call.
    cells = pd.concat(
        [_cells({"a": (200, 200 - e[0]), "b": (200, 200 - e[1])}, emotion=f"t{i}") for i, e in enumerate(errors)]
    )
    # Families of one pair are unaffected by the correction; Bonferroni avoids the gc.collect()
    # that statsmodels' Holm branch runs per call (45 ms each here).
    tests = pairwise_error_ztests(cells, correction="bonferroni")
    assert len(tests) == trials
    assert 0.03 < tests.significant.mean() < 0.07
