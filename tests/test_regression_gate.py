"""Bias regression gate on fixtures built to pass and to fail."""

from __future__ import annotations

import pandas as pd
import pytest
from statsmodels.stats.proportion import confint_proportions_2indep

from dagster_project.analysis.regression_gate import disparities, regression_gate


def _accuracy(version: str, groups: dict[str, tuple[int, int]], emotion: str = "all") -> pd.DataFrame:
    return pd.DataFrame([
        {"model": "vlm", "model_version": version, "dataset": "d", "protocol": "single", "grouping": "race",
         "group_value": g, "true_emotion": emotion, "n": n, "correct": c}
        for g, (n, c) in groups.items()
    ])


def test_disparity_intervals_are_statsmodels_newcombe():
    gaps = disparities(_accuracy("v1", {"black": (100, 70), "white": (100, 90)}))
    row = gaps.iloc[0]
    low, high = confint_proportions_2indep(30, 100, 10, 100, method="newcomb", compare="diff")
    assert row.gap == pytest.approx(0.2) and (row.ci_low, row.ci_high) == pytest.approx((low, high))


def test_gate_fails_when_a_gap_grows_beyond_the_previous_interval():
    previous = _accuracy("v1", {"black": (200, 170), "white": (200, 176)})  # gap 0.03
    new = _accuracy("v2", {"black": (200, 130), "white": (200, 178)})       # gap 0.24
    result = regression_gate(pd.concat([previous, new]), model="vlm", new_version="v2", previous_version="v1")
    assert not result.passed and result.n_compared == 1
    offender = result.offenders.iloc[0]
    assert (offender.group_a, offender.group_b) == ("black", "white")
    assert offender.gap_new == pytest.approx(0.24) and offender.gap_previous == pytest.approx(0.03)
    assert offender.ci_low_new > offender.ci_high_previous
    assert "1 of 1" in result.summary()


def test_gate_passes_when_gaps_stay_within_noise_or_shrink():
    previous = _accuracy("v1", {"black": (200, 150), "white": (200, 176)})  # gap 0.12
    same = _accuracy("v2", {"black": (200, 154), "white": (200, 178)})      # gap 0.12, noise
    shrunk = _accuracy("v3", {"black": (200, 174), "white": (200, 178)})    # gap 0.02
    data = pd.concat([previous, same, shrunk])
    assert regression_gate(data, model="vlm", new_version="v2", previous_version="v1").passed
    assert regression_gate(data, model="vlm", new_version="v3", previous_version="v1").passed


def test_small_cells_never_fail_the_gate():
    previous = _accuracy("v1", {"black": (8, 8), "white": (200, 190)})
    new = _accuracy("v2", {"black": (8, 0), "white": (200, 190)})
    result = regression_gate(pd.concat([previous, new]), model="vlm", new_version="v2", previous_version="v1", min_n=10)
    assert result.passed and result.n_compared == 0


def test_reversed_direction_counts_too():
    previous = _accuracy("v1", {"black": (300, 270), "white": (300, 276)})
    new = _accuracy("v2", {"black": (300, 285), "white": (300, 210)})  # white now much worse
    result = regression_gate(pd.concat([previous, new]), model="vlm", new_version="v2", previous_version="v1")
    assert not result.passed and result.offenders.iloc[0].gap_new < 0


def test_a_widening_carried_by_a_few_people_does_not_fail_the_gate():
    # issue 22: 30 people per group, 4 faces each; errors fall on whole people (design effect
    # 30 / 29 * 4 = 4.14). v1: 2 vs 2 people wrong (8/120 vs 8/120); v2: 6 vs 2 (24/120 vs 8/120).
    deff = 30 / 29 * 4
    frames = [_accuracy(v, {"black": (120, 120 - e), "white": (120, 112)}).assign(design_effect=deff, n_clusters=30)
              for v, e in (("v1", 8), ("v2", 24))]
    clustered = regression_gate(pd.concat(frames), model="vlm", new_version="v2", previous_version="v1")
    naive = regression_gate(pd.concat([f.drop(columns=["design_effect", "n_clusters"]) for f in frames]),
                            model="vlm", new_version="v2", previous_version="v1")
    assert not naive.passed  # counted by image the gap "widened" (p = 0.013)
    assert clustered.passed and clustered.n_compared == 1  # counted by person it did not (p = 0.22)
