"""Rater reliability (Krippendorff's alpha, ICC), checked against published reference values."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pingouin
import pytest

from dagster_project.analysis.reliability import rater_reliability
from dagster_project.analysis.results import RESULT_COLUMNS

NAN = np.nan
# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", section C (nominal data,
# 4 coders x 12 units, missing values; also the reference example in the krippendorff package
# docstring / tests): alpha = 0.743 nominal, 0.815 ordinal, 0.849 interval.
KRIPPENDORFF_2011 = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, NAN, NAN, NAN],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, NAN, 3],
    [NAN, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, NAN],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, NAN],
]
EMOTIONS = ["anger", "fear", "happiness", "sadness", "surprise"]


def _ratings(matrix, *, dimension="valence", dataset="ref", groups=None) -> pd.DataFrame:
    """raters x images matrix -> long `ratings` rows (NaN = not rated)."""
    rows = []
    for r, ratings in enumerate(matrix):
        for u, v in enumerate(ratings):
            if v is None or (isinstance(v, float) and np.isnan(v)):
                continue
            group = groups[u] if groups is not None else ("white", "female")
            categorical = dimension == "emotion"
            rows.append({
                "dataset": dataset, "rater": f"r{r}", "image_id": f"u{u:03d}", "dimension": dimension,
                "value": NAN if categorical else float(v), "label": v if categorical else None,
                "identity": f"id{u}", "race": group[0], "gender": group[1], "true_emotion": "happiness",
            })
    return pd.DataFrame(rows)


def _row(frame, measure, *, model="human", subset_kind="all", subset="all", dimension=None):
    hit = frame[(frame.measure == measure) & (frame.model == model) & (frame.subset_kind == subset_kind)
                & (frame.subset == subset)]
    if dimension is not None:
        hit = hit[hit.dimension == dimension]
    assert len(hit) == 1, hit
    return hit.iloc[0]


def test_krippendorff_2011_reference_values_through_rater_reliability():
    out = rater_reliability(_ratings(KRIPPENDORFF_2011), bootstrap_resamples=30, min_n=5, icc=False)
    assert list(out.columns) == [*RESULT_COLUMNS, "dimension"]
    expected = {"nominal": 0.743, "ordinal": 0.815, "interval": 0.849}
    for level, value in expected.items():
        row = _row(out, f"krippendorff_alpha_{level}")
        assert round(row.estimate, 3) == value
        assert row.n == 11  # unit 12 has one rating only: not pairable (Krippendorff's m_u < 2)
        assert json.loads(row.detail)["n_pairable_values"] == 40
        assert row.ci_low <= row.estimate <= row.ci_high


def test_emotion_labels_are_coded_nominal_only():
    # Same reference data with the values as emotion labels: nominal alpha = 0.743 again.
    labels = [[None if np.isnan(v) else EMOTIONS[int(v) - 1] for v in row] for row in KRIPPENDORFF_2011]
    out = rater_reliability(_ratings(labels, dimension="emotion"), bootstrap_resamples=0, min_n=5)
    assert set(out.measure) == {"krippendorff_alpha_nominal"}  # no ordinal/interval, no ICC
    assert round(_row(out, "krippendorff_alpha_nominal").estimate, 3) == 0.743
    assert np.isnan(_row(out, "krippendorff_alpha_nominal").ci_low)


def test_model_added_as_one_more_rater_for_emotion_from_answers():
    labels = [[None if np.isnan(v) else EMOTIONS[int(v) - 1] for v in row] for row in KRIPPENDORFF_2011]
    ratings = _ratings(labels, dimension="emotion")
    # a model that gives the majority label agrees; one that is always 'anger' does not
    majority = ["anger", "fear", "happiness", "happiness", "fear", "anger", "sadness", "anger", "fear",
                "surprise", "anger", "happiness"]
    answers = pd.concat([
        pd.DataFrame({"model": name, "model_version": "v1", "dataset": "ref", "protocol": "classify",
                      "image_id": [f"u{u:03d}" for u in range(12)], "predicted_emotion": pred,
                      "answer_status": "answered"})
        for name, pred in (("good", majority), ("bad", ["anger"] * 12))
    ])
    out = rater_reliability(ratings, answers, bootstrap_resamples=0, min_n=5)
    human = _row(out, "krippendorff_alpha_nominal").estimate
    good = _row(out, "krippendorff_alpha_nominal", model="good")
    bad = _row(out, "krippendorff_alpha_nominal", model="bad")
    assert good.estimate > human > bad.estimate
    assert good.protocol == "classify" and good.model_version == "v1"
    assert json.loads(good.detail)["alpha_humans"] == pytest.approx(human)
    assert good.n == 12  # the model's answer makes unit 12 pairable


def test_icc_matches_pingouin_wine_example():
    # pingouin.intraclass_corr docstring example (pingouin 0.7, dataset 'icc': 8 wines x 4
    # judges): ICC(A,1) = 0.728 [0.43, 0.93], ICC(A,k) = 0.914 [0.75, 0.98], F = 11.787 (7, 21);
    # ICC(A,1)/ICC(A,k) are Shrout & Fleiss ICC2/ICC2k (ICC(C,1) = ICC3 = 0.729).
    wine = pingouin.read_dataset("icc")
    ratings = pd.DataFrame({"dataset": "wine", "rater": wine["Judge"], "image_id": wine["Wine"],
                            "dimension": "quality", "value": wine["Scores"].astype(float), "label": None,
                            "race": "n/a", "gender": "n/a"})
    out = rater_reliability(ratings, levels=("interval",), groupings=(), bootstrap_resamples=0, min_n=5)
    single, average = _row(out, "icc_a1"), _row(out, "icc_ak")
    assert round(single.estimate, 3) == 0.728 and round(average.estimate, 3) == 0.914
    assert (single.ci_low, single.ci_high) == pytest.approx((0.43, 0.93))
    assert (average.ci_low, average.ci_high) == pytest.approx((0.75, 0.98))
    assert single.statistic == pytest.approx(11.787, abs=1e-3) and single.p_value < 1e-4
    detail = json.loads(single.detail)
    assert (detail["df1"], detail["df2"], detail["n_raters"]) == (7, 21, 4)
    assert single.n == 8


def test_noisier_group_has_lower_alpha():
    # Simulated: 5 raters on a 1-9 scale; faces of group 'b' are rated with much more noise.
    rng = np.random.default_rng(5)
    n_images, n_raters = 80, 5
    groups = [("a", "female") if u % 2 == 0 else ("b", "male") for u in range(n_images)]
    truth = rng.uniform(1, 9, n_images)
    noise_sd = np.array([0.4 if g[0] == "a" else 2.5 for g in groups])
    matrix = np.clip(np.rint(truth + rng.normal(0, 1, (n_raters, n_images)) * noise_sd), 1, 9)
    matrix[rng.random(matrix.shape) < 0.15] = NAN  # some missing ratings
    out = rater_reliability(_ratings(matrix, groups=groups), levels=("interval",), bootstrap_resamples=50,
                            min_n=10)
    a = _row(out, "krippendorff_alpha_interval", subset_kind="race", subset="a")
    b = _row(out, "krippendorff_alpha_interval", subset_kind="race", subset="b")
    assert a.estimate > 0.85 and b.estimate < 0.6
    assert a.ci_low > b.ci_high  # bootstrap intervals separate
    assert _row(out, "krippendorff_alpha_interval", subset_kind="race_gender", subset="b male").estimate == \
        pytest.approx(b.estimate)
    # numeric dimension also gets ICCs (listwise deletion -> fewer images)
    icc = _row(out, "icc_a1")
    assert 0 < icc.n < n_images and 0 < icc.estimate < 1


def test_value_counts_arrangement_gives_the_same_alpha_as_the_reliability_matrix():
    # alpha is computed from krippendorff's value_counts input (images x values); on a sparse
    # random design it must equal krippendorff.alpha on the raters x images matrix itself.
    import krippendorff

    from dagster_project.analysis.reliability import value_counts

    rng = np.random.default_rng(2)
    matrix = rng.integers(1, 8, (30, 50)).astype(float) + (rng.random((30, 50)) < 0.3)
    matrix[rng.random(matrix.shape) < 0.7] = NAN
    domain = np.unique(matrix[~np.isnan(matrix)])
    for level in ("nominal", "ordinal", "interval"):
        direct = krippendorff.alpha(reliability_data=matrix, value_domain=domain, level_of_measurement=level)
        counted = krippendorff.alpha(value_counts=value_counts(matrix, domain), value_domain=domain,
                                     level_of_measurement=level)
        assert counted == pytest.approx(direct, abs=1e-12)
        out = rater_reliability(_ratings(matrix), levels=(level,), groupings=(), bootstrap_resamples=0, icc=False)
        assert _row(out, f"krippendorff_alpha_{level}").estimate == pytest.approx(direct, abs=1e-12)


def test_the_sparse_coincidences_equal_the_librarys_and_give_its_alpha_at_every_level():
    # Ratings with ties, images rated once (not pairable) and unequal numbers of raters.
    import krippendorff
    from krippendorff import krippendorff as kd

    from dagster_project.analysis.reliability import _alpha_sparse, coincidences_sparse, value_counts
    rng = np.random.default_rng(11)
    matrix = rng.integers(1, 8, size=(5, 60)).astype(float) + rng.choice([0.0, 0.5], size=(5, 60))
    matrix[rng.random(matrix.shape) < 0.35] = np.nan
    domain = np.unique(matrix[~np.isnan(matrix)])
    counts = value_counts(matrix, domain)
    assert np.allclose(coincidences_sparse(counts), kd._coincidences(counts), rtol=0, atol=1e-12)
    for level in ("nominal", "ordinal", "interval", "ratio"):
        assert _alpha_sparse(counts, domain, level) == pytest.approx(
            krippendorff.alpha(reliability_data=matrix, level_of_measurement=level), rel=1e-12)


def test_continuous_ratings_of_many_images_give_an_alpha_without_the_dense_array():
    # 1,440 images x 3 raters on a slider (2,880+ distinct values): the library's dense path
    # would allocate 1,440 x V x V doubles (~90 GiB). Ratings = image's true value + noise with
    # SD equal to the true values' SD: interval alpha near 1 / (1 + 1) = 0.5.
    rng = np.random.default_rng(5)
    truth = rng.normal(5, 1.2, size=1440)
    matrix = np.clip(truth + rng.normal(0, 1.2, size=(3, 1440)), 1, 9).round(3)
    # (the interval level alone: the library's ordinal metric costs seconds per call at this V)
    out = rater_reliability(_ratings(matrix), levels=("interval",), bootstrap_resamples=0, icc=False)
    alpha = _row(out, "krippendorff_alpha_interval")["estimate"]
    assert 0.4 < alpha < 0.6
