"""The evaluated slice is a Dagster partition all the way through: re-evaluating one partition
makes exactly that partition of the marts and statistics stale in the UI (asked through
Dagster's GraphQL API, as the UI does), and refreshing it changes only that slice's rows.

Runs after the end-to-end tests (file order: it uses the session's demo warehouse).
"""

from __future__ import annotations

import dagster as dg
import duckdb
import pandas as pd
import pytest

from dagster_project.defs.partitions import MODEL_DIMENSION
from dagster_project.orchestration import load_definitions
from dagster_project.settings import REPO_ROOT, benchmark_config
from tests.test_end_to_end import query

pytestmark = pytest.mark.slow

PARTITION = dg.MultiPartitionKey({MODEL_DIMENSION: "gemma_sim@sim-1", "dataset": "tae_sim"})
OTHER = dg.MultiPartitionKey({MODEL_DIMENSION: "fer_sim@sim-1", "dataset": "tae_sim"})
MART = dg.AssetKey(["marts", "group_accuracy"])
STATS = dg.AssetKey(["stats", "categorical_agreement"])
TAMPERED = -999

STALE_STATUS = """
query StaleStatus($assetKey: AssetKeyInput!, $partitions: [String!]) {
  assetNodes(assetKeys: [$assetKey]) {
    assetKey { path }
    staleStatusByPartition(partitions: $partitions)
  }
}
"""


@pytest.fixture
def workspace(instance):
    """The UI's view: the code location loaded in its own process, asked through GraphQL."""
    from dagster_graphql.test.utils import define_out_of_process_workspace

    with define_out_of_process_workspace(str(REPO_ROOT / "dagster_project" / "definitions.py"), "defs",
                                         instance) as process_context:
        yield process_context


def _stale_status(workspace, key: dg.AssetKey, partitions: list[str]) -> dict[str, str]:
    from dagster_graphql.test.utils import execute_dagster_graphql

    context = workspace.create_request_context()  # a fresh request: nothing cached from the last one
    result = execute_dagster_graphql(context, STALE_STATUS,
                                     variables={"assetKey": {"path": key.path}, "partitions": partitions})
    assert not result.errors, result.errors
    statuses = result.data["assetNodes"][0]["staleStatusByPartition"]
    return dict(zip(partitions, statuses, strict=True))


def _execute(sql: str) -> None:
    con = duckdb.connect(str(benchmark_config().warehouse))
    try:
        con.execute(sql)
    finally:
        con.close()


TABLES = ("marts.group_accuracy", "stats.categorical_agreement")


def _restore(table: str, where: str, rows: pd.DataFrame) -> None:
    con = duckdb.connect(str(benchmark_config().warehouse))
    try:
        con.execute(f"delete from {table} where {where}")
        con.register("_rows", rows)
        con.execute(f"insert into {table} by name select * from _rows")
    finally:
        con.close()


def _rows(table: str, where: str) -> pd.DataFrame:
    frame = query(f"select * from {table} where {where}")
    keys = [c for c in frame.columns if frame[c].dtype == object or str(frame[c].dtype).startswith("str")]
    return frame.sort_values(keys, kind="stable").reset_index(drop=True)


def _slice_where(key: dg.MultiPartitionKey) -> str:
    model, version = key.keys_by_dimension[MODEL_DIMENSION].split("@")
    return f"model = '{model}' and model_version = '{version}' and dataset = '{key.keys_by_dimension['dataset']}'"


def test_one_partition_goes_stale_and_its_refresh_changes_only_its_slice(demo, instance, workspace):
    defs = load_definitions()
    partitions = [str(PARTITION), str(OTHER)]
    assert _stale_status(workspace, MART, partitions) == {str(PARTITION): "FRESH", str(OTHER): "FRESH"}

    # Both slices' stored rows are tampered with; only the refreshed one may be rebuilt.
    untampered = {table: _rows(table, _slice_where(OTHER)) for table in TABLES}
    for key in (PARTITION, OTHER):
        _execute(f"update marts.group_accuracy set correct = {TAMPERED} where {_slice_where(key)}")
        _execute(f"update stats.categorical_agreement set estimate = {TAMPERED} where {_slice_where(key)}")
    other_mart, other_stats = _rows("marts.group_accuracy", "true"), _rows("stats.categorical_agreement", "true")

    defs.resolve_job_def("evaluate_model_on_dataset").execute_in_process(instance=instance, partition_key=PARTITION)
    for asset in (MART, STATS):
        assert _stale_status(workspace, asset, partitions) == {str(PARTITION): "STALE", str(OTHER): "FRESH"}, asset

    defs.resolve_job_def("refresh_slice").execute_in_process(instance=instance, partition_key=PARTITION)
    for asset in (MART, STATS):
        assert _stale_status(workspace, asset, partitions) == {str(PARTITION): "FRESH", str(OTHER): "FRESH"}, asset

    # The refreshed slice is rebuilt from its answers; every other row is exactly as it was.
    for table, before in (("marts.group_accuracy", other_mart), ("stats.categorical_agreement", other_stats)):
        column = "correct" if table.startswith("marts") else "estimate"
        mine = _rows(table, _slice_where(PARTITION))
        assert len(mine) and (mine[column] != TAMPERED).all(), table
        rest = f"not ({_slice_where(PARTITION)})"
        pd.testing.assert_frame_equal(_rows(table, rest), before.query(
            "not (model == 'gemma_sim' and model_version == 'sim-1' and dataset == 'tae_sim')").reset_index(drop=True),
            obj=table)
        assert (_rows(table, _slice_where(OTHER))[column] == TAMPERED).all(), table
    # Leave the other slice as the demo built it, for the tests that follow.
    for table, rows in untampered.items():
        _restore(table, _slice_where(OTHER), rows)
    assert (_rows("marts.group_accuracy", _slice_where(OTHER))["correct"] != TAMPERED).all()
