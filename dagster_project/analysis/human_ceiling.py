"""The human ceiling: how well ONE human agrees with the other humans, read beside every model.

A model's valence/arousal is compared with the mean human rating of each image
(stats.dimensional_agreement: Pearson r, MAE). Without the same number for a human, "r = .90"
cannot be read: is that worse than a person, or better? Here each human rating is treated as
the model is -- one rater -- and compared with the mean of the *other* ratings of the same image
(leave-one-rating-out; images with >= 2 ratings):

  pearson_r   scipy.stats.pearsonr(rating, mean of the image's other ratings), over all ratings
  mae         sklearn mean_absolute_error of the same pairs

Denominators: n = images (each contributes all its ratings); detail.n_ratings = pairs. The
pairs within an image are dependent, so the interval is a seeded percentile bootstrap over
images (scipy.stats.bootstrap), not pearsonr's Fisher interval. Caveat, recorded in detail: the
human is compared with n_i - 1 others while a model is compared with all n_i, so with few
ratings per image the human ceiling is slightly pessimistic (the mean of fewer ratings is
noisier); and where images do not truly differ (e.g. within one emotion of a stimulus set whose
images are alike) the leave-one-out r is slightly negative rather than 0, because the pairs of
one image share its ratings (one rating high -> the rest-means of its neighbours high). Rows: analysis 'human_ceiling', model 'human', subset_kind 'all' / 'emotion' (as
dimensional_agreement), so `with_human_ceiling` can put the ceiling beside each model row.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd

from dagster_project.analysis.results import detail_json, dimension_frame, result_row

MEASURES = ("pearson_r", "mae")
JOIN_KEYS = ["dataset", "dimension", "subset_kind", "subset", "measure"]
DEFINITION = "one human rating vs the mean of the other ratings of the same image (leave-one-rating-out)"


def leave_one_out_pairs(ratings: pd.DataFrame) -> pd.DataFrame:
    """Numeric human ratings with `rest_mean` = mean of the other ratings of the same image
    (dataset x dimension x image); images with a single rating are dropped."""
    numeric = ratings[ratings["dimension"] != "emotion"].copy()
    numeric["value"] = pd.to_numeric(numeric["value"], errors="coerce")
    numeric = numeric.dropna(subset=["value"])
    keys = ["dataset", "dimension", "image_id"]
    grouped = numeric.groupby(keys, sort=False)["value"]
    total, count = grouped.transform("sum"), grouped.transform("count")
    numeric["rest_mean"] = (total - numeric["value"]) / (count - 1)
    return numeric[count > 1].sort_values([*keys, "rater"]).reset_index(drop=True)


def _estimate(measure: str, x: np.ndarray, y: np.ndarray) -> float:
    from scipy.stats import pearsonr
    from sklearn.metrics import mean_absolute_error
    if measure == "mae":
        return float(mean_absolute_error(x, y))
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return np.nan
    return float(pearsonr(x, y).statistic)


def _image_bootstrap(measure, x, y, image_codes, resamples, seed) -> tuple[float, float]:
    """Percentile bootstrap over images: each resample takes whole images (all their ratings)."""
    from scipy.stats import bootstrap
    n_images = int(image_codes.max()) + 1
    counts = np.bincount(image_codes, minlength=n_images)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])

    def statistic(images: np.ndarray) -> float:
        images = images.astype(int)
        lengths = counts[images]
        offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        rows = np.repeat(starts[images], lengths) + offsets
        return _estimate(measure, x[rows], y[rows])

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = bootstrap((np.arange(n_images),), statistic, vectorized=False, n_resamples=resamples,
                        method="percentile", rng=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def human_ceiling(ratings: pd.DataFrame, *, min_n: int = 10, bootstrap_resamples: int = 200,
                  seed: int = 0) -> pd.DataFrame:
    """One row per dataset x dimension x subset (all, each true emotion) x measure (module docstring)."""
    pairs = leave_one_out_pairs(ratings)
    rows: list[dict[str, Any]] = []
    for (dataset, dimension), data in pairs.groupby(["dataset", "dimension"], sort=True):
        cells = [("all", "all", data)]
        if "true_emotion" in data:
            cells += [("emotion", str(e), cell) for e, cell in data.groupby("true_emotion", sort=True)]
        for kind, subset, cell in cells:
            x, y = cell["value"].to_numpy(float), cell["rest_mean"].to_numpy(float)
            codes, _ = pd.factorize(cell["image_id"].astype(str))
            for measure in MEASURES:
                estimate = _estimate(measure, x, y)
                low = high = np.nan
                if bootstrap_resamples > 0 and codes.max(initial=-1) >= 1 and np.isfinite(estimate):
                    low, high = _image_bootstrap(measure, x, y, codes, bootstrap_resamples, seed)
                rows.append(result_row(
                    analysis="human_ceiling", model="human", dataset=str(dataset), dimension=str(dimension),
                    subset_kind=kind, subset=subset, measure=measure, n=int(codes.max(initial=-1) + 1),
                    estimate=estimate, ci_low=low, ci_high=high,
                    detail=detail_json(definition=DEFINITION, n_ratings=len(cell),
                                       mean_ratings_per_image=len(cell) / max(1, codes.max(initial=-1) + 1),
                                       ci_method=(f"percentile bootstrap over images (scipy.stats.bootstrap, "
                                                  f"{bootstrap_resamples} resamples, seed {seed})"
                                                  if bootstrap_resamples > 0 else "none"),
                                       caveat="the human is compared with n_i - 1 other ratings, a model with "
                                              "all n_i: slightly pessimistic for few ratings per image")))
    return dimension_frame(rows, min_n)


def with_human_ceiling(agreement: pd.DataFrame, ceiling: pd.DataFrame) -> pd.DataFrame:
    """dimensional_agreement rows with the matching human ceiling beside them: columns
    human_ceiling, human_ceiling_ci_low, human_ceiling_ci_high, human_ceiling_n (null where the
    measure has no ceiling, e.g. rmse or Bland-Altman)."""
    beside = ceiling[[*JOIN_KEYS, "estimate", "ci_low", "ci_high", "n"]].rename(columns={
        "estimate": "human_ceiling", "ci_low": "human_ceiling_ci_low", "ci_high": "human_ceiling_ci_high",
        "n": "human_ceiling_n"})
    merged = agreement.merge(beside, on=JOIN_KEYS, how="left")
    merged["human_ceiling_n"] = merged["human_ceiling_n"].astype("Int64")
    return merged


__all__ = ["human_ceiling", "leave_one_out_pairs", "with_human_ceiling"]
