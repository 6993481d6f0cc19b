"""The bias regression gate as an asset check on the per-group accuracies.

For every model family with two or more evaluated versions, the newest version (by when it was
first evaluated) is compared with the one before it; the check fails, with the offending
groups and both versions' intervals in its metadata, when a disparity grew beyond its interval.
"""

import dagster as dg
import pandas as pd

from dagster_project.analysis.regression_gate import regression_gate
from dagster_project.defs.resources import WarehouseResource
from dagster_project.settings import benchmark_config

GROUP_ACCURACY = dg.AssetKey(["marts", "group_accuracy"])

VERSION_ORDER_SQL = """
select model, model_version, min(started_at) as first_evaluated
from raw.model_runs
group by all
order by model, first_evaluated, model_version
"""


def newest_pairs(runs: pd.DataFrame) -> list[tuple[str, str, str]]:
    """(model, newest version, previous version) for every family with two or more versions."""
    pairs = []
    for model, versions in runs.groupby("model", sort=True):
        ordered = versions.sort_values(["first_evaluated", "model_version"])["model_version"].tolist()
        if len(ordered) >= 2:
            pairs.append((model, ordered[-1], ordered[-2]))
    return pairs


@dg.asset_check(
    asset=GROUP_ACCURACY,
    description="Fails when a model's newest version widened a group disparity (error-rate gap between races, "
                "genders or their intersections, per emotion) beyond the previous version's 95 % interval.",
)
def bias_regression_gate(duckdb: WarehouseResource) -> dg.AssetCheckResult:
    cfg = benchmark_config().statistics
    with duckdb.get_connection() as con:
        accuracy = con.execute("select * from marts.group_accuracy").df()
        runs = con.execute(VERSION_ORDER_SQL).df()
    results, offenders = {}, []
    for model, new, previous in newest_pairs(runs):
        gate = regression_gate(accuracy, model=model, new_version=new, previous_version=previous,
                               min_n=cfg.min_cell_n, groupings=cfg.groupings, alpha=cfg.alpha,
                               correction=cfg.gate_correction)
        results[f"{model}: {previous} -> {new}"] = gate.summary()
        if not gate.passed:
            offenders.append(gate.offenders.assign(model=model, new_version=new, previous_version=previous))
    table = pd.concat(offenders, ignore_index=True) if offenders else pd.DataFrame()
    return dg.AssetCheckResult(
        passed=not offenders,
        metadata={
            "comparisons": dg.MetadataValue.json(results or {"note": "no model has two evaluated versions yet"}),
            "offending_disparities": dg.MetadataValue.md(
                table.round(4).to_markdown(index=False) if len(table) else "none"
            ),
            "n_offending": len(table),
        },
    )
