"""Figures (PNG under <reports_dir>/) shown inline as asset metadata in the UI."""


import base64
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import pandas as pd

from dagster_project.analysis import figures
from dagster_project.defs.resources import WarehouseResource
from dagster_project.settings import benchmark_config

CONFUSION_COUNTS = dg.AssetKey(["marts", "confusion_counts"])
GROUP_ACCURACY = dg.AssetKey(["marts", "group_accuracy"])
SLICE = ["model", "model_version", "dataset", "protocol"]
MAX_INLINE = 8  # images embedded in the metadata markdown; the rest are listed as paths


def figure_result(paths: list[Path]) -> dg.MaterializeResult:
    blocks = []
    for path in paths[:MAX_INLINE]:
        data = base64.b64encode(path.read_bytes()).decode()
        blocks.append(f"**{path.name}**\n\n![{path.name}](data:image/png;base64,{data})")
    return dg.MaterializeResult(
        metadata={
            "n_figures": len(paths),
            "files": dg.MetadataValue.json([str(p) for p in paths]),
            "preview": dg.MetadataValue.md("\n\n".join(blocks) or "no data"),
        }
    )


def _per_slice(frame: pd.DataFrame, draw: Callable[[pd.DataFrame, str, Path], Path], stem: str) -> list[Path]:
    out_dir = benchmark_config().reports_dir
    paths = []
    for values, part in frame.groupby(SLICE, sort=True):
        model, version, dataset, protocol = values
        title = f"{model} {version}\n{dataset} ({protocol})"
        paths.append(draw(part, title, out_dir / f"{figures.slug(stem, model, version, dataset, protocol)}.png"))
    return paths


@dg.asset(
    key=["reports", "confusion_matrices"],
    deps=[CONFUSION_COUNTS],
    group_name="reports",
    kinds={"matplotlib"},
    description="Confusion matrix (true x predicted emotion, all faces) per model version and dataset.",
)
def confusion_matrices(duckdb: WarehouseResource) -> dg.MaterializeResult:
    with duckdb.get_connection() as con:
        counts = con.execute("select * from marts.confusion_counts where grouping = 'all'").df()
    return figure_result(_per_slice(counts, figures.confusion_matrix_png, "confusion"))


@dg.asset(
    key=["reports", "accuracy_heatmaps"],
    deps=[GROUP_ACCURACY],
    group_name="reports",
    kinds={"matplotlib"},
    description="Accuracy per race x gender group and true emotion, per model version and dataset.",
)
def accuracy_heatmaps(duckdb: WarehouseResource) -> dg.MaterializeResult:
    with duckdb.get_connection() as con:
        acc = con.execute(
            "select * from marts.group_accuracy where grouping in ('race', 'race_gender', 'all')"
        ).df()
    return figure_result(_per_slice(acc, figures.accuracy_heatmap_png, "accuracy_heatmap"))


@dg.asset(
    key=["reports", "error_rate_forest_plots"],
    deps=[GROUP_ACCURACY],
    group_name="reports",
    kinds={"matplotlib"},
    description="Forest plot of error rate per group with Wilson 95 % intervals (all emotions pooled).",
)
def error_rate_forest_plots(duckdb: WarehouseResource) -> dg.MaterializeResult:
    with duckdb.get_connection() as con:
        acc = con.execute("select * from marts.group_accuracy where true_emotion = 'all' and n > 0").df()
    return figure_result(_per_slice(acc, figures.forest_plot_png, "forest"))
