"""Dimensional agreement (Pearson r, MAE, RMSE, Bland-Altman) and per-emotion Wilcoxon tests,
checked against published worked examples and constructed cases with exact answers."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from dagster_project.analysis.dimensional import dimensional_agreement, image_level_pairs, wilcoxon_by_emotion
from dagster_project.analysis.results import RESULT_COLUMNS


def _frames(model, human, emotions=None, dimension="valence", identities=None):
    """One image per pair, one human rating per image (so the human mean is the value)."""
    n = len(model)
    emotions = emotions if emotions is not None else ["happy"] * n
    identities = identities if identities is not None else [f"p{i}" for i in range(n)]
    attrs = [{"identity": identities[i], "race": "r", "gender": "g", "true_emotion": emotions[i]} for i in range(n)]
    model_values = pd.DataFrame([
        {"model": "m", "model_version": "v1", "dataset": "d", "protocol": "rate", "image_id": f"img{i}",
         "dimension": dimension, "value": float(model[i]), **attrs[i]} for i in range(n)
    ])
    ratings = pd.DataFrame([
        {"dataset": "d", "rater": "h1", "image_id": f"img{i}", "dimension": dimension, "value": float(human[i]),
         "label": None, **attrs[i]} for i in range(n)
    ])
    return model_values, ratings


def _get(frame, measure, subset="all"):
    rows = frame[(frame["measure"] == measure) & (frame["subset"] == subset)]
    assert len(rows) == 1, (measure, subset, len(rows))
    return rows.iloc[0]


def test_pearson_matches_scipy_documentation_example():
    # scipy.stats.pearsonr docstring example: x = 1..7, y = [10, 9, 2.5, 6, 4, 3, 2]
    # -> statistic = -0.828503883588428, pvalue = 0.021280260007523286.
    model, human = [1, 2, 3, 4, 5, 6, 7], [10, 9, 2.5, 6, 4, 3, 2]
    out = dimensional_agreement(*_frames(model, human))
    row = _get(out, "pearson_r")
    assert row.estimate == pytest.approx(-0.828503883588428, rel=1e-12)
    assert row.p_value == pytest.approx(0.021280260007523286, rel=1e-9)
    assert row.n == 7 and row.below_min_n  # default min_n = 10
    assert row.ci_low < row.estimate < row.ci_high
    assert list(out.columns[: len(RESULT_COLUMNS)]) == RESULT_COLUMNS and out["dimension"].eq("valence").all()


def test_pearson_anscombe_and_fisher_interval():
    # Anscombe (1973), "Graphs in statistical analysis", data set I: r = 0.816.
    x = [10, 8, 13, 9, 11, 14, 6, 4, 12, 7, 5]
    y = [8.04, 6.95, 7.58, 8.81, 8.33, 9.96, 7.24, 4.26, 10.84, 4.82, 5.68]
    assert _get(dimensional_agreement(*_frames(x, y)), "pearson_r").estimate == pytest.approx(0.816, abs=5e-4)
    # Bland & Altman (1986) PEFR, first 8 subjects (Wright vs mini Wright): R's cor.test gives
    # r = 0.8154886, Fisher-z 95 % CI 0.2605298 to 0.9653948 (same Fisher-z interval as scipy).
    pef = [494, 395, 516, 434, 476, 413, 442, 433]
    mini = [512, 430, 520, 428, 500, 364, 380, 445]
    row = _get(dimensional_agreement(*_frames(pef, mini)), "pearson_r")
    assert row.estimate == pytest.approx(0.8154886, abs=1e-7)
    assert (row.ci_low, row.ci_high) == pytest.approx((0.2605298, 0.9653948), abs=1e-6)


# Bland & Altman (1986), Lancet i:307-310, Table 1: PEFR (l/min), first reading per meter.
WRIGHT = [494, 395, 516, 434, 476, 557, 413, 442, 650, 433, 417, 656, 267, 478, 178, 423, 427]
MINI_WRIGHT = [512, 430, 520, 428, 500, 600, 364, 380, 658, 445, 432, 626, 260, 477, 259, 350, 451]


def test_bland_altman_reproduces_pefr_example():
    # Published: mean difference (Wright - mini) = -2.1 l/min, SD of differences = 38.8; the
    # paper's limits (bias +- 2 SD) are -79.7 to 75.5. With 1.96 SD: -78.1 to 73.9.
    out = dimensional_agreement(*_frames(WRIGHT, MINI_WRIGHT))
    bias = _get(out, "bland_altman_bias")
    sd = json.loads(bias.detail)["sd_difference"]
    assert bias.n == 17 and not bias.below_min_n
    assert round(bias.estimate, 1) == -2.1 and round(sd, 1) == 38.8
    # (the paper rounds bias and SD first: -2.1 -+ 2 * 38.8)
    assert round(bias.estimate, 1) - 2 * round(sd, 1) == pytest.approx(-79.7)
    assert round(bias.estimate, 1) + 2 * round(sd, 1) == pytest.approx(75.5)
    assert round(_get(out, "bland_altman_loa_low").estimate, 1) == -78.1
    assert round(_get(out, "bland_altman_loa_high").estimate, 1) == 73.9
    # 95 % CI of the bias, t-interval from the published summary: -2.12 +- t(16) * 38.77 / sqrt(17)
    # with t(16, 0.975) = 2.1199 -> -22.05 to 17.81.
    assert (bias.ci_low, bias.ci_high) == pytest.approx((-22.05, 17.81), abs=0.01)
    assert bias.p_value > 0.5


def test_constructed_case_bias_sd_mae_rmse_exact():
    # differences alternate +1.5 / -0.5: bias 0.5, SD sqrt(10/9), MAE 1.0, RMSE sqrt(1.25)
    human = np.linspace(2, 8, 10)
    diff = np.array([1.5, -0.5] * 5)
    out = dimensional_agreement(*_frames(human + diff, human))
    sd = np.sqrt(10 / 9)
    assert _get(out, "bland_altman_bias").estimate == pytest.approx(0.5)
    assert json.loads(_get(out, "bland_altman_bias").detail)["sd_difference"] == pytest.approx(sd)
    assert _get(out, "bland_altman_loa_low").estimate == pytest.approx(0.5 - 1.96 * sd)
    assert _get(out, "bland_altman_loa_high").estimate == pytest.approx(0.5 + 1.96 * sd)
    assert _get(out, "mae").estimate == pytest.approx(1.0)
    assert _get(out, "rmse").estimate == pytest.approx(np.sqrt(1.25))


def test_per_emotion_subsets_and_stereotyped_model_has_no_correlation():
    rng = np.random.default_rng(1)
    human = rng.uniform(1, 9, 24)
    model = np.where(np.arange(24) < 12, human + 1.0, 5.0)  # 'sad' images: constant 5
    emotions = ["happy"] * 12 + ["sad"] * 12
    out = dimensional_agreement(*_frames(model, human, emotions=emotions))
    assert set(out.loc[out.subset_kind == "emotion", "subset"]) == {"happy", "sad"}
    assert _get(out, "bland_altman_bias", "happy").estimate == pytest.approx(1.0)
    # all differences equal: the mean is exact, no t-test
    assert _get(out, "bland_altman_bias", "happy").ci_low == pytest.approx(1.0)
    sad_r = _get(out, "pearson_r", "sad")
    assert np.isnan(sad_r.estimate) and json.loads(sad_r.detail)["undefined"] == "constant model values"
    assert _get(out, "pearson_r", "happy").estimate == pytest.approx(1.0)


def test_image_level_pairs_average_raters_and_ignore_emotion_dimension():
    model_values, _ = _frames([6.0], [0.0])
    attrs = {"identity": "p0", "race": "r", "gender": "g", "true_emotion": "happy"}
    ratings = pd.DataFrame([
        {"dataset": "d", "rater": "a", "image_id": "img0", "dimension": "valence", "value": 4.0, "label": None, **attrs},
        {"dataset": "d", "rater": "b", "image_id": "img0", "dimension": "valence", "value": 7.0, "label": None, **attrs},
        {"dataset": "d", "rater": "a", "image_id": "img0", "dimension": "emotion", "value": None, "label": "sad", **attrs},
    ])
    pairs = image_level_pairs(model_values, ratings)
    assert len(pairs) == 1
    row = pairs.iloc[0]
    assert (row.human_mean, row.n_raters, row.difference, row.true_emotion) == (5.5, 2, 0.5, "happy")


def test_wilcoxon_matches_scipy_documentation_example_and_bonferroni():
    # scipy.stats.wilcoxon docstring (Wilcoxon 1945 / Fisher's Zea mays data, cross- minus
    # self-fertilised heights): two-sided exact test -> statistic 24.0, p = 0.041259765625.
    d = np.array([6, 8, 14, 16, 23, 24, 28, 29, 41, -48, 49, 56, 60, -67, 75], dtype=float)
    human = np.full(len(d), 100.0)
    rng = np.random.default_rng(0)
    other = rng.normal(0, 1, 15)  # a second emotion in the same family
    model = np.concatenate([human + d, human + other])
    emotions = ["fear"] * 15 + ["happy"] * 15
    out = wilcoxon_by_emotion(*_frames(model, np.concatenate([human, human]), emotions=emotions))
    fear = out.set_index("subset").loc["fear"]
    assert fear.statistic == 24.0
    assert fear.p_value == pytest.approx(0.041259765625, rel=1e-12)
    assert fear.estimate == pytest.approx(np.median(d))
    assert fear.ci_low <= fear.estimate <= fear.ci_high
    # Bonferroni within the model x dimension family: 2 tests -> p * 2 (capped at 1)
    assert out.family.nunique() == 1 and out.family.iloc[0] == "m/v1/d/rate/valence"
    assert fear.p_adjusted == pytest.approx(min(1.0, 2 * fear.p_value))
    assert set(out.correction) == {"bonferroni"} and set(out.dimension) == {"valence"}
