"""Regression models of ratings and correctness (Tae et al., mixed-models section).

Statistics come from statsmodels; this module only arranges data and records the fits as
rows of the common RESULT_COLUMNS shape (one row per coefficient).

`rating_mixed_models` -- linear mixed models of dimensional ratings (valence, arousal, ...),
humans and models as raters, with a random intercept per image (statsmodels MixedLM, REML).
Formulas (lme4 notation; `rater_type` = 'human' for every single human rating, otherwise
the model's name, 'human' the reference level):

* 'emotion':     value ~ C(rater_type, Treatment('human')) * C(true_emotion) + (1 | image_id)
* 'demographic': value ~ C(rater_type, Treatment('human')) * C(race)
                       + C(rater_type, Treatment('human')) * C(gender)
                       + C(true_emotion) + (1 | image_id)

  (race, gender and true_emotion use their alphabetically first level as reference.)

Each formula is fitted per dataset x dimension with all raters together (one level of
rater_type per model). Tae et al. fit one human-vs-VLM model per VLM on human *aggregate*
ratings with lme4/lmerTest (Satterthwaite t-tests); here every human rating is a row and the
tests are MixedLM's Wald z-tests, so p-values can differ slightly from lmerTest's. Pass
`per_model=True` for one human-vs-model fit per model, as in the paper. A factor with a single
level in the data is dropped from the formula (the detail records the formula actually fitted).

`correctness_model` -- correctness (0/1) ~ race + gender + true_emotion, images clustered by
identity, per model x version x dataset x protocol.

Why GEE (statsmodels `GEE`, Binomial family, Exchangeable working correlation) and not
`BinomialBayesMixedGLM`:

* the question is "are faces of race X recognised less often, on average" -- a
  population-averaged odds ratio, which is what GEE estimates;
* GEE's sandwich (cluster-robust) standard errors stay valid even when the exchangeable
  working correlation is wrong, and the estimating equations converge reliably;
* BinomialBayesMixedGLM is a variational-Bayes approximation: it gives posterior means and
  SDs, no frequentist p-values or confidence intervals, and its subject-specific
  (conditional) odds ratios are not comparable with the other tables' marginal rates.

Fitting problems (ConvergenceWarning, boundary warnings, singular matrices) are recorded in
the detail JSON ('warnings', 'converged', 'error'), never raised.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from dagster_project.analysis.lmm_contrasts import simple_effect_rows
from dagster_project.analysis.results import RESULT_COLUMNS, adjust_within_families, result_frame, result_row

HUMAN = "human"
RATER = "C(rater_type, Treatment('human'))"
RATING_FORMULAS: dict[str, str] = {
    "emotion": f"value ~ {RATER} * C(true_emotion)",
    "demographic": f"value ~ {RATER} * C(race) + {RATER} * C(gender) + C(true_emotion)",
}
# Per-level "model minus human" effects reported from each formula's fit (Tae's Table 6 is the
# 'emotion' formula by true_emotion); each (fit, by-factor) is one family across its levels.
SIMPLE_EFFECTS_BY: dict[str, tuple[str, ...]] = {"emotion": ("true_emotion",), "demographic": ("race", "gender")}
CORRECTNESS_FORMULA = "correct ~ C(race) + C(gender) + C(true_emotion)"
MODEL_KEYS = ["model", "model_version", "dataset", "protocol"]
MIXED_EXTRA_COLUMNS = ["dimension", "rater_type", "term"]
# withheld: why a term's estimate, interval and p-value are null ('' when they are reported).
CORRECTNESS_EXTRA_COLUMNS = ["term", "withheld"]


@dataclass
class Fit:
    """A statsmodels result plus what happened while fitting it."""

    result: Any = None
    warnings: list[str] = field(default_factory=list)
    error: str = ""
    optimizer: str = ""

    @contextmanager
    def recording(self) -> Iterator[None]:
        """Catch warnings (fitting, or reading SEs/p-values off the result) into self.warnings."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                yield
            finally:
                for w in caught:
                    text = f"{w.category.__name__}: {w.message}"
                    if text not in self.warnings:
                        self.warnings.append(text)


