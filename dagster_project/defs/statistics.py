"""The statistics layer: one stats.* table per analysis of the seed papers.

Each asset reads the same inputs (final answers, human ratings, numeric model answers) from
the dbt models, computes with library code (see dagster_project/analysis/) and replaces its
table. Tables that need human ratings stay empty, and say so, when none are configured.
"""

import contextlib
import gc
from collections.abc import Callable, Iterator

import dagster as dg
import pandas as pd

from dagster_project.analysis.inputs import StatsInputs, load_inputs
from dagster_project.analysis import agreement, dimensional, mixed_models, reliability, response_style
from dagster_project.analysis.proportions import misclassification_tests, pairwise_error_ztests
from dagster_project.analysis.results import empty_result
from dagster_project.defs.resources import WarehouseResource
from dagster_project.settings import benchmark_config
from inference.config import StatisticsConfig

INPUT_MODELS = [
    dg.AssetKey(["intermediate", name])
    for name in ("int_final_answers", "int_images_labeled", "int_human_ratings_labeled", "int_model_dimensional_answers")
]
GROUP_ACCURACY = dg.AssetKey(["marts", "group_accuracy"])
NO_RATINGS = "no human ratings configured: table left empty (add `human_ratings:` to a dataset in benchmark.yaml)"

Compute = Callable[[StatsInputs, StatisticsConfig], pd.DataFrame]


