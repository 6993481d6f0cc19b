"""Headline numbers on the dbt slice models' materializations: the slice's row count in
each model and, on marts/group_accuracy, accuracy by group with its intervals (so the UI
shows results without SQL). Read after dbt has finished (dbt_runner holds events back)."""

from collections.abc import Iterator
from typing import Any

import dagster as dg

from dagster_project.analysis.headlines import accuracy_by_group_table
from dagster_project.defs.partitions import SliceKey
from dagster_project.defs.resources import WarehouseResource

GROUP_ACCURACY = dg.AssetKey(["marts", "group_accuracy"])
SLICE_WHERE = "model = ? and model_version = ? and dataset = ?"


def slice_headlines(duckdb: WarehouseResource, key: dg.AssetKey, slice_key: SliceKey) -> dict[str, Any]:
    """`dagster/row_count` of the slice in the model `key` (<schema>/<name>), plus the
    accuracy table for marts/group_accuracy."""
    schema, name = key.path[-2], key.path[-1]
    params = list(slice_key.as_dict().values())
    with duckdb.get_connection() as con:
        meta: dict[str, Any] = {
            "dagster/row_count": con.execute(f"select count(*) from {schema}.{name} where {SLICE_WHERE}",
                                             params).fetchone()[0],
        }
        if key == GROUP_ACCURACY:
            frame = con.execute(f"select * from marts.group_accuracy where {SLICE_WHERE}", params).df()
            meta["accuracy_by_group"] = dg.MetadataValue.md(accuracy_by_group_table(frame))
            overall = frame[(frame["grouping"] == "all") & (frame["true_emotion"] == "all")]
            for row in overall.itertuples(index=False):
                meta[f"accuracy [{row.protocol}]"] = (
                    f"{row.accuracy:.3f} (95 % CI {row.ci_low:.3f}-{row.ci_high:.3f}, n={int(row.n)})"
                    if row.n else "no answered images")
    return meta


def with_slice_headlines(context: dg.AssetExecutionContext, duckdb: WarehouseResource, slice_key: SliceKey,
                         events: Iterator[Any]) -> Iterator[Any]:
    for event in events:
        if isinstance(event, dg.Output):
            key = context.asset_key_for_output(event.output_name)
            event = event.with_metadata({**event.metadata, **slice_headlines(duckdb, key, slice_key)})
        yield event


PAPER_MATCHES = dg.AssetKey(["papers", "model_paper_matches"])


def with_paper_match_hints(context: dg.AssetExecutionContext, duckdb: WarehouseResource,
                           events: Iterator[Any]) -> Iterator[Any]:
    """papers.model_paper_matches' materialization carries the models that match no column of
    the seed papers (metadata `models_without_paper_column`, with the view's hint), and each is
    logged as a warning: a model set beside no paper's column should say why, not stay silent."""
    for event in events:
        if isinstance(event, dg.Output) and context.asset_key_for_output(event.output_name) == PAPER_MATCHES:
            with duckdb.get_connection() as con:
                unmatched = con.execute("select model, model_version, hint from papers.model_paper_matches "
                                        "where hint is not null order by all").fetchall()
            for model, version, hint in unmatched:
                context.log.warning(f"{model}@{version} {hint}")
            event = event.with_metadata({**event.metadata, "models_without_paper_column": dg.MetadataValue.md(
                "\n".join(f"- {model}@{version}: {hint}" for model, version, hint in unmatched) or "none")})
        yield event
