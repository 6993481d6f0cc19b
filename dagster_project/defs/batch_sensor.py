"""Batch delivery (`models.<name>.options.delivery: batch`), the Dagster way: an evaluation
submits its requests and returns without materializing the slice (raw/predictions is skipped:
the slice is not evaluated until every image has its answer); this sensor polls the provider
for each slice's open batches (raw.api_batches) and, once they have all finished, requests the
slice's next evaluation run, which ingests them (and submits what is still missing)."""

import dagster as dg

from dagster_project.defs.automation import evaluate_job
from dagster_project.defs.partitions import slice_partition
from dagster_project.settings import benchmark_config
from inference.models.vlm_batch import finished_slices, uses_batches
from inference.vlm.run_tags import provider_run_tags

# A provider finishes a batch within hours; a poll every five minutes costs nothing worth counting.
POLL_INTERVAL_S = 300


@dg.sensor(job=evaluate_job, minimum_interval_seconds=POLL_INTERVAL_S, default_status=dg.DefaultSensorStatus.RUNNING)
def finished_api_batches(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
    """One evaluation run per slice whose open batches have all finished."""
    cfg = benchmark_config()
    if not any(uses_batches(model) for model in cfg.models.values()):  # nothing to poll: no warehouse read
        return dg.SkipReason("no model has delivery batch (or auto)")
    ready = finished_slices(cfg)
    if not ready:
        return dg.SkipReason("no slice has finished batches to ingest")
    return dg.SensorResult(run_requests=[
        dg.RunRequest(run_key=item.run_key, partition_key=slice_partition(item.model_key, item.dataset),
                      tags=provider_run_tags(cfg.model_for_partition(item.model_key)))
        for item in ready
    ])
