"""Response style (Tae et al., "Do Vision Language Models See Emotions Like Humans?", 4.2-4.4,
5.1-5.3): stereotyped responding, polarity exaggeration, per-emotion calibration, neutral
absorption and strength inversion, on constructed data whose answers are known exactly;
plus the statistics figures."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.proportion import proportion_confint

from dagster_project.analysis.dimensional import dimensional_agreement, image_level_pairs, wilcoxon_by_emotion
from dagster_project.analysis.response_style import per_emotion_means, response_style
from dagster_project.analysis.stat_figures import (
    adjusted_forest_png,
    bias_bars_png,
    bland_altman_png,
    strength_arousal_order_png,
)

EMOTIONS = ["anger", "happy", "neutral", "sad"]
KEYS = {"model": "m", "model_version": "v1", "dataset": "d", "protocol": "rate"}


def _data(model_fn, n_per_emotion=40, seed=0, raters=3, with_identity=True):
    """Images x (valence, arousal) with `raters` noisy human ratings each; model value =
    model_fn(emotion, dimension, human_mean, rng). Returns model_values, ratings."""
    rng = np.random.default_rng(seed)
    model_rows, rating_rows = [], []
    for e_i, emotion in enumerate(EMOTIONS):
        for k in range(n_per_emotion):
            image = f"{emotion}_{k}"
            attrs = {"race": ["a", "b"][k % 2], "gender": ["f", "m"][(k // 2) % 2], "true_emotion": emotion}
            if with_identity:
                attrs["identity"] = f"id{k}"  # one image per identity and emotion, as in Tae et al.
            for dimension in ("valence", "arousal"):
                centre = {"valence": [2.5, 7.5, 5.0, 3.0], "arousal": [6.5, 6.0, 3.0, 3.5]}[dimension][e_i]
                scores = np.clip(centre + rng.normal(0, 1.0) + rng.normal(0, 0.5, raters), 1, 9)
                for r, score in enumerate(scores):
                    rating_rows.append({"dataset": "d", "rater": f"r{r}", "image_id": image, "dimension": dimension,
                                        "value": float(score), "label": None, **attrs})
                model_rows.append({**KEYS, "image_id": image, "dimension": dimension,
                                   "value": float(model_fn(emotion, dimension, float(scores.mean()), rng)), **attrs})
    return pd.DataFrame(model_rows), pd.DataFrame(rating_rows)


def _answers(counts):
    """counts: true emotion -> list of predicted labels (None = unanswered)."""
    return pd.DataFrame([
        {**KEYS, "image_id": f"{t}_{i}", "identity": f"id{i}", "race": "a", "gender": "f", "true_emotion": t,
         "predicted_emotion": p, "answer_status": "answered" if p else "refused"}
        for t, predicted in counts.items() for i, p in enumerate(predicted)
    ])


def _row(frame, measure, subset="all", model="m", dimension=None):
    rows = frame[(frame.measure == measure) & (frame.subset == subset) & (frame.model == model)]
    if dimension is not None:
        rows = rows[rows.dimension == dimension]
    assert len(rows) == 1, (measure, subset, model, dimension, len(rows))
    return rows.iloc[0]


EMPTY_ANSWERS = _answers({})


def test_constant_model_per_emotion_is_stereotyped():
    prototype = {"anger": 2.0, "happy": 8.0, "neutral": 5.0, "sad": 3.0}
    model_values, ratings = _data(lambda e, d, h, rng: prototype[e])
    out = response_style(model_values, ratings, EMPTY_ANSWERS)
    for emotion in EMOTIONS:
        assert _row(out, "n_unique_values", emotion, dimension="valence").estimate == 1
        assert _row(out, "sd", emotion, dimension="valence").estimate == 0
        # humans rate every image differently
        assert _row(out, "n_unique_values", emotion, model="human", dimension="valence").estimate == 40
        assert _row(out, "sd", emotion, model="human", dimension="valence").estimate > 0
        assert _row(out, "sd_individual_ratings", emotion, model="human", dimension="valence").n == 120
        ratio = _row(out, "sd_ratio_to_humans", emotion, dimension="valence")
        assert (ratio.estimate, ratio.ci_low, ratio.ci_high) == (0, 0, 0)
    assert _row(out, "n_unique_values", dimension="valence").estimate == 4  # overall: the 4 prototypes


def test_polarity_exaggeration_sd_ratio():
    # model = 5 + 2 * (human - 5): twice as extreme as the humans, on every image
    model_values, ratings = _data(lambda e, d, h, rng: 5 + 2 * (h - 5))
    out = response_style(model_values, ratings, EMPTY_ANSWERS, seed=3, n_resamples=999)
    for subset in ["all", *EMOTIONS]:
        row = _row(out, "sd_ratio_to_humans", subset, dimension="valence")
        assert row.estimate == pytest.approx(2.0)
        assert (row.ci_low, row.ci_high) == pytest.approx((2.0, 2.0))


def test_per_emotion_affine_calibration_recovers_distortion_and_lowers_mae():
    # Known distortion per emotion: model = c_e + s_e * human + small noise, so the calibration
    # human ~ a_e + b_e * model should find b_e = 1 / s_e and a_e = -c_e / s_e.
    distortion = {"anger": (-3.0, 1.5), "happy": (-1.0, 1.4), "neutral": (2.0, 0.5), "sad": (1.0, 0.8)}

    def model_fn(emotion, dimension, human, rng):
        c, s = distortion[emotion]
        return c + s * human + rng.normal(0, 0.05)

    model_values, ratings = _data(model_fn, seed=11)
    out = response_style(model_values, ratings, EMPTY_ANSWERS, cv_folds=5, seed=0)
    for emotion, (c, s) in distortion.items():
        after = _row(out, "mae_after_calibration", emotion, dimension="valence")
        before = _row(out, "mae_before_calibration", emotion, dimension="valence")
        detail = json.loads(after.detail)
        assert detail["slope"] == pytest.approx(1 / s, rel=0.05)
        assert detail["intercept"] == pytest.approx(-c / s, abs=0.3)
        assert detail["cv"].startswith("GroupKFold(identity")
        assert after.estimate < before.estimate
    overall_after = _row(out, "mae_after_calibration", dimension="arousal")
    assert overall_after.estimate < 0.1 < _row(out, "mae_before_calibration", dimension="arousal").estimate
    assert overall_after.p_value < 1e-6 and overall_after.n == 160


def test_calibration_without_identity_uses_kfold_and_is_seeded():
    model_values, ratings = _data(lambda e, d, h, rng: 1.3 * h - 1 + rng.normal(0, 0.3), with_identity=False)
    first = response_style(model_values, ratings, EMPTY_ANSWERS, seed=5)
    again = response_style(model_values, ratings, EMPTY_ANSWERS, seed=5)
    row = _row(first, "mae_after_calibration", "sad", dimension="valence")
    assert json.loads(row.detail)["cv"] == "KFold(k=5)"
    pd.testing.assert_frame_equal(first, again)


def test_neutral_absorption_rate_exact_with_wilson_interval():
    answers = _answers({
        "sad": ["neutral"] * 7 + ["sad"] * 3 + [None],   # 7 of 10 answered read as neutral
        "anger": ["neutral"] + ["anger"] * 9,            # 1 of 10
        "neutral": ["neutral"] * 5,                      # not an absorption cell
    })
    model_values, ratings = _data(lambda e, d, h, rng: h, n_per_emotion=3)
    labels = pd.DataFrame([
        {"dataset": "d", "rater": f"r{i}", "image_id": "sad_0", "dimension": "emotion", "value": None,
         "label": label, "identity": "id0", "race": "a", "gender": "f", "true_emotion": "sad"}
        for i, label in enumerate(["neutral", "sad", "sad", "sad"])
    ])
    out = response_style(model_values, pd.concat([ratings, labels]), answers)
    sad = _row(out, "neutral_absorption_rate", "sad")
    assert (sad.n, sad.estimate) == (10, 0.7)
    # Wilson score interval for 7/10: 0.3968 to 0.8922
    assert (sad.ci_low, sad.ci_high) == pytest.approx((0.3968, 0.8922), abs=1e-4)
    assert (sad.ci_low, sad.ci_high) == pytest.approx(proportion_confint(7, 10, method="wilson"))
    assert _row(out, "neutral_absorption_rate", "anger").estimate == pytest.approx(0.1)
    pooled = _row(out, "neutral_absorption_rate", "all")
    assert (pooled.n, pooled.estimate) == (20, 0.4)
    assert not (out[out.measure == "neutral_absorption_rate"].subset == "neutral").any()
    human = _row(out, "neutral_absorption_rate", "sad", model="human")
    assert (human.n, human.estimate) == (4, 0.25)


def test_strength_arousal_ordering_rank_correlations():
    # Model keeps the humans' valence but reverses their ordering of emotions by arousal.
    arousal_flip = {"anger": 3.0, "happy": 3.5, "neutral": 6.5, "sad": 6.0}
    model_values, ratings = _data(lambda e, d, h, rng: h if d == "valence" else arousal_flip[e], n_per_emotion=20)
    out = response_style(model_values, ratings, EMPTY_ANSWERS)
    valence = _row(out, "emotion_mean_rank_correlation", "valence")
    arousal = _row(out, "emotion_mean_rank_correlation", "arousal")
    assert valence.estimate == pytest.approx(1.0) and valence.n == 4
    assert arousal.estimate == pytest.approx(-1.0)
    assert json.loads(arousal.detail)["order_differs"] is True
    model_va = _row(out, "valence_arousal_correlation")
    human_va = _row(out, "valence_arousal_correlation", model="human")
    detail = json.loads(model_va.detail)
    assert detail["human_rho_same_images"] == pytest.approx(human_va.estimate)
    assert np.sign(model_va.estimate) != np.sign(human_va.estimate) and detail["sign_differs_from_humans"]


def test_figures_write_png_files(tmp_path):
    model_values, ratings = _data(lambda e, d, h, rng: 5 + 1.8 * (h - 5) + rng.normal(0, 0.3), n_per_emotion=12)
    pairs = image_level_pairs(model_values, ratings)
    dimensional = dimensional_agreement(model_values, ratings)
    tests = wilcoxon_by_emotion(model_values, ratings, n_resamples=199)
    means = per_emotion_means(pairs)
    paths = [
        bland_altman_png(pairs[pairs.dimension == "valence"], "Bland-Altman valence", tmp_path / "ba.png"),
        bias_bars_png(dimensional, "bias per emotion", tmp_path / "bias.png"),
        strength_arousal_order_png(means[["rater_type", "true_emotion", "valence", "arousal"]], "inversion",
                               tmp_path / "inv.png"),
        adjusted_forest_png(tests, "Wilcoxon, Bonferroni", tmp_path / "sub" / "forest.png"),
    ]
    for path in paths:
        assert path.exists() and path.stat().st_size > 1000
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
