"""`reports/html_report`: the one-file HTML report (dagster_project/reporting.py), rewritten
after every cross-slice refresh, so the UI and the demo point at a report of the current
warehouse. Unpartitioned: it reads every slice's statistics and figures."""

import dagster as dg

from dagster_project.defs import cross_slice, figures, stat_reports, statistics
from dagster_project.defs.conditions import ACROSS_SLICES
from dagster_project.defs.dbt_assets import warehouse_after_stats
from dagster_project.defs.resources import WarehouseResource
from dagster_project.reporting import write_report
from dagster_project.settings import benchmark_config

REPORT_UPSTREAM = [
    *statistics.SLICE_STATS, *figures.SLICE_FIGURES, *stat_reports.SLICE_FIGURES, *stat_reports.CROSS_SLICE_FIGURES,
    cross_slice.mcnemar_tests, cross_slice.strength_inversion, cross_slice.strength_inversion_figure,
    cross_slice.pooled_misclassification_tests,
    *warehouse_after_stats.keys,  # papers.* and lineage views: the report shows papers.* when they exist
]


@dg.asset(
    key=["reports", "html_report"],
    deps=REPORT_UPSTREAM,
    group_name="reports",
    kinds={"html"},
    automation_condition=ACROSS_SLICES,
    description="One self-contained HTML file (tables, figures, method notes: families, intervals, denominators) "
                "under reports_dir; opens offline. Also written by `fer-warehouse report`.",
)
def html_report(duckdb: WarehouseResource) -> dg.MaterializeResult:
    cfg = benchmark_config()
    with duckdb.get_connection() as con:
        path = write_report(con, cfg)
    return dg.MaterializeResult(metadata={
        "path": dg.MetadataValue.path(str(path)),
        "size_kb": round(path.stat().st_size / 1024, 1),
        "open": dg.MetadataValue.md(f"Open [{path.name}]({path.as_uri()}) in a browser (self-contained, offline)."),
    })
