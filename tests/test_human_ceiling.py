"""Human ceiling (one human vs the other humans), checked on data whose answer is known."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import pearsonr

from dagster_project.analysis.human_ceiling import human_ceiling, leave_one_out_pairs, with_human_ceiling

# Shrout & Fleiss (1979) Table 2: 6 targets x 4 judges
SHROUT_FLEISS = [[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]]


def _ratings(matrix, emotions=None) -> pd.DataFrame:
    return pd.DataFrame([{"dataset": "d", "dimension": "valence", "image_id": f"t{t}", "rater": f"j{j}",
                          "value": float(v), "true_emotion": (emotions or ["happy"] * len(matrix))[t]}
                         for t, row in enumerate(matrix) for j, v in enumerate(row)])


def test_leave_one_out_pairs_and_library_estimates():
    pairs = leave_one_out_pairs(_ratings(SHROUT_FLEISS))
    first = pairs[pairs["image_id"] == "t0"].set_index("rater")["rest_mean"]
    assert first.to_dict() == pytest.approx({"j0": 5.0, "j1": 22 / 3, "j2": 19 / 3, "j3": 16 / 3})
    table = human_ceiling(_ratings(SHROUT_FLEISS), bootstrap_resamples=0, min_n=2)
    assert set(table["subset_kind"]) == {"all", "emotion"}  # one emotion: its rows equal the overall ones
    table = table[table["subset_kind"] == "all"].set_index("measure")
    row = table.loc["pearson_r"]
    assert row.estimate == pytest.approx(pearsonr(pairs["value"], pairs["rest_mean"]).statistic)
    assert table.loc["mae", "estimate"] == pytest.approx(np.mean(np.abs(pairs["value"] - pairs["rest_mean"])))
    assert row.n == 6 and json.loads(row.detail)["n_ratings"] == 24 and row.model == "human"


def test_ceiling_matches_the_known_correlation_in_an_incomplete_design():
    # image variance 1, rating noise 1, 8 ratings per image from a pool of raters:
    # r(one rating, mean of the 7 others) = 1 / sqrt(2 * (1 + 1/7)) = 0.661
    rng = np.random.default_rng(4)
    images = rng.normal(0, 1, 400)
    rows = [{"dataset": "d", "dimension": "arousal", "image_id": f"i{i}", "rater": f"r{rng.integers(10_000)}-{k}",
             "value": 5 + images[i] + rng.normal(), "true_emotion": ("fear", "sad")[i % 2]}
            for i in range(len(images)) for k in range(8)]
    table = human_ceiling(pd.DataFrame(rows), bootstrap_resamples=200, seed=1)
    overall = table[(table["subset_kind"] == "all") & (table["measure"] == "pearson_r")].iloc[0]
    truth = 1 / np.sqrt(2 * (1 + 1 / 7))
    assert overall.ci_low < truth < overall.ci_high and overall.ci_high - overall.ci_low < 0.1
    assert overall.n == 400 and not overall.below_min_n
    assert set(table.loc[table["subset_kind"] == "emotion", "subset"]) == {"fear", "sad"}
    assert "bootstrap over images" in json.loads(overall.detail)["ci_method"]


def test_ceiling_lands_beside_each_model_row():
    ceiling = human_ceiling(_ratings(SHROUT_FLEISS), bootstrap_resamples=0, min_n=2)
    agreement = pd.DataFrame([
        {"dataset": "d", "dimension": "valence", "subset_kind": "all", "subset": "all", "measure": m,
         "model": "gemma", "estimate": 0.5} for m in ("pearson_r", "mae", "rmse")])
    merged = with_human_ceiling(agreement, ceiling).set_index("measure")
    overall = ceiling[ceiling["subset_kind"] == "all"].set_index("measure")
    assert len(merged) == 3 and merged.loc["pearson_r", "human_ceiling"] == pytest.approx(
        overall.loc["pearson_r", "estimate"])
    assert np.isnan(merged.loc["rmse", "human_ceiling"]) and merged.loc["mae", "human_ceiling_n"] == 6
