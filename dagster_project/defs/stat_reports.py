"""Figures of the statistics layer (PNG under <reports_dir>/, shown inline as metadata)."""

import functools

import dagster as dg
import pandas as pd

from dagster_project.analysis import stat_figures
from dagster_project.analysis.dimensional import image_level_pairs
from dagster_project.analysis.figures import slug
from dagster_project.analysis.inputs import load_inputs
from dagster_project.analysis.response_style import per_emotion_means
from dagster_project.defs.figures import draw_if_changed, figure_result
from dagster_project.defs.resources import WarehouseResource
from dagster_project.defs.statistics import INPUT_MODELS
from dagster_project.settings import benchmark_config

SLICE = ["model", "model_version", "dataset", "protocol"]


def _out(*parts: str):
    return benchmark_config().reports_dir / f"{slug(*parts)}.png"


def _pairs(duckdb: WarehouseResource) -> pd.DataFrame:
    with duckdb.get_connection() as con:
        inputs = load_inputs(con)
    if not inputs.has_ratings or inputs.model_values.empty:
        return pd.DataFrame()
    return image_level_pairs(inputs.model_values, inputs.ratings)


@dg.asset(key=["reports", "bland_altman_plots"], deps=INPUT_MODELS, group_name="reports", kinds={"matplotlib"},
          description="Bland-Altman plot (model vs mean human rating) per model version, dataset and dimension.")
def bland_altman_plots(duckdb: WarehouseResource) -> dg.MaterializeResult:
    pairs = _pairs(duckdb)
    paths = []
    for (model, version, dataset, protocol, dimension), part in (
        pairs.groupby([*SLICE, "dimension"], sort=True) if len(pairs) else []
    ):
        title = f"{model} {version} — {dataset} ({protocol})\n{dimension}: model − mean human"
        paths.append(draw_if_changed(stat_figures.bland_altman_png, part, title,
                                     _out("bland_altman", model, version, dataset, dimension)))
    return figure_result(paths)


@dg.asset(key=["reports", "dimensional_bias_bars"], deps=[dg.AssetKey(["stats", "dimensional_agreement"])],
          group_name="reports", kinds={"matplotlib"},
          description="Per-emotion Bland-Altman bias with 95 % CI for every model, per dataset.")
def dimensional_bias_bars(duckdb: WarehouseResource) -> dg.MaterializeResult:
    with duckdb.get_connection() as con:
        frame = con.execute("select * from stats.dimensional_agreement").df()
    paths = [
        stat_figures.bias_bars_png(part, f"{dataset}: model − mean human, per emotion", _out("bias_bars", dataset))
        for dataset, part in (frame.groupby("dataset", sort=True) if len(frame) else [])
    ]
    return figure_result(paths)


@dg.asset(key=["reports", "strength_inversion"], deps=INPUT_MODELS, group_name="reports", kinds={"matplotlib"},
          description="Per-emotion valence strength vs arousal, humans and each model (Tae et al.'s strength inversion).")
def strength_inversion(duckdb: WarehouseResource) -> dg.MaterializeResult:
    pairs = _pairs(duckdb)
    paths = []
    if len(pairs):
        means = per_emotion_means(pairs)
        for dataset, part in means.groupby("dataset", sort=True):
            paths.append(stat_figures.strength_arousal_order_png(part, f"{dataset}: strength vs arousal", _out("strength", dataset)))
    return figure_result(paths)


@dg.asset(key=["reports", "disparity_forest_plots"], deps=[dg.AssetKey(["stats", "misclassification_tests"])],
          group_name="reports", kinds={"matplotlib"},
          description="Forest plot of error-rate ratios between groups (all emotions pooled) with Katz CIs; "
                      "filled markers are significant after the configured correction.")
def disparity_forest_plots(duckdb: WarehouseResource) -> dg.MaterializeResult:
    with duckdb.get_connection() as con:
        frame = con.execute(
            "select * from stats.misclassification_tests where true_emotion = 'all' and predicted_emotion = 'error'"
        ).df()
    paths = []
    alpha = benchmark_config().statistics.alpha
    draw = functools.partial(stat_figures.ratio_forest_png, alpha=alpha)
    for (model, version, dataset, protocol), part in (frame.groupby(SLICE, sort=True) if len(frame) else []):
        title = f"{model} {version} — {dataset} ({protocol})\nerror-rate ratio between groups"
        paths.append(draw_if_changed(draw, part, title, _out("disparity_forest", model, version, dataset, protocol),
                                     settings=f"alpha={alpha}"))
    return figure_result(paths)
