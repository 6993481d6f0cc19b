"""A slice's refresh right after its evaluation, not at the next automation tick.

Declarative automation (defs/conditions.py) refreshes a slice whose raw answers changed, but
only at its next tick: every `automation.automation_interval_s` (30 s), and a tick over this
graph takes seconds itself, so a click on Materialize waited ~21 s between the evaluation's end
and the refresh's start (issue 25). This run-status sensor sees every successful run that
materialized `raw/predictions` for a slice (asset page, the evaluate job, sensors, schedules)
and requests `refresh_slice` for that partition at once: the sensor daemon looks at it every
loop (5 s at most).

Automation stays the safety net and does not refresh twice: while the requested run is queued
or running, the slice's assets are in progress (SLICE_RESULTS waits), and once it has
materialized them they count as handled (`since_last_handled`). If an automation tick got
there first, a refresh run of the partition is already queued or running and this sensor
requests nothing.
"""

import dagster as dg

from dagster_project.defs.automation import refresh_slice_job
from dagster_project.defs.inference_assets import PREDICTIONS

PARTITION_TAG = "dagster/partition"
UNFINISHED = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
              dg.DagsterRunStatus.STARTED]


def materialized_predictions(instance: dg.DagsterInstance, run_id: str) -> bool:
    events = instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
    return any(event.dagster_event is not None and event.dagster_event.asset_key == PREDICTIONS for event in events)


def refresh_already_pending(instance: dg.DagsterInstance, partition: str, evaluation_run_id: str) -> bool:
    """A run of this partition other than the evaluation is queued or running (automation's)."""
    runs = instance.get_runs(filters=dg.RunsFilter(tags={PARTITION_TAG: partition}, statuses=UNFINISHED), limit=5)
    return any(run.run_id != evaluation_run_id for run in runs)


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    request_job=refresh_slice_job,
    minimum_interval_seconds=1,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Requests refresh_slice for a slice as soon as a run that materialized its raw answers succeeds "
                "(declarative automation would wait for its next tick).",
)
def refresh_after_evaluation(context: dg.RunStatusSensorContext) -> dg.RunRequest | dg.SkipReason:
    run = context.dagster_run
    partition = run.tags.get(PARTITION_TAG)
    if not partition or not materialized_predictions(context.instance, run.run_id):
        return dg.SkipReason(f"run {run.run_id} materialized no slice's raw answers")
    if refresh_already_pending(context.instance, partition, run.run_id):
        return dg.SkipReason(f"a run of {partition} is already queued or running")
    return dg.RunRequest(run_key=f"refresh-after|{run.run_id}", partition_key=partition)
