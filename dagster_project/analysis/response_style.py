"""How a model uses the rating scale, compared with humans (Tae et al., sections 4.2-4.4, 5.1-5.3).

One table (analysis = 'response_style'), rows per model (and model = 'human' where a human
comparison exists), extra column `dimension` after RESULT_COLUMNS ('' where not dimensional):

stereotyped responding (per dimension, overall and per intended emotion)
  n_unique_values        distinct model values (rounded to 6 decimals, so float noise is not
                         a "value"); humans: distinct per-image mean ratings
  sd                     SD (ddof 1) of the model's values / of the humans' per-image means
  sd_individual_ratings  humans only: SD of the individual ratings (as in Tae et al. Table 7)
polarity exaggeration
  sd_ratio_to_humans     SD(model) / SD(human per-image means) on the same images; CI =
                         percentile bootstrap over images, pairs resampled together
                         (scipy.stats.bootstrap, paired, seeded); overall ('all') is the
                         paper's valence "SD 2.65 vs 1.42" comparison, per emotion it shows
                         the collapse of within-emotion variation
per-emotion affine calibration (the mitigation proposed in Tae et al. 5.2)
  mae_before_calibration / mae_after_calibration
                         per dimension, fit human_mean ~ a_e + b_e * model_value separately per
                         intended emotion e (sklearn LinearRegression); "after" uses
                         out-of-fold predictions (sklearn cross_val_predict) from GroupKFold
                         over identity (shuffled, seeded) so one person's images never straddle
                         folds, or KFold(shuffle, seed) when identity is missing; overall and per
                         emotion; a_e, b_e (fit on all the emotion's images) in detail. The
                         'after' row's p_value is scipy.stats.wilcoxon(|err before|, |err after|,
                         alternative='greater'): is the absolute error smaller after calibration?
                         Calibrating per *intended* emotion is an upper bound on what a deployed
                         system (which does not know the label) could reach.
neutral absorption (Tae et al. 5.3, "sadness paradox")
  neutral_absorption_rate
                         per intended emotion other than neutral (and pooled, 'all'): share of
                         answered images (predicted_emotion not null) read as neutral; Wilson
                         95 % CI (statsmodels proportion_confint). Human rows use the individual
                         categorical ratings (dimension 'emotion', label) - the unit is a rating
                         and the Wilson CI ignores clustering by image and rater.
valence-strength / arousal ordering (per model; emotions ordered by mean valence strength
|valence - 5| and by mean arousal, model vs humans on the same images). This is NOT Tae et
al.'s "strength inversion" (FER models lead on valence r, VLMs on arousal r), which is
dimensional.strength_inversion.
  emotion_mean_rank_correlation
                         subset_kind 'dimension', subset 'valence' / 'valence_strength' /
                         'arousal': scipy.stats.spearmanr of the model's per-emotion means with
                         the humans' per-emotion means (n = emotions); both orderings in detail
  valence_arousal_correlation
                         scipy.stats.spearmanr across emotions of mean valence strength with mean
                         arousal, for the model (detail: the humans' rho on the same images and
                         whether the sign differs) and for humans (model = 'human', all images)

Statistics come from scipy / statsmodels / scikit-learn; this module arranges data and records.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd

from .dimensional import (
    MODEL_KEYS,
    _json,
    human_image_means,
    image_level_pairs,
    is_constant,
)
from .results import dimension_frame, result_row

ANALYSIS = "response_style"
NEUTRAL = "neutral"
SCALE_MIDPOINT = 5.0  # centre of the 1-9 valence scale: valence strength = |valence - 5|
CONFIDENCE = 0.95
UNIQUE_DECIMALS = 6


def response_style(
    model_values: pd.DataFrame,
    ratings: pd.DataFrame,
    answers: pd.DataFrame,
    *,
    min_n: int = 10,
    cv_folds: int = 5,
    seed: int = 0,
    n_resamples: int = 1999,
) -> pd.DataFrame:
    """All response-style measures (see the module docstring) as one result table."""
    pairs = image_level_pairs(model_values, ratings)
    rows: list[dict[str, Any]] = []
    rows += _stereotype_rows(pairs, ratings)
    rows += _exaggeration_rows(pairs, seed=seed, n_resamples=n_resamples)
    rows += _calibration_rows(pairs, cv_folds=cv_folds, seed=seed)
    rows += _absorption_rows(answers, ratings)
    rows += _ordering_rows(pairs, ratings)
    return dimension_frame(rows, min_n)


def per_emotion_means(pairs: pd.DataFrame) -> pd.DataFrame:
    """Per model x version x dataset x protocol x intended emotion: mean valence, arousal and
    valence strength |valence - 5| of the model (rater_type = model name) and of the humans'
    per-image means on the same images (rater_type = 'human'). Input: image_level_pairs()."""
    out = []
    for keys, group in pairs[pairs["true_emotion"].notna()].groupby(MODEL_KEYS, sort=True, dropna=False):
        for rater_type, column in ((str(keys[0]), "model_value"), ("human", "human_mean")):
            wide = group.pivot_table(index="true_emotion", columns="dimension", values=column, aggfunc="mean")
            strength = (
                group[group["dimension"] == "valence"]
                .assign(strength=lambda f: (f[column] - SCALE_MIDPOINT).abs())
                .groupby("true_emotion")["strength"].mean()
            )
            frame = pd.DataFrame(index=wide.index)
            frame["valence"] = wide["valence"] if "valence" in wide else np.nan
            frame["arousal"] = wide["arousal"] if "arousal" in wide else np.nan
            frame["valence_strength"] = strength.reindex(frame.index)
            frame["n_images"] = group.groupby("true_emotion")["image_id"].nunique().reindex(frame.index)
            frame = frame.reset_index()
            for key, value in zip(MODEL_KEYS, keys):
                frame[key] = value
            frame["rater_type"] = rater_type
            out.append(frame)
    columns = ["rater_type", *MODEL_KEYS, "true_emotion", "valence", "arousal", "valence_strength", "n_images"]
    if not out:
        return pd.DataFrame(columns=columns)
    return pd.concat(out, ignore_index=True)[columns]


# --------------------------------------------------------------------------- stereotyped responding

def _subsets(frame: pd.DataFrame):
    yield "all", "all", frame
    for emotion, cell in frame[frame["true_emotion"].notna()].groupby("true_emotion", sort=True):
        yield "emotion", str(emotion), cell


def _stereotype_rows(pairs: pd.DataFrame, ratings: pd.DataFrame) -> list[dict]:
    rows = []
    for keys, group in pairs.groupby([*MODEL_KEYS, "dimension"], sort=True, dropna=False):
        base = dict(zip(MODEL_KEYS, keys[:-1]), analysis=ANALYSIS)
        for kind, subset, cell in _subsets(group):
            rows += _spread_rows(base, keys[-1], kind, subset, cell["model_value"].to_numpy(float))
    # Humans: every rated image of the dataset, not only those a model answered.
    humans = human_image_means(ratings)
    raw = ratings[ratings["dimension"] != "emotion"].assign(value=lambda f: pd.to_numeric(f["value"], errors="coerce"))
    raw = raw[raw["value"].notna()]
    for (dataset, dimension), group in humans.groupby(["dataset", "dimension"], sort=True):
        base = dict(model="human", model_version="", dataset=dataset, protocol="", analysis=ANALYSIS)
        raw_group = raw[(raw["dataset"] == dataset) & (raw["dimension"] == dimension)]
        for kind, subset, cell in _subsets(group):
            rows += _spread_rows(base, dimension, kind, subset, cell["human_mean"].to_numpy(float),
                                 unit="per-image mean rating")
            individual = raw_group if kind == "all" else raw_group[raw_group["true_emotion"] == subset]
            values = individual["value"].to_numpy(float)
            rows.append(result_row(
                **base, dimension=dimension, subset_kind=kind, subset=subset, measure="sd_individual_ratings",
                n=len(values), estimate=_sd(values), detail=_json({"unit": "individual rating",
                                                   "n_images": int(individual["image_id"].nunique())}),
            ))
    return rows


def _spread_rows(base: dict, dimension: str, kind: str, subset: str, values: np.ndarray, unit: str = "model value"):
    detail = {"unit": unit, "mean": float(np.mean(values)) if len(values) else None}
    unique = np.unique(np.round(values, UNIQUE_DECIMALS))
    base = {**base, "dimension": dimension}
    return [
        result_row(**base, subset_kind=kind, subset=subset, measure="n_unique_values", n=len(values),
                   estimate=len(unique), detail=_json({**detail, "values": unique.tolist()[:20]})),
        result_row(**base, subset_kind=kind, subset=subset, measure="sd", n=len(values),
                   estimate=_sd(values), detail=_json({**detail, "ddof": 1})),
    ]


def _sd(values: np.ndarray) -> float:
    return float(np.std(values, ddof=1)) if len(values) >= 2 else float("nan")


# --------------------------------------------------------------------------- polarity exaggeration

def _sd_ratio(model: np.ndarray, human: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.std(model, ddof=1, axis=axis) / np.std(human, ddof=1, axis=axis)


def _exaggeration_rows(pairs: pd.DataFrame, *, seed: int, n_resamples: int) -> list[dict]:
    from scipy import stats
    rows = []
    for keys, group in pairs.groupby([*MODEL_KEYS, "dimension"], sort=True, dropna=False):
        base = dict(zip(MODEL_KEYS, keys[:-1]), analysis=ANALYSIS, dimension=keys[-1])
        for kind, subset, cell in _subsets(group):
            model = cell["model_value"].to_numpy(float)
            human = cell["human_mean"].to_numpy(float)
            n = len(cell)
            detail: dict[str, Any] = {"sd_model": _sd(model), "sd_human_mean": _sd(human)}
            estimate = low = high = None
            if n >= 2 and not is_constant(human):
                estimate = float(_sd_ratio(model, human))
                if n >= 3 and not is_constant(model):
                    # Tiny cells can draw a resample whose human means are all equal (ratio
                    # undefined); scipy then warns and the interval comes back NaN.
                    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
                        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
                        boot = stats.bootstrap((model, human), _sd_ratio, paired=True, vectorized=True,
                                               method="percentile", confidence_level=CONFIDENCE,
                                               n_resamples=n_resamples, rng=np.random.default_rng(seed))
                    low, high = boot.confidence_interval.low, boot.confidence_interval.high
                    detail.update(ci_method="paired percentile bootstrap (scipy.stats.bootstrap)",
                                  n_resamples=n_resamples, seed=seed)
                elif n >= 3:  # a constant model: every resample's ratio is exactly 0
                    low = high = 0.0
                    detail["ci_method"] = "constant model values: ratio is 0 in every resample"
            else:
                detail["undefined"] = "n < 2 or constant human means"
            rows.append(result_row(**base, subset_kind=kind, subset=subset, measure="sd_ratio_to_humans", n=n,
                                   estimate=estimate, ci_low=low, ci_high=high, detail=_json(detail)))
    return rows


# --------------------------------------------------------------------------- calibration

def _splitter(cell: pd.DataFrame, cv_folds: int, seed: int):
    """(splitter, groups, description) or None when the cell is too small to cross-validate."""
    from sklearn.model_selection import GroupKFold
    from sklearn.model_selection import KFold
    identity = cell["identity"] if "identity" in cell else pd.Series(dtype=object)
    if len(identity) and identity.notna().all() and identity.nunique() >= 2:
        k = min(cv_folds, identity.nunique())
        return GroupKFold(n_splits=k, shuffle=True, random_state=seed), identity.to_numpy(), f"GroupKFold(identity, k={k})"
    if len(cell) >= 3:
        k = min(cv_folds, len(cell))
        return KFold(n_splits=k, shuffle=True, random_state=seed), None, f"KFold(k={k})"
    return None


def _calibration_rows(pairs: pd.DataFrame, *, cv_folds: int, seed: int) -> list[dict]:
    from sklearn.linear_model import LinearRegression
    from sklearn.model_selection import cross_val_predict
    rows = []
    labelled = pairs[pairs["true_emotion"].notna()]
    for keys, group in labelled.groupby([*MODEL_KEYS, "dimension"], sort=True, dropna=False):
        base = dict(zip(MODEL_KEYS, keys[:-1]), analysis=ANALYSIS, dimension=keys[-1])
        before_all, after_all, human_all, coefficients = [], [], [], {}
        for emotion, cell in group.groupby("true_emotion", sort=True):
            split = _splitter(cell, cv_folds, seed) if len(cell) >= 3 else None
            x = cell[["model_value"]].to_numpy(float)
            y = cell["human_mean"].to_numpy(float)
            detail: dict[str, Any] = {"model": "sklearn LinearRegression human_mean ~ model_value"}
            if split is None:
                detail["undefined"] = "fewer than 3 images or 2 identities: no cross-validation"
                rows += _mae_rows(base, "emotion", str(emotion), y, x[:, 0], None, detail)
                continue
            splitter, groups, description = split
            predicted = cross_val_predict(LinearRegression(), x, y, cv=splitter, groups=groups)
            full = LinearRegression().fit(x, y)
            coefficients[str(emotion)] = {"intercept": float(full.intercept_), "slope": float(full.coef_[0])}
            detail.update(coefficients[str(emotion)], cv=description, seed=seed)
            rows += _mae_rows(base, "emotion", str(emotion), y, x[:, 0], predicted, detail)
            before_all.append(x[:, 0])
            after_all.append(predicted)
            human_all.append(y)
        if human_all:
            detail = {"coefficients": coefficients, "seed": seed,
                      "note": "pooled over emotions that could be cross-validated"}
            rows += _mae_rows(base, "all", "all", np.concatenate(human_all), np.concatenate(before_all),
                              np.concatenate(after_all), detail)
    return rows


def _mae_rows(base, kind, subset, human, before, after, detail) -> list[dict]:
    from scipy import stats
    from sklearn.metrics import mean_absolute_error
    n = len(human)
    rows = [result_row(**base, subset_kind=kind, subset=subset, measure="mae_before_calibration", n=n,
                       estimate=mean_absolute_error(human, before), detail=_json(detail))]
    if after is None:
        return rows
    improvement = np.abs(before - human) - np.abs(after - human)
    stat = p = None
    if np.count_nonzero(improvement) > 0:
        res = stats.wilcoxon(np.abs(before - human), np.abs(after - human), alternative="greater")
        stat, p = res.statistic, res.pvalue
    rows.append(result_row(**base, subset_kind=kind, subset=subset, measure="mae_after_calibration", n=n,
                           estimate=mean_absolute_error(human, after), statistic=stat, p_value=p,
                           detail=_json({**detail, "test": "scipy.stats.wilcoxon(|err before|, |err after|, "
                                                           "alternative='greater')"})))
    return rows


# --------------------------------------------------------------------------- neutral absorption

def _absorption_rows(answers: pd.DataFrame, ratings: pd.DataFrame) -> list[dict]:
    rows = []
    if answers is not None and len(answers):
        answered = answers[answers["predicted_emotion"].notna() & answers["true_emotion"].notna()]
        for keys, group in answered.groupby(MODEL_KEYS, sort=True, dropna=False):
            base = dict(zip(MODEL_KEYS, keys), analysis=ANALYSIS)
            rows += _rate_rows(base, group["true_emotion"], group["predicted_emotion"], "answered image")
    if ratings is not None and len(ratings) and "label" in ratings:
        labels = ratings[(ratings["dimension"] == "emotion") & ratings["label"].notna() & ratings["true_emotion"].notna()]
        for dataset, group in labels.groupby("dataset", sort=True):
            base = dict(model="human", model_version="", dataset=dataset, protocol="", analysis=ANALYSIS)
            rows += _rate_rows(base, group["true_emotion"], group["label"],
                               "individual rating (Wilson CI ignores clustering by image and rater)")
    return rows


def _rate_rows(base: dict, truth: pd.Series, predicted: pd.Series, unit: str) -> list[dict]:
    from statsmodels.stats.proportion import proportion_confint
    truth = truth.astype(str).str.strip().str.lower()
    is_neutral = predicted.astype(str).str.strip().str.lower() == NEUTRAL
    keep = truth != NEUTRAL
    rows = []
    cells = [("all", "all", keep)] + [("emotion", e, truth == e) for e in sorted(truth[keep].unique())]
    for kind, subset, mask in cells:
        n, count = int(mask.sum()), int((is_neutral & mask).sum())
        if n == 0:
            continue
        low, high = proportion_confint(count, n, alpha=1 - CONFIDENCE, method="wilson")
        rows.append(result_row(**base, subset_kind=kind, subset=subset, measure="neutral_absorption_rate", n=n,
                               estimate=count / n, ci_low=low, ci_high=high,
                               detail=_json({"n_neutral": count, "unit": unit,
                                             "ci_method": "Wilson (statsmodels proportion_confint)"})))
    return rows


# --------------------------------------------------------------------------- strength / arousal ordering

def _spearman(a, b) -> tuple[float | None, float | None]:
    from scipy import stats
    a, b = np.asarray(a, float), np.asarray(b, float)
    ok = ~(np.isnan(a) | np.isnan(b))
    a, b = a[ok], b[ok]
    if len(a) < 3 or is_constant(a) or is_constant(b):
        return None, None
    res = stats.spearmanr(a, b)
    return float(res.statistic), float(res.pvalue)


def _order(frame: pd.DataFrame, column: str) -> list[str]:
    return frame.dropna(subset=[column]).sort_values(column, ascending=False)["true_emotion"].astype(str).tolist()


def _ordering_rows(pairs: pd.DataFrame, ratings: pd.DataFrame) -> list[dict]:
    rows = []
    means = per_emotion_means(pairs)
    for keys, group in means.groupby(MODEL_KEYS, sort=True, dropna=False):
        base = dict(zip(MODEL_KEYS, keys), analysis=ANALYSIS)
        model = group[group["rater_type"] != "human"].set_index("true_emotion")
        human = group[group["rater_type"] == "human"].set_index("true_emotion").reindex(model.index)
        for column in ("valence", "valence_strength", "arousal"):
            rho, p = _spearman(model[column], human[column])
            model_order, human_order = _order(model.reset_index(), column), _order(human.reset_index(), column)
            rows.append(result_row(
                **base, subset_kind="dimension", subset=column, measure="emotion_mean_rank_correlation",
                dimension="valence" if column.startswith("valence") else column,
                n=int(model[column].notna().sum()), estimate=rho, statistic=rho, p_value=p,
                detail=_json({"test": "scipy.stats.spearmanr across emotions",
                              "model_order_desc": model_order, "human_order_desc": human_order,
                              "order_differs": model_order != human_order}),
            ))
        rho, p = _spearman(model["valence_strength"], model["arousal"])
        human_rho, _ = _spearman(human["valence_strength"], human["arousal"])
        rows.append(result_row(
            **base, subset_kind="all", subset="all", measure="valence_arousal_correlation",
            n=int((model["valence_strength"].notna() & model["arousal"].notna()).sum()),
            estimate=rho, statistic=rho, p_value=p,
            detail=_json({"test": "scipy.stats.spearmanr(mean |valence - 5|, mean arousal) across emotions",
                          "human_rho_same_images": human_rho,
                          "sign_differs_from_humans": (None if rho is None or human_rho is None
                                                       else bool(np.sign(rho) != np.sign(human_rho))),
                          "strength_order_desc": _order(model.reset_index(), "valence_strength"),
                          "arousal_order_desc": _order(model.reset_index(), "arousal"),
                          "human_strength_order_desc": _order(human.reset_index(), "valence_strength"),
                          "human_arousal_order_desc": _order(human.reset_index(), "arousal")}),
        ))
    # Humans alone, every rated image of each dataset.
    humans = human_image_means(ratings)
    humans = humans[humans["true_emotion"].notna()]
    for dataset, group in humans.groupby("dataset", sort=True):
        valence = group[group["dimension"] == "valence"]
        strength = (valence["human_mean"] - SCALE_MIDPOINT).abs().groupby(valence["true_emotion"]).mean()
        arousal = group[group["dimension"] == "arousal"].groupby("true_emotion")["human_mean"].mean()
        joined = pd.concat([strength.rename("valence_strength"), arousal.rename("arousal")], axis=1)
        if joined.empty:
            continue
        rho, p = _spearman(joined["valence_strength"], joined["arousal"])
        joined = joined.reset_index().rename(columns={"index": "true_emotion"})
        rows.append(result_row(
            model="human", model_version="", dataset=dataset, protocol="", analysis=ANALYSIS,
            subset_kind="all", subset="all", measure="valence_arousal_correlation",
            n=int(joined.dropna().shape[0]), estimate=rho, statistic=rho, p_value=p,
            detail=_json({"test": "scipy.stats.spearmanr(mean |valence - 5|, mean arousal) across emotions",
                          "strength_order_desc": _order(joined, "valence_strength"),
                          "arousal_order_desc": _order(joined, "arousal")}),
        ))
    return rows


__all__ = ["image_level_pairs", "per_emotion_means", "response_style"]
