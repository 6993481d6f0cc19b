"""New model versions re-evaluate themselves: the watched-versions sensor against the session's
loopback OpenAI-compatible server, the runs it requests, the marts, and the bias regression
gate (loopback-2 misreads Black faces: the gate fails; loopback-3 does not: it passes).

Runs after the end-to-end and statistics tests (file order), since it adds versions.
"""

from __future__ import annotations

import json

import dagster as dg
import pandas as pd
import pytest

from dagster_project.defs.partitions import MODEL_DIMENSION, MODEL_PARTITIONS_NAME
from dagster_project.orchestration import load_definitions, refresh, slices_to_refresh
from tests.test_end_to_end import query

pytestmark = pytest.mark.slow

GATE = dg.AssetCheckKey(dg.AssetKey(["marts", "group_accuracy"]), "bias_regression_gate")


def _tick(sensor, instance, defs, cursor=None):
    # The daemon resolves partition keys against the instance; in-process we say which one.
    with dg.partition_loading_context(dynamic_partitions_store=instance):
        return sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs, cursor=cursor))


def _evaluate_and_refresh(defs, instance, request: dg.RunRequest) -> None:
    defs.resolve_job_def("evaluate_model_on_dataset").execute_in_process(
        instance=instance, partition_key=request.partition_key, tags=request.tags
    )
    refresh(defs, instance, [request.partition_key])


def _gate_record(instance):
    records = instance.event_log_storage.get_asset_check_execution_history(GATE, limit=1)
    event = records[0].event.dagster_event.event_specific_data  # the AssetCheckEvaluation
    return records[0].status.value, event


def _other_versions_accuracy() -> pd.DataFrame:
    frame = query("select * from marts.group_accuracy where model_version not in ('loopback-2', 'loopback-3')")
    return frame.sort_values(list(frame.columns[:7])).reset_index(drop=True)


def test_new_version_discovered_once_evaluated_and_gated(demo, instance, vlm_server):
    defs = load_definitions()
    sensor = defs.resolve_sensor_def("watched_model_versions")

    # The pinned version is already a partition: nothing new.
    first = _tick(sensor, instance, defs)
    assert not first.run_requests
    partitions_before = set(instance.get_dynamic_partitions(MODEL_PARTITIONS_NAME))

    # The provider starts listing loopback-2: exactly one new partition, one run per dataset it covers.
    vlm_server.models = ("loopback-1", "loopback-2")
    second = _tick(sensor, instance, defs, first.cursor)
    added = set(instance.get_dynamic_partitions(MODEL_PARTITIONS_NAME)) - partitions_before
    assert added == {"loopback_vlm@loopback-2"}
    assert [r.partition_key.keys_by_dimension for r in second.run_requests] == [
        {MODEL_DIMENSION: "loopback_vlm@loopback-2", "dataset": "tae_sim"}
    ]
    request = second.run_requests[0]
    assert request.tags["fer/discovered_by"] == "sensor:openai"

    # A second evaluation yields none; a provider that is down yields a skip with the reason.
    third = _tick(sensor, instance, defs, second.cursor)
    assert not third.run_requests
    assert set(instance.get_dynamic_partitions(MODEL_PARTITIONS_NAME)) - partitions_before == added
    vlm_server.models_status = 503
    try:
        down = _tick(sensor, instance, defs, second.cursor)
    finally:
        vlm_server.models_status = 200
    assert not down.run_requests and "loopback_vlm: openai" in down.skip_message

    # Evaluate it: only its own slice is added; other versions' mart rows are unchanged. (First
    # a refresh, so that re-evaluations made by earlier tests are in the marts already.)
    refresh(defs, instance, slices_to_refresh(instance))
    before = _other_versions_accuracy()
    _evaluate_and_refresh(defs, instance, request)
    pd.testing.assert_frame_equal(before, _other_versions_accuracy())
    assert len(query("select * from marts.group_accuracy where model_version = 'loopback-2'")) > 0
    discovered = query("select * from raw.model_versions where model = 'loopback_vlm' order by discovered_at")
    assert discovered["model_version"].tolist() == ["loopback-1", "loopback-2"]
    assert discovered["discovered_by"].tolist() == ["config", "sensor:openai"]

    # loopback-2 reads Black faces' expressions as neutral: the gate fails and names the groups.
    status, evaluation = _gate_record(instance)
    assert status == "FAILED" and not evaluation.passed
    offenders = evaluation.metadata["offending_disparities"].value
    assert "black" in offenders and evaluation.metadata["n_offending"].value > 0
    comparisons = evaluation.metadata["comparisons"].value
    assert "loopback_vlm: loopback-1 -> loopback-2" in comparisons

    # loopback-3 answers like loopback-1 again: compared with loopback-2 the gaps shrink, the gate passes.
    vlm_server.models = ("loopback-1", "loopback-2", "loopback-3")
    fourth = _tick(sensor, instance, defs, third.cursor)
    assert [r.partition_key.keys_by_dimension[MODEL_DIMENSION] for r in fourth.run_requests] == ["loopback_vlm@loopback-3"]
    _evaluate_and_refresh(defs, instance, fourth.run_requests[0])
    status, evaluation = _gate_record(instance)
    assert status == "SUCCEEDED", json.dumps({k: str(v.value) for k, v in evaluation.metadata.items()})
    assert "loopback_vlm: loopback-2 -> loopback-3" in evaluation.metadata["comparisons"].value