# Gradient optimizers fail on some designs (e.g. models answering one prototype value per
# emotion: a flat likelihood along the random-intercept variance); derivative-free ones then
# converge to the same fixed effects. Like lme4's allFit, try them in turn and record which won.
FALLBACK_OPTIMIZERS = (("powell",), ("nm",))
# A derivative-free fallback on a degenerate (boundary) likelihood can wander for many minutes
# (scipy's Powell line search, recovering from bracket errors, does not stop at `maxfun`), so each
# fallback gets a hard budget of likelihood evaluations; one that runs out is recorded, not kept.
FALLBACK_EVALUATIONS = 600


class _BudgetSpent(Exception):
    """A fallback optimizer used up FALLBACK_EVALUATIONS likelihood evaluations."""


@contextmanager
def _evaluation_budget(model: Any, budget: int) -> Iterator[None]:
    """Make `model.loglike` raise _BudgetSpent on its (budget+1)-th call inside the block."""
    calls = 0
    loglike = model.loglike

    def counted(*args: Any, **kwargs: Any) -> float:
        nonlocal calls
        calls += 1
        if calls > budget:
            raise _BudgetSpent(f"{budget} likelihood evaluations")
        return loglike(*args, **kwargs)

    model.loglike = counted  # statsmodels' objective looks the method up on the instance
    try:
        yield
    finally:
        del model.loglike


def _fallback_fit(model: Any, methods: tuple[str, ...], fit: Fit) -> Any | None:
    """One fallback fit within its budget; None (and a recorded note) when the budget ran out."""
    try:
        with _evaluation_budget(model, FALLBACK_EVALUATIONS):
            return model.fit(reml=True, method=list(methods), maxiter=FALLBACK_EVALUATIONS)
    except _BudgetSpent as spent:
        fit.warnings.append(f"FallbackStopped: {'+'.join(methods)} did not converge within {spent}")
        return None


def fit_mixedlm(formula: str, data: pd.DataFrame, group: str, *, re_formula: str | None = None) -> Fit:
    """statsmodels MixedLM by REML with a random intercept (or `re_formula`) per `group`.

    Warnings (ConvergenceWarning, boundary, Hessian) are caught and recorded, not raised;
    an exception becomes Fit.error. When the default optimizer does not converge, the
    derivative-free FALLBACK_OPTIMIZERS are tried; Fit.optimizer names the one kept.
    """
    import statsmodels.formula.api as smf
    fit = Fit()
    with fit.recording():
        try:
            model = smf.mixedlm(formula, data, groups=data[group], re_formula=re_formula)
            fit.result = model.fit(reml=True)
            fit.optimizer = "default (bfgs, lbfgs, cg)"
            for methods in FALLBACK_OPTIMIZERS:
                if fit.result.converged:
                    break
                retry = _fallback_fit(model, methods, fit)
                if retry is not None and retry.converged:
                    fit.result, fit.optimizer = retry, "+".join(methods)
        except Exception as exc:  # singular design, too few groups, ...
            fit.error = f"{type(exc).__name__}: {exc}"
    return fit


def fit_gee(formula: str, data: pd.DataFrame, group: str) -> Fit:
    """statsmodels GEE, Binomial (logit) family, exchangeable working correlation, robust SEs."""
    from statsmodels.genmod.cov_struct import Exchangeable
    from statsmodels.genmod.families import Binomial
    import statsmodels.formula.api as smf
    fit = Fit()
    with fit.recording():
        try:
            model = smf.gee(formula, group, with_categories(formula, data), family=Binomial(),
                            cov_struct=Exchangeable(), eval_env=_formula_namespace())
            fit.result = model.fit()
        except Exception as exc:
            fit.error = f"{type(exc).__name__}: {exc}"
    return fit


