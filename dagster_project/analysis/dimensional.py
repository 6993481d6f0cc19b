"""Dimensional (valence / arousal) agreement of model ratings with the mean human rating.

Reproduces the dimensional analyses of Tae et al., "Do Vision Language Models See Emotions
Like Humans?": Pearson r, MAE, RMSE and Bland-Altman bias / 95 % limits of agreement per
model and dimension (overall and per intended emotion), and per-emotion Wilcoxon
signed-rank tests of model - human, Bonferroni-corrected within each model x dimension.

Every statistic comes from library code (scipy, scikit-learn); this module only pairs each
image's model value with the mean of its human ratings and records results with
`result_row` / `result_frame`. Both tables carry one extra column after RESULT_COLUMNS,
`dimension` ('valence', 'arousal', ...), so the dimensions can be filtered without parsing
`detail`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


from .results import adjust_within_families, detail_json, dimension_frame, result_row

MODEL_KEYS = ["model", "model_version", "dataset", "protocol"]
IMAGE_ATTRIBUTES = ["identity", "race", "gender", "true_emotion"]
LOA_MULTIPLIER = 1.96  # Bland & Altman (1986): 95 % limits of agreement = bias +- 1.96 SD
CONFIDENCE = 0.95

PAIR_COLUMNS = [
    *MODEL_KEYS, "image_id", "dimension", *IMAGE_ATTRIBUTES,
    "model_value", "human_mean", "human_sd", "n_raters", "difference",
]


# --------------------------------------------------------------------------- pairing

def human_image_means(ratings: pd.DataFrame) -> pd.DataFrame:
    """Mean, SD and count of the human ratings per dataset x image x numeric dimension,
    with the image's attributes (identity, race, gender, true_emotion) where present.

    The categorical 'emotion' dimension is left out; values that are not numbers are dropped.
    """
    numeric = ratings[ratings["dimension"] != "emotion"].copy()
    numeric["value"] = pd.to_numeric(numeric["value"], errors="coerce")
    numeric = numeric[numeric["value"].notna()]
    keys = ["dataset", "image_id", "dimension"]
    means = (
        numeric.groupby(keys, sort=True)["value"]
        .agg(human_mean="mean", human_sd="std", n_raters="count")
        .reset_index()
    )
    attrs = [c for c in IMAGE_ATTRIBUTES if c in ratings.columns]
    if attrs:
        per_image = ratings.groupby(["dataset", "image_id"], sort=False)[attrs].first().reset_index()
        means = means.merge(per_image, on=["dataset", "image_id"], how="left")
    for col in IMAGE_ATTRIBUTES:
        if col not in means.columns:
            means[col] = None
    return means


def image_level_pairs(model_values: pd.DataFrame, ratings: pd.DataFrame) -> pd.DataFrame:
    """One row per model x version x dataset x protocol x image x dimension: the model's value
    (`model_value`; the mean if a model gave several for one image), the mean of the human
    ratings of that image (`human_mean`, with `human_sd`, `n_raters`), `difference` =
    model - human, and the image attributes (taken from model_values, else from ratings).

    Only images with both a model value and at least one human rating are kept.
    """
    values = model_values[model_values["dimension"] != "emotion"].copy()
    values["value"] = pd.to_numeric(values["value"], errors="coerce")
    values = values[values["value"].notna()]
    if values.empty:
        return pd.DataFrame(columns=PAIR_COLUMNS)
    keys = [*MODEL_KEYS, "image_id", "dimension"]
    model_attrs = [c for c in IMAGE_ATTRIBUTES if c in values.columns]
    grouped = values.groupby(keys, sort=True, dropna=False)
    per_model = grouped["value"].mean().rename("model_value").reset_index()
    if model_attrs:
        per_model = per_model.merge(grouped[model_attrs].first().reset_index(), on=keys, how="left")
    humans = human_image_means(ratings)
    pairs = per_model.merge(
        humans, on=["dataset", "image_id", "dimension"], how="inner", suffixes=("", "_human")
    )
    for col in IMAGE_ATTRIBUTES:
        if col not in pairs.columns:
            pairs[col] = None
        if f"{col}_human" in pairs.columns:
            pairs[col] = pairs[col].where(pairs[col].notna(), pairs[f"{col}_human"])
    pairs["difference"] = pairs["model_value"] - pairs["human_mean"]
    return pairs[PAIR_COLUMNS].reset_index(drop=True)


# --------------------------------------------------------------------------- agreement

def dimensional_agreement(model_values: pd.DataFrame, ratings: pd.DataFrame, *, min_n: int = 10) -> pd.DataFrame:
    """Model value vs mean human rating per model x version x dataset x protocol x dimension,
    over all images (subset_kind 'all') and per intended emotion (subset_kind 'emotion').

    Measures (n = paired images):
      pearson_r            scipy.stats.pearsonr; CI = its Fisher-z confidence_interval(); p two-sided
      mae, rmse            sklearn.metrics (no CI)
      bland_altman_bias    mean(model - human); CI, t and p from scipy.stats.ttest_1samp(d, 0)
      bland_altman_loa_low / bland_altman_loa_high
                           bias -+ 1.96 SD(d) (Bland & Altman 1986); SD in detail; no CI
    Pearson r is left empty (reason in detail) when either side is constant - e.g. a model
    that answers one value for every image of an emotion (stereotyped responding).
    """
    pairs = image_level_pairs(model_values, ratings)
    rows: list[dict[str, Any]] = []
    for (model_keys, dimension, kind, subset), cell in _cells(pairs):
        base = dict(zip(MODEL_KEYS, model_keys))
        base.update(analysis="dimensional_agreement", subset_kind=kind, subset=subset)
        rows.extend(_agreement_rows(base, dimension, cell))
    return dimension_frame(rows, min_n)


def _cells(pairs: pd.DataFrame):
    """(model keys, dimension, subset_kind, subset), frame: overall then per emotion."""
    for keys, group in pairs.groupby([*MODEL_KEYS, "dimension"], sort=True, dropna=False):
        model_keys, dimension = tuple(keys[:-1]), keys[-1]
        yield (model_keys, dimension, "all", "all"), group
        for emotion, cell in group[group["true_emotion"].notna()].groupby("true_emotion", sort=True):
            yield (model_keys, dimension, "emotion", str(emotion)), cell


def _agreement_rows(base: dict, dimension: str, cell: pd.DataFrame) -> list[dict]:
    from scipy import stats
    from sklearn.metrics import mean_absolute_error
    from sklearn.metrics import root_mean_squared_error
    model = cell["model_value"].to_numpy(float)
    human = cell["human_mean"].to_numpy(float)
    diff = model - human
    n = len(cell)
    means = {"model_mean": _mean(model), "human_mean": _mean(human)}

    def row(measure: str, estimate=None, low=None, high=None, statistic=None, p=None, **detail):
        return result_row(**base, dimension=dimension, measure=measure, n=n,
                          estimate=estimate, ci_low=low, ci_high=high, statistic=statistic,
                          p_value=p, detail=_json({**means, **detail}))

    rows = []
    # Pearson correlation (scipy): undefined for n < 2 or a constant side.
    if n >= 3 and not is_constant(model) and not is_constant(human):
        res = stats.pearsonr(model, human)
        ci = res.confidence_interval(confidence_level=CONFIDENCE)
        rows.append(row("pearson_r", res.statistic, ci.low, ci.high, None, res.pvalue,
                        method="scipy.stats.pearsonr", ci_method="Fisher z", df=n - 2))
    else:
        reason = "n < 3" if n < 3 else "constant model values" if is_constant(model) else "constant human means"
        rows.append(row("pearson_r", method="scipy.stats.pearsonr", undefined=reason))
    rows.append(row("mae", mean_absolute_error(human, model), method="sklearn.metrics.mean_absolute_error"))
    rows.append(row("rmse", root_mean_squared_error(human, model), method="sklearn.metrics.root_mean_squared_error"))

    # Bland-Altman: bias with the t-interval of the mean difference (scipy).
    sd = float(np.std(diff, ddof=1)) if n >= 2 else float("nan")
    bias = _mean(diff)
    stat = p = low = high = None
    if n >= 2 and not is_constant(diff):
        test = stats.ttest_1samp(diff, 0.0)
        ci = test.confidence_interval(confidence_level=CONFIDENCE)
        stat, p, low, high = test.statistic, test.pvalue, ci.low, ci.high
    elif n >= 2:  # every difference identical: the mean is known exactly, no test exists
        low = high = bias
    rows.append(row("bland_altman_bias", bias, low, high, stat, p, sd_difference=sd, df=n - 1,
                    method="mean(model - human); scipy.stats.ttest_1samp t-interval"))
    loa = {"bias": bias, "sd_difference": sd, "multiplier": LOA_MULTIPLIER,
           "method": "bias +- 1.96 SD of differences (Bland & Altman 1986)"}
    rows.append(row("bland_altman_loa_low", bias - LOA_MULTIPLIER * sd, **loa))
    rows.append(row("bland_altman_loa_high", bias + LOA_MULTIPLIER * sd, **loa))
    rows.append(_icc_vs_human_mean(row, cell))
    return rows


def _icc_vs_human_mean(row, cell: pd.DataFrame) -> dict:
    """ICC(A,1) of the model and the mean human rating as two raters of every image.

    Human raters rarely rate every image (Tae et al.: 72 of 1,440 each), so an ICC among
    individual raters has no fully crossed design; model vs human mean always does.
    """
    import pingouin as pg
    long = pd.concat(
        [
            pd.DataFrame({"image": cell["image_id"].to_numpy(), "rater": "model", "value": cell["model_value"].to_numpy(float)}),
            pd.DataFrame({"image": cell["image_id"].to_numpy(), "rater": "human_mean", "value": cell["human_mean"].to_numpy(float)}),
        ]
    )
    method = "pingouin.intraclass_corr ICC(A,1) (Shrout & Fleiss ICC2), raters = model, human mean"
    if len(cell) < 5 or is_constant(long["value"].to_numpy(float)):
        return row("icc_a1_vs_human_mean", method=method, undefined="fewer than 5 images or constant values")
    table = pg.intraclass_corr(data=long, targets="image", raters="rater", ratings="value").set_index("Type")
    icc = table.loc["ICC2"] if "ICC2" in table.index else table.loc["ICC(A,1)"]
    low, high = icc["CI95%"] if "CI95%" in icc else icc["CI95"]
    return row("icc_a1_vs_human_mean", float(icc["ICC"]), float(low), float(high), float(icc["F"]), float(icc["pval"]),
               method=method)


# --------------------------------------------------------------------------- Wilcoxon

def wilcoxon_by_emotion(
    model_values: pd.DataFrame,
    ratings: pd.DataFrame,
    *,
    correction: str = "bonferroni",
    min_n: int = 10,
    seed: int = 0,
    n_resamples: int = 1999,
) -> pd.DataFrame:
    """Per model x version x dataset x protocol x dimension x intended emotion: is the model's
    value shifted from the mean human rating? scipy.stats.wilcoxon(model, human) paired over
    images (two-sided, zero_method 'wilcox': zero differences are dropped, as in scipy).

    estimate = median difference (model - human); its CI is a percentile bootstrap of the
    median over images (scipy.stats.bootstrap, seeded). One family = one model x version x
    dataset x protocol x dimension (its emotions); p-values adjusted within it by `correction`
    (Bonferroni as in Tae et al.).
    """
    from scipy import stats
    pairs = image_level_pairs(model_values, ratings)
    rows: list[dict[str, Any]] = []
    for (model_keys, dimension, kind, subset), cell in _cells(pairs):
        if kind != "emotion":
            continue
        diff = cell["difference"].to_numpy(float)
        n = len(diff)
        family = "/".join(str(v) for v in (*model_keys, dimension))
        stat = p = low = high = None
        detail: dict[str, Any] = {
            "test": "scipy.stats.wilcoxon", "alternative": "two-sided",
            "zero_method": "wilcox", "n_nonzero": int(np.count_nonzero(diff)),
            "estimate": "median(model - human)",
        }
        if np.count_nonzero(diff) > 0:
            res = stats.wilcoxon(cell["model_value"].to_numpy(float), cell["human_mean"].to_numpy(float))
            stat, p = res.statistic, res.pvalue
        else:
            detail["undefined"] = "all differences are zero"
        if n >= 2:
            if not is_constant(diff):
                boot = stats.bootstrap((diff,), np.median, confidence_level=CONFIDENCE, method="percentile",
                                       n_resamples=n_resamples, rng=np.random.default_rng(seed))
                low, high = boot.confidence_interval.low, boot.confidence_interval.high
            else:
                low = high = float(diff[0])
            detail.update(ci_method="percentile bootstrap of the median (scipy.stats.bootstrap)",
                          n_resamples=n_resamples, seed=seed)
        rows.append(result_row(
            **dict(zip(MODEL_KEYS, model_keys)), dimension=dimension, analysis="wilcoxon_by_emotion", subset_kind="emotion",
            subset=subset, measure="wilcoxon_signed_rank", n=n,
            estimate=float(np.median(diff)) if n else None, ci_low=low, ci_high=high,
            statistic=stat, p_value=p, family=family, detail=_json(detail),
        ))
    return adjust_within_families(dimension_frame(rows, min_n), correction)


# --------------------------------------------------------------------------- strength inversion

DIMENSIONS = ("valence", "arousal")
# The families Tae et al. compare: FER-specialised classifiers and instruction-tuned VLMs.
COMPARED_FAMILIES = ("fer", "vlm")


def strength_inversion(dimensional: pd.DataFrame, model_families: dict[str, str]) -> pd.DataFrame:
    """Tae et al.'s strength inversion: FER models dominate valence while VLMs dominate arousal.

    Input: dimensional_agreement rows (measure 'pearson_r', subset 'all': each model's r with
    the mean human rating, per dimension) and {model: family} (benchmark.yaml
    `models.<name>.family`, default per kind; models of other families are left out). Per dataset x dimension,
    measure 'vlm_minus_fer_best_r' = best VLM r - best FER r (models named in detail); per
    dataset, measure 'strength_inversion' = 1 when FER leads on valence AND VLMs lead on
    arousal, else 0 (null without both families and both dimensions). No interval: this
    compares a handful of models, each r with its own interval in dimensional_agreement.
    """
    r = dimensional[(dimensional["measure"] == "pearson_r") & (dimensional["subset_kind"] == "all")].copy()
    r["family"] = r["model"].map(lambda m: model_families.get(m, "other"))
    r = r[r["family"].isin(COMPARED_FAMILIES) & r["estimate"].notna()]
    rows: list[dict[str, Any]] = []
    for dataset, data in r.groupby("dataset", sort=True):
        leads = {}
        for dimension in DIMENSIONS:
            best = {}
            for fam in ("fer", "vlm"):
                cell = data[(data["dimension"] == dimension) & (data["family"] == fam)]
                if len(cell):
                    top = cell.loc[cell["estimate"].idxmax()]
                    best[fam] = {"model": f"{top['model']} {top['model_version']}", "r": float(top["estimate"])}
            if len(best) == 2:
                leads[dimension] = best["vlm"]["r"] - best["fer"]["r"]
                rows.append(result_row(
                    analysis="strength_inversion", model="", dataset=str(dataset), dimension=dimension,
                    subset_kind="model_family", subset="vlm vs fer", measure="vlm_minus_fer_best_r",
                    n=int(len(data[data["dimension"] == dimension])), estimate=leads[dimension],
                    detail=detail_json(best_fer=best["fer"], best_vlm=best["vlm"],
                                       source="dimensional_agreement pearson_r (model vs mean human rating)")))
        inverted = None
        if len(leads) == 2:
            inverted = float(leads["valence"] < 0 < leads["arousal"])
        rows.append(result_row(
            analysis="strength_inversion", model="", dataset=str(dataset), subset_kind="model_family",
            subset="vlm vs fer", measure="strength_inversion", n=int(data["model"].nunique()), estimate=inverted,
            detail=detail_json(definition="1 = the best FER model's valence r exceeds the best VLM's while the best "
                                          "VLM's arousal r exceeds the best FER model's (Tae et al., Table 5 / Fig. 3)",
                               vlm_minus_fer_best_r=leads)))
    return dimension_frame(rows, 1)


# --------------------------------------------------------------------------- helpers

def is_constant(values: np.ndarray, rtol: float = 1e-9) -> bool:
    """True when all values are equal up to floating-point noise (e.g. (h + 1) - h), where
    tests and correlations are undefined."""
    values = np.asarray(values, float)
    if len(values) == 0:
        return True
    return bool(np.ptp(values) <= rtol * max(1.0, float(np.max(np.abs(values)))))


def _mean(values: np.ndarray) -> float:
    return float(np.mean(values)) if len(values) else float("nan")


def _json(detail: dict) -> str:
    return detail_json(detail)


__all__ = [
    "IMAGE_ATTRIBUTES", "MODEL_KEYS", "PAIR_COLUMNS", "dimensional_agreement", "human_image_means",
    "image_level_pairs", "is_constant", "strength_inversion", "wilcoxon_by_emotion",
]
