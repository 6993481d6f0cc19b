"""Simple effects and marginal means from a fitted statsmodels MixedLM (emmeans-style).

Why: a treatment-coded interaction model `value ~ rater_type * true_emotion` has one
coefficient `rater_type[T.vlm]` for the reference emotion (anger) and *differences from it*
for the others (`rater_type[T.vlm]:true_emotion[T.happy]`). Reading those coefficients as "VLM
minus human for happy faces" is wrong: the happy effect is the sum of both, with its own
standard error from the covariance of the two estimates. Tae et al.'s Table 6 prints such
interaction p-values beside per-emotion mean differences (happy arousal: bias +0.30 beside
beta +0.059, p = .442). Here every per-level effect is a contrast L.beta on the fitted fixed
effects, tested with the model's covariance (statsmodels `t_test`): what emmeans computes
with `emmeans(fit, pairwise ~ rater_type | true_emotion, lmer.df = "asymptotic")`.

Method (as emmeans' reference grid):
* the grid is every combination of the levels of the model's factors seen in the data;
* a marginal mean of a level is the average of the grid's predictions over the other
  factors' levels, each level weighted equally (emmeans' default 'equal' weights);
* the contrast vector of a simple effect is the difference of two such averages; its
  estimate, SE, Wald z, two-sided p and 95 % CI come from statsmodels' `t_test` with the
  covariance of the fixed effects *given* the variance parameters, (X' V^-1 X)^-1 -- the inverse
  of the fixed-effect block of statsmodels' own Hessian (`MixedLM.hessian`), which is lme4's
  `vcov()`. statsmodels' default `cov_params()` inverts the whole Hessian (fixed effects and
  variance parameters together); in unbalanced data that inflates the SEs slightly (Oats:
  7.30 where lme4/emmeans print 7.28). Normal reference distribution, as emmeans
  `lmer.df = "asymptotic"`; lmerTest's Satterthwaite t uses the same SE with fewer df.

Checked against the published emmeans vignette output for lme4's Oats fit
(tests/test_lmm_contrasts.py).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from dagster_project.analysis.results import detail_json, result_row
from dagster_project.analysis.subset_kinds import kind_of_column

CI_LEVEL = 0.95
DF_METHOD = "asymptotic (Wald z on the REML covariance of the fixed effects; emmeans lmer.df='asymptotic')"


@dataclass(frozen=True)
class Contrast:
    """One linear combination of the fixed effects: weights per fixed-effect name."""

    label: str
    weights: pd.Series  # index = fixed-effect names, in the fit's order


def reference_grid(data: pd.DataFrame, factors: list[str]) -> pd.DataFrame:
    """Every combination of the observed levels of `factors` (sorted), one row each."""
    levels = [sorted(data[f].dropna().unique().tolist()) for f in factors]
    return pd.DataFrame(list(itertools.product(*levels)), columns=factors)


def design_rows(result, grid: pd.DataFrame) -> pd.DataFrame:
    """Fixed-effects design rows of `grid` under the fitted formula (what `predict` builds)."""
    from statsmodels.formula._manager import FormulaManager
    spec = getattr(result.model, "model_spec", None) or result.model.data.model_spec
    rows = FormulaManager().get_matrices(spec, grid, pandas=True, prediction=True)
    return pd.DataFrame(np.asarray(rows, float), columns=list(result.fe_params.index), index=grid.index)


def marginal_weights(result, grid: pd.DataFrame, where: dict[str, object]) -> pd.Series:
    """Contrast weights of the marginal mean of the grid rows matching `where` (equal weights
    over the levels of every other factor)."""
    mask = np.ones(len(grid), bool)
    for column, value in where.items():
        mask &= (grid[column] == value).to_numpy()
    if not mask.any():
        raise ValueError(f"no reference-grid row has {where}; levels: "
                         f"{ {c: sorted(grid[c].unique().tolist()) for c in where} }")
    return design_rows(result, grid[mask]).mean(axis=0)


def simple_effect_contrasts(result, data: pd.DataFrame, factor: str, level, reference, by: str,
                            factors: list[str]) -> list[tuple[object, Contrast]]:
    """For each level b of `by`: marginal mean at (factor=level, by=b) minus (factor=reference, by=b),
    averaged equally over the other `factors` (emmeans `pairwise ~ factor | by`)."""
    grid = reference_grid(data, factors)
    out = []
    for b in sorted(data[by].dropna().unique().tolist()):
        weights = (marginal_weights(result, grid, {factor: level, by: b})
                   - marginal_weights(result, grid, {factor: reference, by: b}))
        out.append((b, Contrast(f"{factor}: {level} - {reference} | {by} = {b}", weights)))
    return out


def fixed_effects_cov(result) -> np.ndarray:
    """Covariance of the fixed effects given the variance parameters (lme4's `vcov`): the
    inverse of the fixed-effect block of statsmodels' Hessian at the fit."""
    hessian, _ = result.model.hessian(result.params_object)
    k = result.k_fe
    return np.linalg.inv(-hessian[:k, :k])


def wald_contrasts(result, contrasts: list[Contrast]) -> pd.DataFrame:
    """estimate, se, statistic (z), p_value, ci_low, ci_high per contrast (statsmodels
    `t_test`, normal reference, with `fixed_effects_cov`)."""
    from statsmodels.base.model import LikelihoodModelResults
    columns = ["label", "estimate", "se", "statistic", "p_value", "ci_low", "ci_high"]
    if not contrasts:
        return pd.DataFrame(columns=columns)
    names = list(result.fe_params.index)
    matrix = np.vstack([c.weights.reindex(names).fillna(0.0).to_numpy(float) for c in contrasts])
    cov = np.zeros((len(result.params), len(result.params)))
    cov[: result.k_fe, : result.k_fe] = fixed_effects_cov(result)
    padded = np.hstack([matrix, np.zeros((len(contrasts), len(result.params) - result.k_fe))])
    # The base-class t_test (MixedLMResults.t_test cannot take a covariance): the variance
    # parameters get zero weight, so only the fixed-effect block enters.
    test = LikelihoodModelResults.t_test(getattr(result, "_results", result), padded, cov_p=cov, use_t=False)
    ci = np.asarray(test.conf_int(alpha=1 - CI_LEVEL))
    return pd.DataFrame({
        "label": [c.label for c in contrasts],
        "estimate": np.ravel(test.effect), "se": np.ravel(test.sd), "statistic": np.ravel(test.tvalue),
        "p_value": np.ravel(test.pvalue), "ci_low": ci[:, 0], "ci_high": ci[:, 1],
    })


def factor_columns(formula: str, data: pd.DataFrame) -> list[str]:
    """The data columns entering `formula` as C(column, ...) factors, in order of appearance."""
    found = re.findall(r"C\((\w+)", formula.split("~", 1)[-1])
    return [c for c in dict.fromkeys(found) if c in data]


def rater_simple_effects(result, data: pd.DataFrame, formula: str, rater: str, reference: str,
                         by: str) -> pd.DataFrame:
    """Per level of `by`: rater_type `rater` minus `reference` from the fit (Wald z, 95 % CI),
    with the raw mean difference, ratings and images at that level beside it."""
    factors = factor_columns(formula, data)
    if by not in factors or "rater_type" not in factors:
        return pd.DataFrame()
    pairs = simple_effect_contrasts(result, data, "rater_type", rater, reference, by, factors)
    tests = wald_contrasts(result, [c for _, c in pairs])
    tests.insert(0, "level", [level for level, _ in pairs])
    tests["weights"] = [{k: float(v) for k, v in c.weights.items() if abs(v) > 1e-12} for _, c in pairs]
    means = data.groupby([by, "rater_type"])["value"].mean().unstack()
    tests["raw_mean_difference"] = [means.loc[lv, rater] - means.loc[lv, reference] for lv in tests["level"]]
    in_fit = data[data["rater_type"].isin([rater, reference])]
    tests["n"] = [int((in_fit[by] == lv).sum()) for lv in tests["level"]]
    tests["n_images"] = [int(in_fit.loc[in_fit[by] == lv, "image_id"].nunique()) for lv in tests["level"]]
    return tests


def simple_effect_rows(fit, dataset, dimension, name, formula, data, keys, raters, per_model,
                       by_factors: tuple[str, ...], human: str = "human") -> list[dict]:
    """stats.mixed_models rows (analysis 'mixed_model_simple_effect'): per model (`raters`, keyed
    to (model, version, protocol) by `keys`) x by-factor level, the model-minus-`human` simple
    effect from `fit` (mixed_models.Fit: result, warnings, optimizer, recording())."""
    if fit.result is None:
        return []
    fitted = {"method": "REML", "optimizer": fit.optimizer, "n_groups": int(data["image_id"].nunique()),
              **({"raters": [human, *raters]} if per_model else {})}
    rows = []
    for rater in raters:
        model, version, protocol = keys[rater]
        for by in by_factors:
            with fit.recording():
                effects = rater_simple_effects(fit.result, data, formula, rater, human, by)
            family = "/".join(str(v) for v in (dataset, model, version, protocol, dimension, name, by))
            for e in effects.itertuples():
                detail = {**fitted, "se": float(e.se), "raw_mean_difference": float(e.raw_mean_difference),
                          "n_images": e.n_images, "weights": e.weights, "df_method": DF_METHOD,
                          "formula": formula + " + (1 | image_id)", "converged": bool(fit.result.converged),
                          "contrast": f"{rater} - {human} | {by} = {e.level}", "warnings": fit.warnings}
                rows.append({
                    **result_row(analysis="mixed_model_simple_effect", model=model, model_version=version,
                                 dataset=dataset, protocol=protocol, subset_kind=kind_of_column(by), subset=str(e.level),
                                 measure=name, n=e.n, estimate=e.estimate, ci_low=e.ci_low, ci_high=e.ci_high,
                                 statistic=e.statistic, p_value=e.p_value, family=family,
                                 detail=detail_json(detail)),
                    "dimension": dimension, "rater_type": rater, "term": e.label,
                })
    return rows


__all__ = ["CI_LEVEL", "DF_METHOD", "Contrast", "design_rows", "factor_columns", "fixed_effects_cov",
           "rater_simple_effects", "simple_effect_rows", "marginal_weights", "reference_grid",
           "simple_effect_contrasts", "wald_contrasts"]
