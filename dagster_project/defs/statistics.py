"""Statistics on top of the marts (first layer: pairwise error-rate z-tests)."""


import dagster as dg

from dagster_project.analysis.proportions import pairwise_error_ztests
from dagster_project.defs.resources import WarehouseResource
from dagster_project.settings import benchmark_config
from inference import warehouse

GROUP_ACCURACY = dg.AssetKey(["marts", "group_accuracy"])
ERROR_RATE_ZTESTS = dg.AssetKey(["stats", "error_rate_ztests"])


@dg.asset(
    key=ERROR_RATE_ZTESTS,
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
    stats_cfg = benchmark_config().statistics
    with duckdb.get_connection() as con:
        accuracy = con.execute("select * from marts.group_accuracy").df()
    tests = pairwise_error_ztests(
        accuracy, groupings=stats_cfg.groupings, alpha=stats_cfg.alpha, min_n=stats_cfg.min_cell_n
    )
    with duckdb.get_connection() as con:
        con.execute("create schema if not exists stats")
        con.register("_tests", tests)
        con.execute("create or replace table stats.error_rate_ztests as select * from _tests")
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