def test_schedule_reevaluates_a_pinned_model_as_a_dated_snapshot(demo, instance):
    from datetime import datetime, timezone

    defs = load_definitions()
    schedule = defs.resolve_schedule_def("reevaluate_loopback_vlm")
    assert schedule.cron_schedule == "0 3 * * 1"
    when = datetime(2026, 11, 23, 3, 0, tzinfo=timezone.utc)
    with dg.partition_loading_context(dynamic_partitions_store=instance):
        context = dg.build_schedule_context(
            instance=instance, scheduled_execution_time=when, repository_def=defs.get_repository_def()
        )
        result = schedule.evaluate_tick(context)
    key = "loopback_vlm@loopback-1+202611230300"
    assert key in instance.get_dynamic_partitions(MODEL_PARTITIONS_NAME)
    assert [r.partition_key.keys_by_dimension for r in result.run_requests] == [{MODEL_DIMENSION: key, "dataset": "tae_sim"}]
    assert result.run_requests[0].tags["fer/discovered_by"] == "schedule"
    # The snapshot asks the provider for the pinned model itself, not for the snapshot name.
    from dagster_project.settings import benchmark_config

    snapshot = benchmark_config().model_for_partition(key)
    assert snapshot.version == "loopback-1+202611230300" and snapshot.provider_version == "loopback-1"


STATS_TABLES = ["error_rate_ztests", "misclassification_tests", "categorical_agreement", "rater_reliability",
                "dimensional_agreement", "wilcoxon_tests", "mixed_models", "response_style"]


def _stats_rows(table: str, versions: str) -> pd.DataFrame:
    frame = query(f"select * from stats.{table} where model_version {versions}")
    keys = [c for c in frame.columns if frame[c].dtype == object or str(frame[c].dtype).startswith("str")]
    return frame.sort_values(keys, kind="stable").reset_index(drop=True)


def test_refreshing_one_partition_changes_only_its_slice(demo, instance):
    """By now loopback-2, then loopback-3, were added one at a time: the last refresh was a run
    of loopback-3's partition alone; re-running it changes no other version's statistics."""
    defs = load_definitions()
    key = dg.MultiPartitionKey({MODEL_DIMENSION: "loopback_vlm@loopback-3", "dataset": "tae_sim"})
    before = {table: _stats_rows(table, "<> 'loopback-3'") for table in STATS_TABLES}
    new_slice = {table: _stats_rows(table, "= 'loopback-3'") for table in STATS_TABLES}
    result = defs.resolve_job_def("refresh_slice").execute_in_process(instance=instance, partition_key=key)
    for table in STATS_TABLES:
        # the run materialized this partition of each statistic, and only this one
        partitions = {e.partition for e in result.get_asset_materialization_events()
                      if e.asset_key == dg.AssetKey(["stats", table])}
        assert partitions == {str(key)}, (table, partitions)
        pd.testing.assert_frame_equal(before[table], _stats_rows(table, "<> 'loopback-3'"), obj=table)
        again = _stats_rows(table, "= 'loopback-3'")
        pd.testing.assert_frame_equal(new_slice[table], again, obj=table)
        assert len(again) > 0 or table == "rater_reliability", table