# ---------------------------------------------------------------------------------------------
# Ratings: humans and models as raters
# ---------------------------------------------------------------------------------------------


def rating_long_frame(ratings: pd.DataFrame, model_values: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """Humans (one row per rating, rater_type='human') and models (rater_type=model) stacked.

    rater_type is the model name; a model with several (version, protocol) pairs in one
    dataset x dimension gets one rater_type per pair: "<model> <version> <protocol>".
    Returns the frame and rater_type -> (model, model_version, protocol).
    """
    cols = ["dataset", "dimension", "image_id", "value", "race", "gender", "true_emotion"]
    humans = ratings[cols].assign(rater_type=HUMAN)
    models = model_values.copy()
    for key in ("model_version", "protocol"):
        models[key] = models[key].fillna("").astype(str) if key in models else ""
    variants = models.groupby(["dataset", "dimension", "model"])[["model_version", "protocol"]].transform(
        lambda s: s.nunique())
    several = (variants["model_version"] > 1) | (variants["protocol"] > 1)
    models["rater_type"] = models["model"].astype(str).where(
        ~several, models["model"].astype(str) + " " + models["model_version"] + " " + models["protocol"])
    if (models["rater_type"] == HUMAN).any():
        raise ValueError("a model may not be called 'human'")
    keys = {r.rater_type: (r.model, r.model_version, r.protocol)
            for r in models[["rater_type", "model", "model_version", "protocol"]].drop_duplicates().itertuples()}
    long = pd.concat([humans, models[[*cols, "rater_type"]]], ignore_index=True)
    long = long.dropna(subset=["value", "image_id", "true_emotion"])
    long["value"] = long["value"].astype(float)
    return long, keys


def rating_mixed_models(
    ratings: pd.DataFrame,
    model_values: pd.DataFrame,
    *,
    min_n: int = 10,
    formulas: dict[str, str] | None = None,
    per_model: bool = False,
    correction: str = "holm",
) -> pd.DataFrame:
    """One row per fixed-effect coefficient of each formula fitted per dataset x dimension.

    analysis='mixed_model', measure = formula name ('emotion', 'demographic'),
    subset_kind='term', subset = the statsmodels term name, estimate = coefficient,
    ci = fit.conf_int(), statistic = z, p_value = Wald p (no multiplicity adjustment),
    n = observations (ratings) in the fit, model = the rater_type a term concerns
    ('human' for the intercept and the human-reference terms). Extra columns: dimension,
    rater_type, term. detail: se, converged, method ('REML'), n_groups, n_obs,
    random_intercept_var, residual_var, formula, warnings (and error when the fit failed).

    Beside the coefficients, analysis='mixed_model_simple_effect' rows give each model's
    simple effect "model minus human" at every level of a by-factor (SIMPLE_EFFECTS_BY:
    true_emotion for 'emotion' -- Tae et al.'s Table 6 --, race and gender for 'demographic'),
    computed from the same fit as an emmeans-style contrast (analysis/lmm_contrasts.py), never
    read off one treatment coefficient: subset_kind = the by-factor's kind (seed subset_kinds.csv:
    true_emotion -> 'emotion', race, gender), subset = its level,
    estimate / ci / statistic (Wald z) / p_value of the contrast, p_adjusted by `correction`
    within family = dataset/model/version/protocol/dimension/formula/by-factor (one family
    across the levels; family_m = its testable contrasts), n = ratings at the level (human +
    model). detail: se, raw_mean_difference (model mean - human mean at the level, Tae's
    "Bias"), n_images, weights (the contrast vector), df_method, formula, converged.
    """
    formulas = RATING_FORMULAS if formulas is None else formulas
    long, keys = rating_long_frame(ratings, model_values)
    rows: list[dict] = []
    for (dataset, dimension), data in long.groupby(["dataset", "dimension"], sort=True):
        raters = sorted(set(data["rater_type"]) - {HUMAN})
        if not raters or not (data["rater_type"] == HUMAN).any():
            continue
        subsets = [raters] if not per_model else [[r] for r in raters]
        for chosen in subsets:
            subset = data[data["rater_type"].isin([HUMAN, *chosen])]
            for name, formula in formulas.items():
                fitted_formula = _drop_constant_factors(formula, subset)
                fit = fit_mixedlm(fitted_formula, subset, "image_id")
                rows += _mixed_rows(fit, dataset, str(dimension), name, fitted_formula, subset, keys,
                                    chosen if per_model else None)
                rows += simple_effect_rows(fit, dataset, str(dimension), name, fitted_formula, subset, keys, chosen,
                                           per_model, SIMPLE_EFFECTS_BY.get(name, ()))
    frame = _with_extras(rows, min_n, MIXED_EXTRA_COLUMNS)
    return adjust_within_families(frame, correction) if len(frame) else frame


def _mixed_rows(fit: Fit, dataset, dimension, name, formula, data, keys, only) -> list[dict]:
    base = {"analysis": "mixed_model", "dataset": dataset, "measure": name, "subset_kind": "term",
            "n": len(data)}
    info = {"formula": formula + " + (1 | image_id)", "method": "REML",
            "n_obs": len(data), "n_groups": int(data["image_id"].nunique()), "warnings": fit.warnings}
    if only:
        info["raters"] = [HUMAN, *only]
    # One fit per model: every row (the human reference terms too) belongs to that model's fit.
    fitted = keys[only[0]] if only else None
    if fit.result is None:
        owner = dict(zip(("model", "model_version", "protocol"), fitted)) if fitted else {"model": ""}
        return [{**result_row(**base, **owner, subset="(fit failed)",
                              detail=json.dumps({**info, "converged": False, "error": fit.error})),
                 "dimension": dimension, "rater_type": "", "term": ""}]
    res = fit.result
    with fit.recording():  # reading SEs / p-values can warn too (e.g. on the boundary)
        params, se, ci, z, p = res.fe_params, res.bse_fe, res.conf_int(), res.tvalues, res.pvalues
    info.update(converged=bool(res.converged), optimizer=fit.optimizer, random_intercept_var=float(res.cov_re.iloc[0, 0]),
                residual_var=float(res.scale), warnings=fit.warnings)
    rows = []
    for term in params.index:
        rater = _rater_of(term, keys)
        model, version, protocol = fitted or keys.get(rater, (HUMAN, "", ""))
        rows.append({
            **result_row(**base, model=model, model_version=version, protocol=protocol, subset=term,
                         estimate=params[term], ci_low=ci.loc[term, 0], ci_high=ci.loc[term, 1],
                         statistic=z[term], p_value=p[term], detail=json.dumps({**info, "se": float(se[term])})),
            "dimension": dimension, "rater_type": rater, "term": term,
        })
    return rows


def _rater_of(term: str, keys: dict) -> str:
    prefix = f"{RATER}[T."
    for part in term.split(":"):
        if part.startswith(prefix):
            return part[len(prefix):-1]
    return HUMAN


def with_categories(formula: str, data: pd.DataFrame) -> pd.DataFrame:
    """`data` with each string column of a C(x) term as a pandas Categorical of its sorted
    levels: the design matrix patsy builds is the same (patsy sorts a string factor's levels
    the same way), but patsy reads a Categorical's codes instead of checking every value in
    Python (0.3 s of a 3.3 s GEE fit at 100,000 images; the fit is the same to the bit)."""
    converted = {}
    for column in set(re.findall(r"C\((\w+)\)", formula)):
        if column in data and not isinstance(data[column].dtype, pd.CategoricalDtype) \
                and pd.api.types.is_string_dtype(data[column]):
            # (an object column passes is_string_dtype only when every value is a string)
            converted[column] = pd.Categorical(data[column], categories=sorted(data[column].dropna().unique()))
    return data.assign(**converted) if converted else data


def categorical_or_c(data: Any, contrast: Any = None, levels: Any = None) -> Any:
    """patsy's C(), except that a pandas Categorical with no contrast or levels asked for is
    handed on as it is. patsy reads a Categorical's codes, but C() boxes it first, and from the
    box patsy checks and looks up every value in Python (0.7 s of a 4.4 s GEE fit at 100,000
    images); unboxed, the factor has the same levels (the categories, which with_categories
    sorts as patsy sorts strings) and the same default Treatment coding, and its columns keep
    their names (`C(race)[T.black]`: patsy names a factor by its code, not its value)."""
    from patsy.builtins import C

    if contrast is None and levels is None and isinstance(getattr(data, "dtype", None), pd.CategoricalDtype):
        return data
    return C(data, contrast, levels)


def _formula_namespace() -> dict | None:
    """Names that shadow the formula engine's built-ins: categorical_or_c for patsy's C (the
    default engine); none for formulaic (SM_FORMULA_ENGINE), whose C is another function."""
    import statsmodels.formula

    return {"C": categorical_or_c} if statsmodels.formula.options.formula_engine == "patsy" else None


def _drop_constant_factors(formula: str, data: pd.DataFrame) -> str:
    """Remove C(x) terms whose column has fewer than 2 levels in `data` (patsy cannot contrast them)."""
    lhs, rhs = (s.strip() for s in formula.split("~"))
    kept = []
    for term in (t.strip() for t in rhs.split("+")):
        factors = [f.strip() for f in term.split("*")]
        factors = [f for f in factors if _levels(f, data) != 1]
        if factors:
            kept.append(" * ".join(factors))
    return f"{lhs} ~ {' + '.join(kept) if kept else '1'}"


def _levels(factor: str, data: pd.DataFrame) -> int | None:
    if not factor.startswith("C("):
        return None
    column = factor[2:].split(",")[0].rstrip(")").strip()
    return int(data[column].nunique()) if column in data else None


# ---------------------------------------------------------------------------------------------
# Correctness: population-averaged logistic model, clustered by identity
# ---------------------------------------------------------------------------------------------


def correctness_model(answers: pd.DataFrame, *, min_n: int = 10, formula: str = CORRECTNESS_FORMULA) -> pd.DataFrame:
    """GEE logistic regression of correctness per model x version x dataset x protocol.

    Uses answered images (answer_status == 'answered' and a predicted emotion); correct =
    predicted_emotion == true_emotion; clusters = identity. Two rows per term:
    measure='log_odds' (coefficient, robust-SE Wald CI, z, p) and measure='odds_ratio'
    (exp of coefficient and CI; same z and p). analysis='correctness_model',
    subset_kind='term', n = images at the term's level (all images for the intercept), so
    rare levels are flagged below_min_n; detail.separation marks a level whose outcome never
    varies. Such a level (separation, or fewer than `min_n` images) gets NO estimate, interval,
    statistic or p-value -- a separated level's Wald z runs off to p ~ 0 (a 2-image group read
    log-odds 27.8, p = 4.8e-157) -- and column `withheld` says why; the raw coefficient stays
    in detail.unreliable_coefficient. (Chosen over a Firth-penalised fit: statsmodels has no
    Firth GEE, and a level of a handful of images carries no evidence either way.)
    detail: se, cov_type ('robust'), working correlation and
    its parameter, n_clusters, converged, formula, warnings.
    """
    answered = answers[(answers["answer_status"] == "answered") & answers["predicted_emotion"].notna()]
    answered = answered.dropna(subset=["identity", "race", "gender", "true_emotion"]).copy()
    answered["correct"] = (answered["predicted_emotion"] == answered["true_emotion"]).astype(int)
    rows: list[dict] = []
    for unit_keys, data in answered.groupby(MODEL_KEYS, sort=True, dropna=False):
        model, version, dataset, protocol = ("" if pd.isna(k) else k for k in unit_keys)
        data = data.sort_values("identity").reset_index(drop=True)
        fitted_formula = _drop_constant_factors(formula, data)
        base = {"analysis": "correctness_model", "model": model, "model_version": version,
                "dataset": dataset, "protocol": protocol, "subset_kind": "term", "n": len(data)}
        info = {"formula": fitted_formula, "family": "Binomial(logit)", "cov_struct": "Exchangeable",
                "cov_type": "robust", "groups": "identity", "n_clusters": int(data["identity"].nunique())}
        if data["correct"].nunique() < 2:
            fit = Fit(None, [], "correctness does not vary (all right or all wrong)")
        else:
            fit = fit_gee(fitted_formula, data, "identity")
        info["warnings"] = fit.warnings
        if fit.result is None:
            rows.append({**result_row(**base, subset="(fit failed)", measure="log_odds",
                                      detail=json.dumps({**info, "converged": False, "error": fit.error})),
                         "term": "", "withheld": ""})
            continue
        res = fit.result
        with fit.recording():
            params, se, ci, z, p = res.params, res.bse, res.conf_int(), res.tvalues, res.pvalues
        info.update(converged=bool(res.converged), warnings=fit.warnings,
                    dependence=float(np.atleast_1d(res.model.cov_struct.dep_params)[0]))
        for term in params.index:
            coef, low, high = float(params[term]), float(ci.loc[term, 0]), float(ci.loc[term, 1])
            level = _term_level(term, data)
            # A level with few images, or whose outcome never varies (separation: the estimate
            # runs off to +-infinity), is flagged through n / below_min_n and the detail.
            term_n = int(level.sum()) if level is not None else len(data)
            separated = level is not None and data.loc[level, "correct"].nunique() < 2
            withheld = "; ".join(
                ([f"separation: every image at this level is {'right' if data.loc[level, 'correct'].all() else 'wrong'}"]
                 if separated else [])
                + ([f"{term_n} images at this level < min_cell_n {min_n}"] if level is not None and term_n < min_n else []))
            extra = {"unreliable_coefficient": coef} if withheld else {}
            detail = json.dumps({**info, "se": float(se[term]), "n_images_at_level": term_n, "separation": separated,
                                 **extra})
            stat, pval = (None, None) if withheld else (z[term], p[term])
            common = {**base, "n": term_n, "subset": term, "statistic": stat, "p_value": pval, "detail": detail}
            if withheld:
                coef = low = high = np.nan
            rows.append({**result_row(**common, measure="log_odds", estimate=coef, ci_low=low, ci_high=high),
                         "term": term, "withheld": withheld})
            rows.append({**result_row(**common, measure="odds_ratio", estimate=np.exp(coef),
                                      ci_low=np.exp(low), ci_high=np.exp(high)), "term": term, "withheld": withheld})
    return _with_extras(rows, min_n, CORRECTNESS_EXTRA_COLUMNS)


def _term_level(term: str, data: pd.DataFrame) -> pd.Series | None:
    """Rows at the level a treatment-coded term like `C(race)[T.black]` refers to (None for
    the intercept or terms of another shape)."""
    match = re.fullmatch(r"C\((\w+)\)\[T\.(.+)\]", term)
    if not match or match.group(1) not in data:
        return None
    return data[match.group(1)].astype(str) == match.group(2)


def _with_extras(rows: list[dict], min_n: int, extras: list[str]) -> pd.DataFrame:
    frame = result_frame([{k: r[k] for k in RESULT_COLUMNS} for r in rows], min_n)
    for col in extras:
        frame[col] = [r[col] for r in rows] if rows else pd.Series(dtype=object)
    return frame


__all__ = [
    "CORRECTNESS_FORMULA", "RATING_FORMULAS", "Fit", "correctness_model", "fit_gee", "fit_mixedlm",
    "rating_long_frame", "rating_mixed_models",
]