@contextlib.contextmanager
def quick_gc() -> Iterator[None]:
    """statsmodels' Holm adjustment calls gc.collect() for every family; in a Dagster process
    with a large heap that costs ~45 ms each. Freezing the existing heap first makes those
    collections scan only what the statistics allocate."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def write_stats_table(con, name: str, frame: pd.DataFrame) -> None:
    con.execute("create schema if not exists stats")
    con.register("_frame", frame)
    con.execute(f"create or replace table stats.{name} as select * from _frame")
    con.unregister("_frame")


def _summary(frame: pd.DataFrame) -> dict:
    meta: dict = {"dagster/row_count": len(frame)}
    if "p_adjusted" in frame and len(frame):
        meta["n_significant_adjusted"] = int((frame["p_adjusted"] < benchmark_config().statistics.alpha).sum())
    if "below_min_n" in frame and len(frame):
        meta["n_below_min_n"] = int(frame["below_min_n"].sum())
    if "measure" in frame and len(frame):
        meta["measures"] = dg.MetadataValue.json(frame["measure"].value_counts().to_dict())
    return meta


def stats_asset(name: str, description: str, compute: Compute, *, needs_ratings: bool = False) -> dg.AssetsDefinition:
    @dg.asset(
        key=["stats", name],
        deps=INPUT_MODELS,
        group_name="stats",
        kinds={"duckdb", "python"},
        description=description,
    )
    def _asset(context: dg.AssetExecutionContext, duckdb: WarehouseResource) -> dg.MaterializeResult:
        cfg = benchmark_config().statistics
        with duckdb.get_connection() as con:
            inputs = load_inputs(con)
        if needs_ratings and not inputs.has_ratings:
            frame, note = empty_result(cfg.min_cell_n), NO_RATINGS
        else:
            with quick_gc():
                frame = compute(inputs, cfg)
            note = "computed"
        with duckdb.get_connection() as con:
            write_stats_table(con, name, frame)
        context.log.info(f"stats.{name}: {len(frame)} rows ({note})")
        return dg.MaterializeResult(metadata={"note": note, **_summary(frame)})

    return _asset


@dg.asset(
    key=["stats", "error_rate_ztests"],
    deps=[GROUP_ACCURACY],
    group_name="stats",
    kinds={"duckdb", "statsmodels"},
    description=(
        "Two-proportion z-tests of error rate between every pair of race / gender / race x gender "
        "groups, per model version, dataset, protocol and true emotion ('all' = pooled); "
        "Holm-adjusted within each family, family recorded next to each p-value."
    ),
)
def error_rate_ztests(context: dg.AssetExecutionContext, duckdb: WarehouseResource) -> dg.MaterializeResult:
    cfg = benchmark_config().statistics
    with duckdb.get_connection() as con:
        accuracy = con.execute("select * from marts.group_accuracy").df()
    with quick_gc():
        tests = pairwise_error_ztests(
            accuracy, groupings=cfg.groupings, correction=cfg.corrections[0], alpha=cfg.alpha, min_n=cfg.min_cell_n
        )
    with duckdb.get_connection() as con:
        write_stats_table(con, "error_rate_ztests", tests)
    significant = tests[tests["significant"].fillna(False) & ~tests["below_min_n"]]
    preview = significant.sort_values("p_adjusted").head(15)[
        ["model", "dataset", "grouping", "true_emotion", "group_a", "group_b", "error_rate_a", "error_rate_b", "p_adjusted"]
    ]
    context.log.info(f"{len(tests)} pairwise tests, {len(significant)} significant after Holm")
    return dg.MaterializeResult(
        metadata={
            "n_tests": len(tests),
            "n_families": int(tests["family"].nunique()) if len(tests) else 0,
            "n_significant": len(significant),
            "significant_pairs": dg.MetadataValue.md(preview.to_markdown(index=False) if len(preview) else "none"),
            "dagster/row_count": len(tests),
        }
    )


def _misclassification(inputs: StatsInputs, cfg: StatisticsConfig) -> pd.DataFrame:
    return misclassification_tests(
        inputs.answers, groupings=cfg.groupings, corrections=cfg.corrections, min_n=cfg.min_cell_n, alpha=cfg.alpha
    )


def _categorical(inputs: StatsInputs, cfg: StatisticsConfig) -> pd.DataFrame:
    return agreement.categorical_agreement(
        inputs.answers, groupings=cfg.groupings, min_n=cfg.min_cell_n, bootstrap_resamples=cfg.bootstrap_resamples
    )


def _mcnemar(inputs: StatsInputs, cfg: StatisticsConfig) -> pd.DataFrame:
    return agreement.mcnemar_between_models(inputs.answers, correction=cfg.corrections[0], min_n=cfg.min_cell_n)


def _reliability(inputs: StatsInputs, cfg: StatisticsConfig) -> pd.DataFrame:
    return reliability.rater_reliability(
        inputs.ratings, inputs.model_values, min_n=cfg.min_cell_n, bootstrap_resamples=cfg.bootstrap_resamples
    )


def _dimensional(inputs: StatsInputs, cfg: StatisticsConfig) -> pd.DataFrame:
    return dimensional.dimensional_agreement(inputs.model_values, inputs.ratings, min_n=cfg.min_cell_n)


def _wilcoxon(inputs: StatsInputs, cfg: StatisticsConfig) -> pd.DataFrame:
    return dimensional.wilcoxon_by_emotion(inputs.model_values, inputs.ratings, min_n=cfg.min_cell_n)


def _mixed(inputs: StatsInputs, cfg: StatisticsConfig) -> pd.DataFrame:
    parts = [mixed_models.correctness_model(inputs.answers, min_n=cfg.min_cell_n)]
    if inputs.has_ratings and not inputs.model_values.empty:
        parts.insert(0, mixed_models.rating_mixed_models(inputs.ratings, inputs.model_values, min_n=cfg.min_cell_n))
    return pd.concat([p for p in parts if len(p)], ignore_index=True) if any(len(p) for p in parts) else parts[-1]


def _response_style(inputs: StatsInputs, cfg: StatisticsConfig) -> pd.DataFrame:
    return response_style.response_style(inputs.model_values, inputs.ratings, inputs.answers, min_n=cfg.min_cell_n)


misclassification = stats_asset(
    "misclassification_tests",
    "Rate ratio (Katz log CI) and two-proportion z-test of every misclassification (and any error) between "
    "every pair of race / gender / race x gender groups, per true emotion and pooled; Holm within family, "
    "Benjamini-Hochberg alongside.",
    _misclassification,
)
categorical_agreement = stats_asset(
    "categorical_agreement",
    "Accuracy (Wilson CI), macro F1 (bootstrap CI) and Cohen's kappa (asymptotic CI) per model version x dataset, "
    "overall and per group.",
    _categorical,
)
mcnemar_tests = stats_asset(
    "mcnemar_tests",
    "McNemar test between every pair of model versions on the images both answered; Holm within dataset/protocol.",
    _mcnemar,
)
rater_reliability = stats_asset(
    "rater_reliability",
    "Krippendorff's alpha (nominal / ordinal / interval) among human raters, with each model added as a rater, and "
    "per demographic group of the faces; ICC(A,1)/ICC(A,k) where raters are fully crossed.",
    _reliability,
    needs_ratings=True,
)
dimensional_agreement = stats_asset(
    "dimensional_agreement",
    "Pearson r, MAE, RMSE, Bland-Altman bias and 95 % limits of agreement of model valence/arousal vs the mean "
    "human rating, overall and per emotion.",
    _dimensional,
    needs_ratings=True,
)
wilcoxon_tests = stats_asset(
    "wilcoxon_tests",
    "Wilcoxon signed-rank test of model vs mean human rating per emotion and dimension, Bonferroni within family.",
    _wilcoxon,
    needs_ratings=True,
)
mixed_model_fits = stats_asset(
    "mixed_models",
    "MixedLM `rating ~ rater_type * emotion + (1|image_id)` and demographic versions (REML, one row per coefficient, "
    "convergence recorded), and a GEE (binomial, exchangeable, clustered by identity) of correctness on race, "
    "gender and emotion.",
    _mixed,
)
response_style_summary = stats_asset(
    "response_style",
    "Stereotyped responding (unique values, SD per emotion), polarity exaggeration (SD ratio to humans), "
    "per-emotion affine calibration (cross-validated MAE before/after), neutral absorption, strength inversion.",
    _response_style,
)
