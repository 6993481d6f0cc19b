"""Pairwise error-rate z-tests and misclassification rate ratios: checked against published
worked examples, statsmodels' own functions on constructed counts, and no-effect simulations."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest

from dagster_project.analysis import proportions
from dagster_project.analysis.proportions import pairwise_error_ztests
from dagster_project.analysis.results import RESULT_COLUMNS
from stats_support import grouped_answers, misclassification_ratios


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
    tests = pairwise_error_ztests(cells, min_n=10, family="emotion")  # the per-emotion families
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
    tests = pairwise_error_ztests(cells, correction="bonferroni", family="emotion")
    assert len(tests) == trials
    assert 0.03 < tests.significant.mean() < 0.07


# ----------------------------------------------------------------------------------------------
# misclassification_tests: per-confusion rate ratios between groups (RESULT_COLUMNS shape)
# ----------------------------------------------------------------------------------------------

def misclassification_tests(answers: pd.DataFrame, groupings=("race", "gender", "race_gender"), **kwargs):
    """The statistic on the marts.misclassification_ratios rows of `answers`."""
    return proportions.misclassification_tests(misclassification_ratios(grouped_answers(answers, groupings)), **kwargs)


def _answers(cells: dict[tuple[str, str, str], dict[str, int]], *, model: str = "gpt-4o", dataset: str = "radiate"):
    """(race, gender, true emotion) -> {predicted emotion: images}, as rows of `answers`."""
    rows = []
    for (race, gender, true), predictions in cells.items():
        for predicted, count in predictions.items():
            for k in range(count):
                rows.append({
                    "model": model, "model_version": "v1", "dataset": dataset, "protocol": "classify",
                    "image_id": f"{race}-{gender}-{true}-{predicted}-{k}", "identity": f"{race}-{gender}-{k % 9}",
                    "race": race, "gender": gender, "true_emotion": true,
                    "predicted_emotion": predicted, "answer_status": "answered",
                })
    return pd.DataFrame(rows)


def test_misclassification_ratio_like_chhua_anger_as_disgust():
    # Chhua et al.: anger read as disgust 2.1x more often for Black women than White women.
    # Constructed counts: 21 of 100 vs 10 of 100 anger images called disgust.
    answers = _answers({
        ("Black", "female", "anger"): {"disgust": 21, "anger": 79},
        ("White", "female", "anger"): {"disgust": 10, "fear": 5, "anger": 85},
    })
    unanswered = answers.head(7).assign(image_id=lambda f: f.image_id + "-x", predicted_emotion=None,
                                        answer_status="refused")
    tests = misclassification_tests(pd.concat([answers, unanswered]), family="emotion")
    assert list(tests.columns[: len(RESULT_COLUMNS)]) == RESULT_COLUMNS
    assert "p_adjusted_fdr_bh" in tests.columns
    cell = tests[(tests.subset_kind == "race_gender") & (tests.true_emotion == "anger")
                 & (tests.predicted_emotion == "disgust")]
    assert len(cell) == 1
    row = cell.iloc[0]
    assert row.subset == "Black female vs White female" and row.measure == "rate_ratio"
    assert row.analysis == "misclassification" and row.n == 200  # refused answers not counted
    assert row.estimate == pytest.approx(2.1)
    low, high = confint_proportions_2indep(21, 100, 10, 100, compare="ratio", method="log")
    assert (row.ci_low, row.ci_high) == pytest.approx((low, high))
    z, p = proportions_ztest([21, 10], [100, 100])
    assert (row.statistic, row.p_value) == pytest.approx((z, p))
    assert row.family == "gpt-4o/v1/radiate/classify/race_gender/anger"
    assert json.loads(row.detail)["count_a"] == 21

    # One family per true emotion: disgust, fear and the pooled 'error' adjusted together.
    family = tests[tests.family == row.family].sort_values("predicted_emotion")
    assert list(family.predicted_emotion) == ["disgust", "error", "fear"]
    assert family.set_index("predicted_emotion").loc["error", "estimate"] == pytest.approx(0.21 / 0.15)
    fear = family.set_index("predicted_emotion").loc["fear"]
    # higher / lower orientation (issue 11 fix 5): White 5 % vs Black 0 % fear is kept as
    # "White female vs Black female" with an undefined ratio (before: Black vs White, 0)
    assert fear.subset == "White female vs Black female" and np.isnan(fear.estimate)
    # issue 22: a zero lower rate still bounds the ratio: the one-sided score interval [low, inf)
    # (before: no interval at all, "ratio infinite")
    low, _ = confint_proportions_2indep(fear.count_a, fear.n_a, 0, fear.n_b, compare="ratio", method="score")
    assert fear.count_a > 0 and fear.count_b == 0
    assert fear.ci_low == pytest.approx(low) and fear.ci_low > 1 and np.isinf(fear.ci_high)
    assert "lower bound from the score interval" in json.loads(fear.detail)["note"]
    _, holm, _, _ = multipletests(family.p_value, method="holm")
    _, bh, _, _ = multipletests(family.p_value, method="fdr_bh")
    assert family.p_adjusted.to_numpy() == pytest.approx(holm)
    assert family.p_adjusted_fdr_bh.to_numpy() == pytest.approx(bh)
    assert set(family.correction) == {"holm"}

    # Overall family: any misclassification, emotions pooled; a single gender gives no pairs.
    overall = tests[tests.true_emotion == "all"]
    assert set(overall.subset_kind) == {"race", "race_gender"} and set(overall.predicted_emotion) == {"error"}
    assert not (tests.subset_kind == "gender").any()


def test_misclassification_small_groups_flagged_and_empty_input():
    answers = _answers({
        ("Black", "female", "fear"): {"surprise": 3, "fear": 3},
        ("White", "female", "fear"): {"surprise": 10, "fear": 40},
    })
    tests = misclassification_tests(answers, groupings=("race",), min_n=10)
    assert tests.below_min_n.all()
    none = misclassification_tests(answers.iloc[0:0], groupings=("race",))
    assert none.empty and list(none.columns[: len(RESULT_COLUMNS)]) == RESULT_COLUMNS


def test_misclassification_nominal_false_positive_rate_under_no_effect():
    # Four races with the SAME confusion probabilities in 300 simulated studies (one dataset
    # each): raw z-tests reject ~5 %, and BH (which controls the family-wise rate under the
    # global null) rejects anything in about <= 5 % of families. fdr_bh avoids the
    # gc.collect() statsmodels' Holm branch runs per family.
    rng = np.random.default_rng(2024)
    studies, per_group, races = 300, 120, ["Asian", "Black", "Hispanic", "White"]
    labels = np.array(["anger", "disgust", "fear"])
    size = studies * len(races) * per_group
    answers = pd.DataFrame({
        "model": "m", "model_version": "v1", "protocol": "classify",
        "dataset": np.repeat([f"s{i:03d}" for i in range(studies)], len(races) * per_group),
        "race": np.tile(np.repeat(races, per_group), studies), "gender": "female",
        "image_id": np.arange(size).astype(str), "identity": "x", "true_emotion": "anger",
        "predicted_emotion": labels[rng.choice(3, size=size, p=[0.6, 0.25, 0.15])],
        "answer_status": "answered",
    })
    tests = misclassification_tests(answers, groupings=("race",), corrections=("fdr_bh",))
    per_emotion = tests[tests.true_emotion == "anger"]
    assert len(per_emotion) == studies * 6 * 3  # 6 pairs x (disgust, fear, error)
    assert 0.03 < (per_emotion.p_value < 0.05).mean() < 0.07
    any_rejected = per_emotion.groupby("family").p_adjusted.min() < 0.05
    assert any_rejected.mean() < 0.08
