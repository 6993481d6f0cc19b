"""Figures of the statistics layer (PNG under <reports_dir>/, shown inline as metadata).

Bland-Altman plots and disparity forest plots draw one slice (partitioned like it); the
per-emotion bias bars and the strength-inversion plot compare every model on a dataset, so
they are unpartitioned and redrawn from the stats tables.
"""

import functools

import dagster as dg
import pandas as pd

from dagster_project.analysis import stat_figures
from dagster_project.analysis.drawing import draw_all
from dagster_project.analysis.dimensional import image_level_pairs
from dagster_project.analysis.figures import slug
from dagster_project.analysis.inputs import load_inputs, ordered_sql
from dagster_project.analysis.response_style import per_emotion_means
from dagster_project.defs.conditions import ACROSS_SLICES, AFTER_STATISTICS, SLICE_RESULTS
from dagster_project.defs.figures import draw_per_protocol, figure_result, read_slices
from dagster_project.defs.partitions import SINGLE_RUN, model_dataset_partitions, slice_frame, slices_of
from dagster_project.defs.resources import WarehouseResource
from dagster_project.defs.statistics import SLICE_STATS_DEPS
from dagster_project.settings import benchmark_config

SLICE = ["model", "model_version", "dataset", "protocol"]
NEEDS_RATINGS = "no figure: this needs human ratings and numeric (valence / arousal) model answers on the dataset"


def _out(*parts: str):
    return benchmark_config().reports_dir / f"{slug(*parts)}.png"


def _pairs(duckdb: WarehouseResource, model_slices: pd.DataFrame | None = None,
           datasets: list[str] | None = None) -> pd.DataFrame:
    with duckdb.get_connection() as con:
        if model_slices is None:  # every slice: only the two frames the pairs need, not every answer
            ratings, values = con.execute(ordered_sql("ratings")).df(), con.execute(ordered_sql("model_values")).df()
        else:
            inputs = load_inputs(con, model_slices, datasets, only=("ratings", "model_values"))
            ratings, values = inputs.ratings, inputs.model_values
    if ratings.empty or values.empty:
        return pd.DataFrame()
    return image_level_pairs(values, ratings)


@dg.asset(key=["reports", "bland_altman_plots"], deps=SLICE_STATS_DEPS, partitions_def=model_dataset_partitions,
          backfill_policy=SINGLE_RUN, group_name="reports", kinds={"matplotlib"}, automation_condition=SLICE_RESULTS,
          op_tags=AFTER_STATISTICS,
          description="Bland-Altman plot (model vs mean human rating) per model version, dataset and dimension.")
def bland_altman_plots(context: dg.AssetExecutionContext, duckdb: WarehouseResource) -> dg.MaterializeResult:
    slice_keys = slices_of(context.partition_keys, benchmark_config())
    pairs = _pairs(duckdb, slice_frame(*slice_keys), sorted({key.dataset for key in slice_keys}))
    jobs = [
        (stat_figures.bland_altman_png, part, f"{model} {version} — {dataset} ({protocol})\n{dimension}: model − mean human",
         _out("bland_altman", model, version, dataset, dimension))
        for (model, version, dataset, protocol, dimension), part in (
            pairs.groupby([*SLICE, "dimension"], sort=True) if len(pairs) else [])
    ]
    return figure_result(draw_all(jobs), NEEDS_RATINGS)


@dg.asset(key=["reports", "disparity_forest_plots"], deps=[dg.AssetKey(["stats", "misclassification_tests"])],
          partitions_def=model_dataset_partitions, backfill_policy=SINGLE_RUN, group_name="reports",
          kinds={"matplotlib"}, automation_condition=SLICE_RESULTS, op_tags=AFTER_STATISTICS,
          description="Forest plot of error-rate ratios between groups (all emotions pooled) with Katz CIs; "
                      "filled markers are significant after the configured correction.")
def disparity_forest_plots(context: dg.AssetExecutionContext, duckdb: WarehouseResource) -> dg.MaterializeResult:
    frame = read_slices(
        duckdb,
        "select * from stats.misclassification_tests where true_emotion = 'all' and predicted_emotion = 'error'",
        slices_of(context.partition_keys, benchmark_config()),
    )
    draw = functools.partial(stat_figures.ratio_forest_png, alpha=benchmark_config().statistics.alpha)
    paths = draw_per_protocol(frame, draw, "disparity_forest", "error-rate ratio between groups")
    return figure_result(paths, "no figure: no pair of groups with an estimable error-rate ratio")


@dg.asset(key=["reports", "dimensional_bias_bars"], deps=[dg.AssetKey(["stats", "dimensional_agreement"])],
          group_name="reports", kinds={"matplotlib"}, automation_condition=ACROSS_SLICES, op_tags=AFTER_STATISTICS,
          description="Per-emotion Bland-Altman bias with 95 % CI for every model, per dataset.")
def dimensional_bias_bars(duckdb: WarehouseResource) -> dg.MaterializeResult:
    with duckdb.get_connection() as con:
        frame = con.execute("select * from stats.dimensional_agreement").df()
    paths = [
        stat_figures.bias_bars_png(part, f"{dataset}: model − mean human, per emotion", _out("bias_bars", dataset))
        for dataset, part in (frame.groupby("dataset", sort=True) if len(frame) else [])
    ]
    return figure_result(paths, NEEDS_RATINGS)


@dg.asset(key=["reports", "strength_arousal_order"], deps=[dg.AssetKey(["stats", "response_style"])],
          group_name="reports", kinds={"matplotlib"}, automation_condition=ACROSS_SLICES, op_tags=AFTER_STATISTICS,
          description="Per-emotion valence strength (|valence - 5|) vs arousal, humans and each model: whether a "
                      "model orders emotions by strength as humans do (not Tae et al.'s strength inversion, which "
                      "is in stats.strength_inversion).")
def strength_arousal_order(duckdb: WarehouseResource) -> dg.MaterializeResult:
    pairs = _pairs(duckdb)
    paths = []
    if len(pairs):
        means = per_emotion_means(pairs)
        for dataset, part in means.groupby("dataset", sort=True):
            paths.append(stat_figures.strength_arousal_order_png(part, f"{dataset}: strength vs arousal", _out("strength", dataset)))
    return figure_result(paths, NEEDS_RATINGS)

SLICE_FIGURES = [bland_altman_plots, disparity_forest_plots]
CROSS_SLICE_FIGURES = [dimensional_bias_bars, strength_arousal_order]
