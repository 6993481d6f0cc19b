"""Headline numbers on the dbt slice models' materializations: the slice's row count in
each model and, on marts/group_accuracy, accuracy by group with its intervals (so the UI
shows results without SQL). Read after dbt has finished (dbt_runner holds events back)."""

from collections.abc import Iterator, Sequence
from typing import Any

import dagster as dg
import pandas as pd

from dagster_project.analysis.headlines import accuracy_by_group_table
from dagster_project.defs.partitions import SliceKey, slice_frame
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


def with_slice_headlines(context: dg.AssetExecutionContext, duckdb: WarehouseResource,
                         slice_keys: Sequence[SliceKey], events: Iterator[Any]) -> Iterator[Any]:
    """Each output with its slice's headlines; a run of several slices materializes every one
    of its partitions with the same metadata, so there each slice's headlines are prefixed with
    the slice ("<model>@<version> | <dataset>: ...") and `dagster/row_count` is the sum."""
    for event in events:
        if isinstance(event, dg.Output):
            key = context.asset_key_for_output(event.output_name)
            event = event.with_metadata({**event.metadata, **headlines_of(duckdb, key, slice_keys)})
        yield event


def headlines_of(duckdb: WarehouseResource, key: dg.AssetKey, slice_keys: Sequence[SliceKey]) -> dict[str, Any]:
    """One slice's headlines; for several, their total row count and a table of each slice's
    (one grouped query: a per-slice query each would cost seconds over hundreds of slices)."""
    if len(slice_keys) == 1:
        return slice_headlines(duckdb, key, slice_keys[0])
    schema, name = key.path[-2], key.path[-1]
    with duckdb.get_connection() as con:
        con.register("_run_slices", slice_frame(*slice_keys))
        try:
            counts = con.execute(
                f"select s.model, s.model_version, s.dataset, count(t.model) as rows from _run_slices s "
                f"left join {schema}.{name} t using (model, model_version, dataset) group by all order by all").df()
        finally:
            con.unregister("_run_slices")
    return {"dagster/row_count": int(counts["rows"].sum()), "slices": len(slice_keys),
            "rows_by_slice": dg.MetadataValue.md(counts.to_markdown(index=False))}


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
