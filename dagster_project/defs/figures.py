"""Figures (PNG under <reports_dir>/) shown inline as asset metadata in the UI."""


import base64
import hashlib
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


Draw = Callable[[pd.DataFrame, str, Path], Path]


def draw_if_changed(draw: Draw, part: pd.DataFrame, title: str, path: Path, settings: str = "") -> Path:
    """Draw `part` to `path` unless the figure there was drawn from the same data and title
    (a digest beside it under .digests/): a new model version redraws only its own figures."""
    digest = hashlib.sha256(
        pd.util.hash_pandas_object(part.reset_index(drop=True), index=True).to_numpy().tobytes()
        + f"|{title}|{list(part.columns)}|{settings}".encode()
    ).hexdigest()
    stamp = path.parent / ".digests" / f"{path.name}.sha256"
    if path.is_file() and stamp.is_file() and stamp.read_text() == digest:
        return path
    drawn = draw(part, title, path)
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(digest)
    return drawn


def _per_slice(frame: pd.DataFrame, draw: Draw, stem: str) -> list[Path]:
    out_dir = benchmark_config().reports_dir
    paths = []
    for values, part in frame.groupby(SLICE, sort=True):
        model, version, dataset, protocol = values
        title = f"{model} {version}\n{dataset} ({protocol})"
        path = out_dir / f"{figures.slug(stem, model, version, dataset, protocol)}.png"
        paths.append(draw_if_changed(draw, part, title, path))
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
