"""Reliability of human ratings, and of human ratings with a model added as one more rater.

Statistics come from library code only:

* Krippendorff's alpha: ``krippendorff.alpha`` on a raters x images reliability matrix (NaN
  where a rater did not rate an image), passed as krippendorff's equivalent ``value_counts``
  table (images x values; counting only -- about 100x faster with many sparse raters, and the
  same alpha); 'emotion' labels are mapped to integer codes and only the nominal level is used.
  CI: seeded percentile bootstrap over images (``scipy.stats.bootstrap`` resampling the
  images' rows; the value domain is fixed to the full data's so resamples are comparable).
* ICC for numeric dimensions: ``pingouin.intraclass_corr`` (targets = image, raters = rater,
  ratings = value, nan_policy='omit', i.e. images with any missing rating are dropped). We
  report the two-way random-effects, absolute-agreement ICCs -- Shrout & Fleiss ICC2 / ICC2k,
  McGraw & Wong ICC(A,1) / ICC(A,k) -- with pingouin's CI95, F and p-value.

Every human-only estimate has model = 'human'; with a model added, model/model_version (and
protocol when the model frame has one) name the model. Per demographic group of the faces
(subset_kind race / gender / race_gender) alpha is computed among humans only: is the label
itself noisier for some groups?
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd

from dagster_project.analysis.inputs import with_race_gender
from dagster_project.analysis.results import (
    detail_json,
    none_if_nan,
    dimension_frame,
    result_row,
)

CATEGORICAL_DIMENSIONS = ("emotion",)
ICC_TYPES = {  # our measure -> pingouin 'Type' names (>= 0.7 names, older names)
    "icc_a1": ("ICC(A,1)", "ICC2"),
    "icc_ak": ("ICC(A,k)", "ICC2k"),
}
HUMAN = "human"


def answers_as_model_ratings(answers: pd.DataFrame) -> pd.DataFrame:
    """Model answers -> model_ratings rows for dimension 'emotion' (label = predicted emotion).

    Unanswered rows (answer_status != 'answered' or no predicted emotion) are dropped.
    """
    ok = answers["predicted_emotion"].notna()
    if "answer_status" in answers:
        ok &= answers["answer_status"].eq("answered")
    cols = [c for c in ("model", "model_version", "dataset", "protocol", "image_id") if c in answers]
    out = answers.loc[ok, cols].copy()
    out["dimension"] = "emotion"
    out["value"] = np.nan
    out["label"] = answers.loc[ok, "predicted_emotion"].astype(str)
    return out


def rater_reliability(
    ratings: pd.DataFrame,
    model_ratings: pd.DataFrame | None = None,
    *,
    levels: tuple[str, ...] = ("nominal", "ordinal", "interval"),
    groupings: tuple[str, ...] = ("race", "gender", "race_gender"),
    min_n: int = 10,
    bootstrap_resamples: int = 200,
    seed: int = 0,
    icc: bool = True,
) -> pd.DataFrame:
    """Krippendorff's alpha (and ICC for numeric dimensions) per dataset x dimension.

    ratings: long human ratings (dataset, rater, image_id, dimension, value, label, + image
    attributes race / gender). model_ratings (optional): model, model_version, dataset,
    image_id, dimension, value, label (protocol optional) -- or an answers frame
    (predicted_emotion), converted by `answers_as_model_ratings`. Each model version (x protocol)
    is added to the human raters as one more rater, on the images the humans rated.

    Output: RESULT_COLUMNS plus an extra column `dimension` (also in detail).
    Measures: 'krippendorff_alpha_<level>' for each level in `levels` (only 'nominal' for the
    categorical dimension 'emotion'); n = images with at least two ratings (pairable units).
    CI = percentile bootstrap over images (`bootstrap_resamples`, seeded; null when 0).
    'icc_a1' / 'icc_ak' (pingouin ICC(A,1) / ICC(A,k) = Shrout-Fleiss ICC2 / ICC2k) with
    pingouin's CI95, F and p; n = images kept after listwise deletion.
    Duplicate (rater, image) ratings: the first is kept (count in detail).
    """
    if model_ratings is not None and "dimension" not in model_ratings and "predicted_emotion" in model_ratings:
        model_ratings = answers_as_model_ratings(model_ratings)
    rows: list[dict[str, Any]] = []
    for (dataset, dimension), human in ratings.groupby(["dataset", "dimension"], sort=True):
        categorical = dimension in CATEGORICAL_DIMENSIONS
        dim_levels = ("nominal",) if categorical else tuple(levels)
        models = _model_rows(model_ratings, dataset, dimension, human)
        coder = _Coder(human, models, categorical)
        base = dict(dataset=str(dataset), dimension=str(dimension))

        # humans, all images and per demographic group
        human_matrix, human_images = coder.matrix(human)
        human_rows = _alpha_rows(human_matrix, coder.domain, dim_levels, base, HUMAN, "", "", "all", "all",
                                 bootstrap_resamples, seed, coder.duplicates(human))
        human_alphas = dict(zip(dim_levels, (row["estimate"] for row in human_rows)))
        rows.extend(human_rows)
        if icc and not categorical:
            rows.extend(_icc_rows(human, base, HUMAN, "", ""))
        attributes = _image_attributes(human)
        for grouping in groupings:
            if grouping not in attributes:
                continue
            for value, images in attributes.groupby(grouping, sort=True, dropna=True)["image_id"]:
                keep = np.isin(human_images, images.to_numpy())
                duplicates = coder.duplicates(human[human["image_id"].astype(str).isin(images)])
                rows.extend(_alpha_rows(human_matrix[:, keep], coder.domain, dim_levels, base, HUMAN, "", "",
                                        grouping, str(value), bootstrap_resamples, seed, duplicates))

        # each model version (x protocol) as one more rater
        if models is not None:
            model_keys = [c for c in ("model", "model_version", "protocol") if c in models]
            for keys, one_model in models.groupby(model_keys, sort=True, dropna=False):
                keys = dict(zip(model_keys, ("" if pd.isna(k) else str(k) for k in keys)))
                combined = pd.concat([human, one_model.assign(rater=f"model:{keys['model']}")], ignore_index=True)
                matrix, _ = coder.matrix(combined)
                rows.extend(_alpha_rows(
                    matrix, coder.domain, dim_levels, base, keys["model"], keys.get("model_version", ""),
                    keys.get("protocol", ""), "all", "all", bootstrap_resamples, seed,
                    coder.duplicates(combined), alpha_humans=human_alphas))
                if icc and not categorical:
                    rows.extend(_icc_rows(combined, base, keys["model"], keys.get("model_version", ""),
                                          keys.get("protocol", "")))
    return dimension_frame(rows, min_n)


class _Coder:
    """Turns long rows of one dataset x dimension into a raters x images matrix of numbers."""

    def __init__(self, human: pd.DataFrame, models: pd.DataFrame | None, categorical: bool):
        self.categorical = categorical
        frames = [human] if models is None else [human, models]
        if categorical:
            labels = sorted({str(x) for f in frames for x in f["label"].dropna()})
            self.codes = {label: float(i) for i, label in enumerate(labels)}
            self.domain = np.array(sorted(self.codes.values()))
        else:
            values = pd.concat([f["value"] for f in frames]).dropna().to_numpy(float)
            self.domain = np.unique(values)

    def values(self, frame: pd.DataFrame) -> pd.Series:
        if self.categorical:
            return frame["label"].map(lambda x: self.codes.get(str(x)) if pd.notna(x) else np.nan).astype(float)
        return pd.to_numeric(frame["value"], errors="coerce").astype(float)

    def matrix(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        long = pd.DataFrame({"rater": frame["rater"].astype(str).to_numpy(),
                             "image_id": frame["image_id"].astype(str).to_numpy(),
                             "v": self.values(frame).to_numpy()})
        long = long.dropna(subset=["v"]).drop_duplicates(["rater", "image_id"], keep="first")
        wide = long.pivot(index="rater", columns="image_id", values="v")
        return wide.to_numpy(float), wide.columns.to_numpy()

    @staticmethod
    def duplicates(frame: pd.DataFrame) -> int:
        return int(frame.duplicated(["rater", "image_id"]).sum())


def _model_rows(model_ratings, dataset, dimension, human) -> pd.DataFrame | None:
    if model_ratings is None or model_ratings.empty:
        return None
    rows = model_ratings[(model_ratings["dataset"] == dataset) & (model_ratings["dimension"] == dimension)]
    rows = rows[rows["image_id"].astype(str).isin(set(human["image_id"].astype(str)))]
    if "label" not in rows:
        rows = rows.assign(label=np.nan)
    return rows if not rows.empty else None


def _image_attributes(frame: pd.DataFrame) -> pd.DataFrame:
    cols = [c for c in ("race", "gender") if c in frame]
    images = frame.drop_duplicates("image_id")[["image_id", *cols]].copy()
    images["image_id"] = images["image_id"].astype(str)
    return with_race_gender(images)


def value_counts(matrix: np.ndarray, domain: np.ndarray) -> np.ndarray:
    """raters x images matrix -> images x values count table (krippendorff's `value_counts`
    input): how many raters gave image j value domain[k]. Counting only; alpha is unchanged and
    resampling images becomes resampling rows."""
    counts = np.zeros((matrix.shape[1] if matrix.ndim == 2 else 0, len(domain)))
    rater, unit = np.nonzero(~np.isnan(matrix))
    np.add.at(counts, (unit, np.searchsorted(domain, matrix[rater, unit])), 1)
    return counts


# krippendorff.alpha builds an images x values x values array on its way to the values x values
# coincidence matrix: ratings on a continuous scale (averaged or slider ratings; 1,440 images
# with 2,880 distinct values) asked it for 89 GiB and killed ingestion. Above this many bytes the
# coincidence matrix is summed sparsely instead (coincidences_sparse), then the library's own steps.
DENSE_COINCIDENCE_BYTES = 256 * 2**20
MAX_DISTINCT_VALUES = 20_000  # values x values distance and coincidence matrices: 3.2 GB each


def _alpha(counts: np.ndarray, domain: np.ndarray, level: str) -> float:
    import krippendorff
    if counts.shape[0] * len(domain) ** 2 * 8 <= DENSE_COINCIDENCE_BYTES:
        return float(krippendorff.alpha(value_counts=counts, value_domain=domain, level_of_measurement=level))
    return _alpha_sparse(counts, domain, level)


def coincidences_sparse(counts: np.ndarray) -> np.ndarray:
    """Krippendorff's coincidence matrix o_ck = sum over images u of (n_uc n_uk - [c = k] n_uc) /
    (m_u - 1), the sum krippendorff._coincidences takes over a dense images x V x V array, as one
    sparse product: C' diag(1 / (m_u - 1)) C - diag(sum_u n_uc / (m_u - 1)). Images rated once
    weigh 0 in both (the library's max(m_u, 2) - 1 divisor, with a zero numerator)."""
    from scipy import sparse
    pairable = np.maximum(counts.sum(axis=1), 2)
    weights = 1.0 / (pairable - 1)
    table = sparse.csr_matrix(counts)
    product = (table.T @ sparse.diags(weights) @ table).toarray()
    return product - np.diag(table.T @ weights)


def _alpha_sparse(counts: np.ndarray, domain: np.ndarray, level: str) -> float:
    """krippendorff.alpha's own steps (its checks, random coincidences, distance metric), with the
    coincidence matrix from coincidences_sparse."""
    from krippendorff import krippendorff as kd
    if len(domain) > MAX_DISTINCT_VALUES:
        raise ValueError(f"Krippendorff's alpha over {len(domain):,} distinct rating values needs two "
                         f"{len(domain):,} x {len(domain):,} matrices; round the ratings to the scale's steps "
                         "(datasets.<name>.human_ratings) or leave this dimension out")
    if len(domain) <= 1:
        raise ValueError("There has to be more than one value in the domain.")
    if (counts.sum(axis=-1) <= 1).all():
        raise ValueError("There has to be at least one unit with values assigned by at least two coders.")
    observed = coincidences_sparse(counts)
    n_v = observed.sum(axis=0)
    expected = kd._random_coincidences(n_v)
    distances = kd._distances(np.asarray(domain), kd._distance_metric(level), n_v)
    return float(1 - (observed * distances).sum() / (expected * distances).sum())


def _alpha_or_nan(counts, domain, level) -> float:
    try:
        return _alpha(counts, domain, level)
    except (ValueError, ZeroDivisionError):
        return np.nan


def _alpha_rows(matrix, domain, levels, base, model, version, protocol, subset_kind, subset,
                resamples, seed, duplicates, alpha_humans=None) -> list[dict[str, Any]]:
    """One row per level of measurement for one raters x images matrix."""
    from scipy.stats import bootstrap
    counts = value_counts(matrix, domain)
    # only pairable images (>= 2 ratings) carry information; dropping the rest leaves alpha unchanged
    counts = counts[counts.sum(axis=1) >= 2]
    n = len(counts)
    n_raters = int(np.any(~np.isnan(matrix), axis=1).sum()) if matrix.size else 0
    rows = []
    for level in levels:
        estimate = low = high = np.nan
        error = None
        ci_method = "none"
        if n >= 1 and len(domain) >= 2:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    estimate = _alpha(counts, domain, level)
            except (ValueError, ZeroDivisionError) as exc:
                error = str(exc)
            if error is None and resamples > 0 and n >= 2:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    res = bootstrap((np.arange(n),), lambda idx: _alpha_or_nan(counts[idx], domain, level),
                                    vectorized=False, n_resamples=resamples, method="percentile",
                                    rng=np.random.default_rng(seed))
                low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
                ci_method = (f"percentile bootstrap over images (scipy.stats.bootstrap, {resamples} resamples, "
                             f"seed {seed})")
        else:
            error = "no pairable image (>= 2 ratings) or fewer than two distinct values"
        extra = {} if alpha_humans is None else {"alpha_humans": none_if_nan(alpha_humans.get(level))}
        rows.append(result_row(
            analysis="rater_reliability", model=model, model_version=version, dataset=base["dataset"],
            protocol=protocol, dimension=base["dimension"], subset_kind=subset_kind, subset=subset,
            measure=f"krippendorff_alpha_{level}", n=n, estimate=estimate, ci_low=low, ci_high=high,
            detail=detail_json(level=level, n_raters=n_raters, n_pairable_values=int(counts.sum()),
                           ci_method=ci_method, error=error,
                           duplicates_dropped=duplicates, **extra)))
    return rows


def _icc_rows(frame: pd.DataFrame, base, model, version, protocol) -> list[dict[str, Any]]:
    import pingouin
    long = pd.DataFrame({"image_id": frame["image_id"].astype(str).to_numpy(),
                         "rater": frame["rater"].astype(str).to_numpy(),
                         "value": pd.to_numeric(frame["value"], errors="coerce").to_numpy(float)})
    long = long.dropna(subset=["value"]).drop_duplicates(["rater", "image_id"], keep="first")
    # listwise deletion as pingouin's nan_policy='omit' does, done here too so n is known
    complete = long.pivot(index="image_id", columns="rater", values="value").dropna()
    table = error = None
    if len(complete) >= 2 and complete.shape[1] >= 2:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                table = pingouin.intraclass_corr(data=long, targets="image_id", raters="rater", ratings="value",
                                                 nan_policy="omit").set_index("Type")
        except (ValueError, AssertionError, ZeroDivisionError) as exc:
            error = str(exc)
    else:
        error = "fewer than two images rated by every rater, or fewer than two raters"
    rows = []
    for measure, names in ICC_TYPES.items():
        name = next((t for t in names if table is not None and t in table.index), None)
        est = low = high = f = p = np.nan
        df1 = df2 = None
        if name is not None:
            r = table.loc[name]
            est, f, p = float(r["ICC"]), float(r["F"]), float(r["pval"])
            low, high = (float(x) for x in r["CI95"])
            df1, df2 = float(r["df1"]), float(r["df2"])
        rows.append(result_row(
            analysis="rater_reliability", model=model, model_version=version, dataset=base["dataset"],
            protocol=protocol, dimension=base["dimension"], subset_kind="all", subset="all", measure=measure,
            n=len(complete), estimate=est, ci_low=low, ci_high=high, statistic=f, p_value=p,
            detail=detail_json(pingouin_type=name, n_raters=int(complete.shape[1]), df1=df1, df2=df2,
                           error=error,
                           model="two-way random effects, absolute agreement (Shrout-Fleiss ICC2/ICC2k)",
                           ci_method="pingouin CI95 (F-distribution based)",
                           test="F test of rater/target variance (pingouin F, pval)")))
    return rows


__all__ = ["answers_as_model_ratings", "rater_reliability", "value_counts"]
