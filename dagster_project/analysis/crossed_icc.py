"""ICC for incomplete rater designs from a crossed random-effects model (statsmodels MixedLM).

Why not pingouin's ICC: its two-way ANOVA needs every rater to rate every image and drops an
image with any missing rating (listwise). In Tae et al.'s design each of 1,440 images is rated
by 50 of 1,000 raters: no image is rated by all, so the listwise ICC has nothing left. The
crossed model uses every rating:

    value ~ 1 + (1 | image_id) + (1 | rater)          (REML; lme4 notation)

fitted as statsmodels MixedLM with one all-encompassing group and two variance components
(image and rater) whose design matrices are sparse indicator matrices -- the statsmodels way
to fit crossed random effects. From the variance components (McGraw & Wong 1996; for incomplete
designs ten Hove, Jorgensen & van der Ark 2022, Psychological Methods 27(4)):

    ICC(A,1) = s2_image / (s2_image + s2_rater + s2_residual)       one rating
    ICC(A,k) = s2_image / (s2_image + (s2_rater + s2_residual) / k)  the mean of k ratings,
               k = harmonic mean of ratings per image

On a complete design REML gives the two-way ANOVA estimates (checked on Shrout & Fleiss 1979's
data) and lme4's crossed fit (checked on lme4's Penicillin data), tests/test_crossed_icc.py.

No interval: the ICC is a ratio of variance components and statsmodels gives no interval for
it; the detail keeps the components' Wald SEs. A parametric bootstrap would be the honest
interval and costs one refit per resample. Large designs are fitted on a seeded random subset
of images (all their ratings kept, so the components stay unbiased, only less precise): the
sparse single-group fit grows steeply with the number of ratings (scripts/bench_crossed_icc.py:
4,800 ratings ~5 s CPU, 10,000 ~29 s CPU; the 72,000 of Tae's design did not finish within a
15-minute wall-clock limit on the shared 2-core machine). detail says so.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd

from dagster_project.analysis.results import detail_json, dimension_frame, result_row

COMPONENTS = ("image_id", "rater")
MAX_RATINGS = 5000  # above this, a seeded subset of images is fitted (module docstring)
MODEL_TEXT = "value ~ 1 + (1 | image_id) + (1 | rater), REML (statsmodels MixedLM, crossed variance components)"


# statsmodels' default (bfgs) can stop at a worse point and still report convergence (an
# incomplete 120-image design: REML log-likelihood -1886.7, image variance 0.55, where lbfgs /
# powell / nm all reach -1833.1, image variance 0.007). Like lme4's allFit: fit with two
# optimizers of different kinds and keep the higher REML log-likelihood; detail lists both.
OPTIMIZERS = (("lbfgs",), ("powell",))


def fit_crossed(long: pd.DataFrame, given: str | None = None):
    """REML fit of value ~ 1 [+ C(given)] + (1|image_id) + (1|rater); long has image_id, rater,
    value (and the column `given`, a fixed factor such as true_emotion, when given).
    Returns the fit with the highest REML log-likelihood over OPTIMIZERS; its attribute
    `optimizer_llf` maps each optimizer tried to its log-likelihood (None when it failed)."""
    from scipy import sparse
    from statsmodels.regression.mixed_linear_model import MixedLM
    from statsmodels.regression.mixed_linear_model import VCSpec
    n = len(long)
    names, colnames, mats = [], [], []
    for component in COMPONENTS:
        codes, levels = pd.factorize(long[component].astype(str), sort=True)
        names.append(component)
        colnames.append([[f"{component}[{level}]" for level in levels]])
        mats.append([sparse.csr_array((np.ones(n), (np.arange(n), codes)), shape=(n, len(levels)))])
    exog = np.ones((n, 1))
    if given is not None:  # treatment-coded fixed factor: image variance is then within its levels
        exog = np.hstack([exog, pd.get_dummies(long[given].astype(str), drop_first=True).to_numpy(float)])
    model = MixedLM(long["value"].to_numpy(float), exog, groups=np.zeros(n), exog_vc=VCSpec(names, colnames, mats))
    best, tried, error = None, {}, None
    for methods in OPTIMIZERS:
        try:
            result = model.fit(reml=True, method=list(methods), maxiter=5000)
        except Exception as exc:  # one optimizer failing is recorded; all failing is raised
            tried["+".join(methods)], error = None, exc
            continue
        tried["+".join(methods)] = float(result.llf)
        if best is None or result.llf > best.llf:
            best = result
    if best is None:
        raise error
    best.optimizer_llf = tried
    best.optimizer = max((k for k, v in tried.items() if v is not None), key=lambda k: tried[k])
    return best


def variance_components(result) -> dict[str, float]:
    """image_id / rater / residual variances of a `fit_crossed` result."""
    return {"image_id": float(result.vcomp[0]), "rater": float(result.vcomp[1]), "residual": float(result.scale)}


def icc_from_components(components: dict[str, float], k: float) -> tuple[float, float]:
    """(ICC(A,1), ICC(A,k)) from crossed variance components (module docstring)."""
    image, noise = components["image_id"], components["rater"] + components["residual"]
    return image / (image + noise), image / (image + noise / k)


def _subset(long: pd.DataFrame, max_ratings: int, seed: int) -> tuple[pd.DataFrame, bool]:
    if len(long) <= max_ratings:
        return long, False
    images = np.sort(long["image_id"].unique())
    per_image = len(long) / len(images)
    keep = np.random.default_rng(seed).permutation(images)[: max(2, int(max_ratings / per_image))]
    return long[long["image_id"].isin(keep)], True


def crossed_icc_rows(frame: pd.DataFrame, base: dict[str, Any], *, max_ratings: int = MAX_RATINGS,
                     seed: int = 0, given: str | None = None) -> list[dict[str, Any]]:
    """Rows (analysis 'rater_reliability', model 'human') for one dataset x dimension of human
    ratings (image_id, rater, value): 'icc_a1_crossed', 'icc_ak_crossed' and 'variance_image',
    'variance_rater', 'variance_residual'. n = images in the fit. base: dataset, dimension.
    With `given` (e.g. 'true_emotion') the factor is a fixed effect and every measure is suffixed
    '_given_<given>': agreement on the images *within* its levels (Tae et al.'s variance
    decomposition: rater variance against image variance beyond the emotion)."""
    from scipy.stats import hmean
    long = pd.DataFrame({"image_id": frame["image_id"].astype(str).to_numpy(),
                         "rater": frame["rater"].astype(str).to_numpy(),
                         "value": pd.to_numeric(frame["value"], errors="coerce").to_numpy(float)})
    if given is not None:
        long[given] = frame[given].astype(str).to_numpy()
    long = long.dropna(subset=["value"]).drop_duplicates(["rater", "image_id"], keep="first")
    used, subsampled = _subset(long, max_ratings, seed)
    per_image = used.groupby("image_id").size()
    k = float(hmean(per_image)) if len(per_image) else np.nan
    info: dict[str, Any] = {
        "model": MODEL_TEXT if given is None else MODEL_TEXT.replace("~ 1 +", f"~ 1 + C({given}) +"),
        "n_ratings": len(used), "n_raters": int(used["rater"].nunique()),
        "n_ratings_available": len(long), "n_images_available": int(long["image_id"].nunique()),
        "subsampled_images": subsampled, "subsample_seed": seed if subsampled else None,
        "k_harmonic_mean_ratings_per_image": k, "ci_method": "none (module docstring)",
        "design": "complete" if per_image.nunique() == 1 and used["rater"].nunique() == per_image.iloc[0]
        else "incomplete",
    } if len(per_image) else {"model": MODEL_TEXT}
    estimates = {name: np.nan for name in ("icc_a1_crossed", "icc_ak_crossed", "variance_image",
                                           "variance_rater", "variance_residual")}
    if len(per_image) < 3 or used["rater"].nunique() < 2 or (per_image >= 2).sum() < 2:
        info["error"] = "needs >= 3 images, >= 2 raters and >= 2 images rated twice"
    else:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                result = fit_crossed(used, given)
                components = variance_components(result)
                icc_1, icc_k = icc_from_components(components, k)
                estimates.update(icc_a1_crossed=icc_1, icc_ak_crossed=icc_k, variance_image=components["image_id"],
                                 variance_rater=components["rater"], variance_residual=components["residual"])
                bse = np.asarray(result.bse)
                info.update(converged=bool(result.converged), optimizer=result.optimizer,
                            optimizer_reml_llf=result.optimizer_llf,
                            component_se={"image_id": float(bse[-2]), "rater": float(bse[-1])})
            except Exception as exc:  # singular design etc.: recorded, not raised
                info["error"] = f"{type(exc).__name__}: {exc}"
        info["warnings"] = sorted({f"{w.category.__name__}: {w.message}" for w in caught})
    suffix = "" if given is None else f"_given_{given}"
    return [result_row(analysis="rater_reliability", model="human", dataset=base["dataset"],
                       dimension=base["dimension"], subset_kind="all", subset="all", measure=measure + suffix,
                       n=int(len(per_image)), estimate=value, detail=detail_json(info))
            for measure, value in estimates.items()]


def crossed_icc(ratings: pd.DataFrame, *, min_n: int = 10, max_ratings: int = MAX_RATINGS,
                seed: int = 0) -> pd.DataFrame:
    """crossed_icc_rows for every dataset x numeric dimension of human ratings (RESULT_COLUMNS
    + dimension), plain and given true_emotion (when it varies); 'emotion' has no ICC."""
    numeric = ratings[ratings["dimension"] != "emotion"]
    rows: list[dict[str, Any]] = []
    for (dataset, dimension), frame in numeric.groupby(["dataset", "dimension"], sort=True):
        base = {"dataset": str(dataset), "dimension": str(dimension)}
        rows += crossed_icc_rows(frame, base, max_ratings=max_ratings, seed=seed)
        if "true_emotion" in frame and frame["true_emotion"].nunique() > 1:
            rows += crossed_icc_rows(frame, base, max_ratings=max_ratings, seed=seed, given="true_emotion")
    return dimension_frame(rows, min_n)


__all__ = ["MAX_RATINGS", "crossed_icc", "crossed_icc_rows", "fit_crossed", "icc_from_components", "variance_components"]
