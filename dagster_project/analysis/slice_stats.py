"""Each per-slice statistic as a pure function of the slice's inputs and the statistics
settings (StatsInputs, StatisticsConfig) -> rows in the common result shape: what the stats.*
assets (defs/statistics.py) compute for each slice, here without Dagster so that a run of many
slices can compute them in worker processes (on_cores.map_on_cores), which import only this."""

from __future__ import annotations

import pandas as pd

from dagster_project.analysis import agreement, dimensional, mixed_models, reliability, response_style
from dagster_project.analysis.human_ceiling import human_ceiling, with_human_ceiling
from dagster_project.analysis.inputs import StatsInputs
from dagster_project.analysis.proportions import misclassification_tests, pairwise_error_ztests
from dagster_project.analysis.results import empty_result
from dagster_project.analysis.worst_subgroup import worst_subgroups
from inference.config import StatisticsConfig

NO_RATINGS = "no human ratings configured: table left empty (add `human_ratings:` to a dataset in benchmark.yaml)"


def compute_slice(job: tuple) -> tuple[pd.DataFrame, str]:
    """One slice's rows and note: job = (compute, inputs, cfg, needs_ratings)."""
    compute, inputs, cfg, needs_ratings = job
    if needs_ratings and not inputs.has_ratings:
        return empty_result(cfg.min_cell_n), NO_RATINGS
    return compute(inputs, cfg), "computed"


def misclassification_rows(inputs: StatsInputs, cfg: StatisticsConfig) -> pd.DataFrame:
    return misclassification_tests(
        inputs.misclassification_ratios, corrections=cfg.corrections, min_n=cfg.min_cell_n, alpha=cfg.alpha,
        family=cfg.family,
    )


def worst_subgroups_rows(inputs: StatsInputs, cfg: StatisticsConfig) -> pd.DataFrame:
    tests = pairwise_error_ztests(inputs.group_accuracy, groupings=cfg.groupings, correction=cfg.corrections[0],
                                  alpha=cfg.alpha, min_n=cfg.min_cell_n, family=cfg.family)
    return worst_subgroups(tests, alpha=cfg.alpha, min_n=cfg.min_cell_n)


def categorical_rows(inputs: StatsInputs, cfg: StatisticsConfig) -> pd.DataFrame:
    return agreement.categorical_agreement(
        inputs.grouped, inputs.group_accuracy, min_n=cfg.min_cell_n, bootstrap_resamples=cfg.bootstrap_resamples
    )


def reliability_rows(inputs: StatsInputs, cfg: StatisticsConfig) -> pd.DataFrame:
    return reliability.rater_reliability(
        inputs.ratings, inputs.model_values, min_n=cfg.min_cell_n, bootstrap_resamples=cfg.bootstrap_resamples
    )


def dimensional_rows(inputs: StatsInputs, cfg: StatisticsConfig) -> pd.DataFrame:
    agreement_rows = dimensional.dimensional_agreement(inputs.model_values, inputs.ratings, min_n=cfg.min_cell_n)
    # The human ceiling beside every model row (its bootstrap interval is in
    # stats.human_rater_reliability; a point estimate per slice keeps slices cheap).
    return with_human_ceiling(agreement_rows, human_ceiling(inputs.ratings, min_n=cfg.min_cell_n,
                                                            bootstrap_resamples=0))


def wilcoxon_rows(inputs: StatsInputs, cfg: StatisticsConfig) -> pd.DataFrame:
    return dimensional.wilcoxon_by_emotion(inputs.model_values, inputs.ratings, min_n=cfg.min_cell_n)


def mixed_rows(inputs: StatsInputs, cfg: StatisticsConfig) -> pd.DataFrame:
    # One human-vs-model fit per model version (as Tae et al.): the slice's version alone, so
    # the fit does not depend on which other versions are in the warehouse.
    parts = [mixed_models.correctness_model(inputs.answers, min_n=cfg.min_cell_n)]
    if inputs.has_ratings and not inputs.model_values.empty:
        fits = [
            mixed_models.rating_mixed_models(inputs.ratings, values, min_n=cfg.min_cell_n, per_model=True,
                                             correction=cfg.corrections[0])
            for _, values in inputs.model_values.groupby("protocol", sort=True)
        ]
        parts[:0] = [fit for fit in fits if len(fit)]
    nonempty = [part for part in parts if len(part)]
    return pd.concat(nonempty, ignore_index=True) if nonempty else parts[-1]


def response_style_rows(inputs: StatsInputs, cfg: StatisticsConfig) -> pd.DataFrame:
    return response_style.response_style(inputs.model_values, inputs.ratings, inputs.answers, min_n=cfg.min_cell_n)
