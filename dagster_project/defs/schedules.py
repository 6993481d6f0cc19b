"""Schedules: re-evaluate pinned models whose answers can change silently (e.g. `latest` aliases).

Each scheduled run evaluates a *snapshot* version "<version>+<YYYYMMDDHHMM>" of the model on
every dataset it covers: a new partition, so the response cache (keyed by version) asks the
provider again, the marts keep every snapshot side by side, and the bias regression gate
compares each snapshot with the one before it.
"""

import dagster as dg

from dagster_project.defs.automation import evaluate_job
from dagster_project.defs.inference_assets import DISCOVERED_AT_TAG, DISCOVERED_BY_TAG
from dagster_project.defs.partitions import MODEL_PARTITIONS_NAME, dataset_partitions, slice_partition
from dagster_project.settings import benchmark_config
from inference.config import ModelConfig, model_partition_key
from inference.vlm.run_tags import provider_run_tags


def snapshot_key(model: ModelConfig, scheduled_for) -> str:
    return model_partition_key(model.name, f"{model.provider_version}+{scheduled_for:%Y%m%d%H%M}")


def reevaluation_schedule(model: ModelConfig) -> dg.ScheduleDefinition:
    @dg.schedule(
        name=f"reevaluate_{model.name}",
        cron_schedule=model.reevaluate_cron,
        job=evaluate_job,
        description=f"Re-evaluate {model.partition_key} as a dated snapshot ({model.reevaluate_cron}).",
    )
    def _schedule(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest]:
        when = context.scheduled_execution_time
        key = snapshot_key(model, when)
        # Added before the requests so they name an existing partition wherever this runs.
        context.instance.add_dynamic_partitions(MODEL_PARTITIONS_NAME, [key])
        tags = {**provider_run_tags(model), DISCOVERED_BY_TAG: "schedule",
                DISCOVERED_AT_TAG: when.isoformat(timespec="seconds")}
        return [
            dg.RunRequest(run_key=f"{key}|{dataset}", partition_key=slice_partition(key, dataset),
                          tags=tags)
            for dataset in dataset_partitions.get_partition_keys()
            if model.covers(dataset)
        ]

    return _schedule


@dg.definitions
def reevaluation_schedules() -> dg.Definitions:
    models = [m for m in benchmark_config().models.values() if m.reevaluate_cron]
    return dg.Definitions(schedules=[reevaluation_schedule(m) for m in models])
