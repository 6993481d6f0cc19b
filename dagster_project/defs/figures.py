"""Figures (PNG under <reports_dir>/) shown inline as asset metadata in the UI.

Each figure asset is partitioned like the slice it draws (model version x dataset) and
redraws only the files of its run's slices (one, or a backfill's range); figures that compare models on a dataset are unpartitioned
(dagster_project/defs/stat_reports.py).
"""

import base64
import functools
from collections.abc import Sequence
from pathlib import Path

import dagster as dg
import pandas as pd

from dagster_project.analysis import figures
from dagster_project.analysis.drawing import Draw, DrawJob, draw_all
from dagster_project.analysis.inputs import select_in_slices
from dagster_project.defs.conditions import AFTER_STATISTICS, SLICE_RESULTS
from dagster_project.defs.dbt_assets import SLICE_INPUTS
from dagster_project.defs.partitions import SINGLE_RUN, SliceKey, model_dataset_partitions, slice_frame, slices_of
from dagster_project.defs.resources import WarehouseResource
from dagster_project.settings import benchmark_config

CONFUSION_COUNTS = dg.AssetKey(["marts", "confusion_counts"])
GROUP_ACCURACY = dg.AssetKey(["marts", "group_accuracy"])
SLICE = ["model", "model_version", "dataset", "protocol"]
MAX_INLINE = 8  # images embedded in the metadata markdown; the rest are listed as paths


NO_ROWS = "no figure: the slice has no rows to draw (no answered images for this model version and dataset)"


def figure_result(paths: list[Path], empty_reason: str = NO_ROWS) -> dg.MaterializeResult:
    """Figures as metadata: the first one inline (`figure`, the entry the UI lists first), all
    of them in `preview`, their paths; when there is none, `note` says why in plain text."""
    blocks = []
    for path in paths[:MAX_INLINE]:
        data = base64.b64encode(path.read_bytes()).decode()
        blocks.append(f"**{path.name}**\n\n![{path.name}](data:image/png;base64,{data})")
    shown: dict = {"figure": dg.MetadataValue.md(blocks[0]), "first_file": dg.MetadataValue.path(str(paths[0]))} \
        if blocks else {"note": empty_reason}
    return dg.MaterializeResult(
        metadata={
            **shown,
            "n_figures": len(paths),
            "files": dg.MetadataValue.json([str(p) for p in paths]),
            "preview": dg.MetadataValue.md("\n\n".join(blocks) or empty_reason),
        }
    )



def read_slices(duckdb: WarehouseResource, sql: str, slice_keys: Sequence[SliceKey]) -> pd.DataFrame:
    """Rows of `sql` (a query with model, model_version, dataset columns) of the run's slices."""
    with duckdb.get_connection() as con:
        return select_in_slices(con, sql, slice_frame(*slice_keys))


def draw_per_protocol(frame: pd.DataFrame, draw: Draw, stem: str, subtitle: str = "") -> list[Path]:
    """One figure per (model, version, dataset, protocol) in `frame`, titled and named by it
    (on every core when there are many: drawing.draw_all)."""
    return draw_all(protocol_jobs(frame, draw, stem, subtitle))


def protocol_jobs(frame: pd.DataFrame, draw: Draw, stem: str, subtitle: str = "") -> list[DrawJob]:
    out_dir = benchmark_config().reports_dir
    jobs: list[DrawJob] = []
    for values, part in frame.groupby(SLICE, sort=True):
        model, version, dataset, protocol = values
        title = f"{model} {version}\n{dataset} ({protocol})" + (f"\n{subtitle}" if subtitle else "")
        jobs.append((draw, part, title, out_dir / f"{figures.slug(stem, model, version, dataset, protocol)}.png"))
    return jobs


def slice_figure_asset(name: str, stem: str, source: dg.AssetKey, sql: str, draw: Draw,
                       description: str) -> dg.AssetsDefinition:
    @dg.asset(key=["reports", name], deps=[source, *SLICE_INPUTS], partitions_def=model_dataset_partitions,
              backfill_policy=SINGLE_RUN, group_name="reports", kinds={"matplotlib"}, description=description,
              automation_condition=SLICE_RESULTS, op_tags=AFTER_STATISTICS)
    def _asset(context: dg.AssetExecutionContext, duckdb: WarehouseResource) -> dg.MaterializeResult:
        frame = read_slices(duckdb, sql, slices_of(context.partition_keys, benchmark_config()))
        return figure_result(draw_per_protocol(frame, draw, stem))

    return _asset


confusion_matrices = slice_figure_asset(
    "confusion_matrices", "confusion", CONFUSION_COUNTS, "select * from marts.confusion_counts where grouping = 'all'",
    figures.confusion_matrix_png,
    "Confusion matrix (true x predicted emotion, all faces) per model version and dataset.",
)
accuracy_heatmaps = slice_figure_asset(
    "accuracy_heatmaps", "accuracy_heatmap", GROUP_ACCURACY,
    "select * from marts.group_accuracy where grouping in ('race', 'race_gender', 'all')",
    figures.accuracy_heatmap_png,
    "Accuracy per race x gender group and true emotion, per model version and dataset.",
)
error_rate_forest_plots = slice_figure_asset(
    "error_rate_forest_plots", "forest", GROUP_ACCURACY, "select * from marts.group_accuracy where true_emotion = 'all' and n > 0",
    functools.partial(figures.forest_plot_png, min_n=benchmark_config().statistics.min_cell_n),
    "Forest plot of error rate per group with Wilson 95 % intervals (all emotions pooled).",
)



def draw_group_confusions(counts: pd.DataFrame) -> list[Path]:
    """One figure per protocol x grouping (race, gender, race_gender): a confusion grid per group,
    counts and row shares in every cell (figures.group_confusion_matrices_png)."""
    return draw_all([job for grouping, part in counts.groupby("grouping", sort=True)
                     for job in protocol_jobs(part, figures.group_confusion_matrices_png, f"group_confusion_{grouping}",
                                              subtitle=f"per {grouping.replace('_', ' x ')} group")])


@dg.asset(key=["reports", "group_confusion_matrices"], deps=[CONFUSION_COUNTS, *SLICE_INPUTS],
          partitions_def=model_dataset_partitions, backfill_policy=SINGLE_RUN, group_name="reports",
          kinds={"matplotlib"}, automation_condition=SLICE_RESULTS, op_tags=AFTER_STATISTICS,
          description="Confusion grids per race, gender and race x gender group (true x predicted emotion; counts "
                      "and shares of the true emotion's answered images), per model version, dataset and protocol "
                      "(Chhua et al.'s and Tae et al.'s main evidence).")
def group_confusion_matrices(context: dg.AssetExecutionContext, duckdb: WarehouseResource) -> dg.MaterializeResult:
    bench = benchmark_config()
    groupings = ", ".join(f"'{g}'" for g in bench.statistics.groupings)  # validated names: race, gender, race_gender
    counts = read_slices(duckdb, f"select * from marts.confusion_counts where grouping in ({groupings})",
                         slices_of(context.partition_keys, bench))
    return figure_result(draw_group_confusions(counts))


SLICE_FIGURES = [confusion_matrices, accuracy_heatmaps, error_rate_forest_plots, group_confusion_matrices]
