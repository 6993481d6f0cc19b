"""The sensor that requests a slice's refresh as soon as its evaluation succeeds (issue 25: the
UI's click-to-results waited for the next automation tick). Real runs on an ephemeral
instance; the sensor evaluated on each run's success event."""

from __future__ import annotations

import dagster as dg
from dagster._core.storage.dagster_run import DagsterRun

from dagster_project.defs.inference_assets import PREDICTIONS
from dagster_project.defs.refresh_sensor import refresh_after_evaluation

PARTITION = "london_subset|mini_xception@v1"


@dg.asset(key=PREDICTIONS)
def predictions() -> None:
    """Stands in for raw/predictions: the sensor reads only the materialization event."""


@dg.asset(key=["raw", "dataset_images"])
def dataset_images() -> None:
    """Another raw table: a run of it is no evaluation."""


def _sensor_after(instance: dg.DagsterInstance, asset, tags: dict[str, str]):
    result = dg.materialize([asset], instance=instance, tags=tags)
    run = instance.get_run_by_id(result.run_id)
    success = next(e for e in instance.all_logs(run.run_id) if e.dagster_event_type == dg.DagsterEventType.RUN_SUCCESS)
    context = dg.build_run_status_sensor_context(sensor_name=refresh_after_evaluation.name, dagster_instance=instance,
                                                 dagster_run=run, dagster_event=success.dagster_event)
    return run, refresh_after_evaluation(context)


def test_a_successful_evaluation_requests_its_slice_refresh_at_once():
    with dg.instance_for_test() as instance:
        run, request = _sensor_after(instance, predictions, {"dagster/partition": PARTITION})
    assert isinstance(request, dg.RunRequest)
    assert request.partition_key == PARTITION and request.run_key == f"refresh-after|{run.run_id}"
    assert refresh_after_evaluation.job_name == "refresh_slice"


def test_no_request_for_other_runs_or_when_a_refresh_is_already_pending():
    with dg.instance_for_test() as instance:
        _, other = _sensor_after(instance, dataset_images, {"dagster/partition": PARTITION})
        _, unpartitioned = _sensor_after(instance, predictions, {})
        # automation's tick came first: a run of the partition is running
        instance.add_run(DagsterRun(job_name="__ASSET_JOB", run_id="running-refresh", status=dg.DagsterRunStatus.STARTED,
                                    tags={"dagster/partition": PARTITION}))
        _, pending = _sensor_after(instance, predictions, {"dagster/partition": PARTITION})
    assert isinstance(other, dg.SkipReason) and "no slice's raw answers" in other.skip_message
    assert isinstance(unpartitioned, dg.SkipReason)
    assert isinstance(pending, dg.SkipReason) and "already queued or running" in pending.skip_message
