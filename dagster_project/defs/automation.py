"""Jobs and sensors: configured model versions become partitions and get evaluated."""


import dagster as dg

from dagster_project.defs.inference_assets import MODEL_RUNS, PREDICTIONS, TRANSPORT_FAILURES
from dagster_project.defs.ingestion import DATASET_IMAGES, HUMAN_RATINGS, QUARANTINE
from dagster_project.defs.partitions import (
    MODEL_PARTITIONS_NAME,
    configured_model_keys,
    dataset_partitions,
    model_dataset_partitions,
)
from dagster_project.settings import benchmark_config

ingest_job = dg.define_asset_job(
    "ingest_dataset", selection=dg.AssetSelection.assets(DATASET_IMAGES, QUARANTINE, HUMAN_RATINGS), partitions_def=dataset_partitions
)
evaluate_job = dg.define_asset_job(
    "evaluate_model_on_dataset",
    selection=dg.AssetSelection.assets(PREDICTIONS, MODEL_RUNS, TRANSPORT_FAILURES),
    partitions_def=model_dataset_partitions,
)
# Everything downstream of the raw tables: dbt seeds/models/tests, statistics and figures.
refresh_job = dg.define_asset_job(
    "refresh_marts_and_reports",
    selection=dg.AssetSelection.assets(
        PREDICTIONS, MODEL_RUNS, TRANSPORT_FAILURES, DATASET_IMAGES, QUARANTINE, HUMAN_RATINGS
    ).downstream(include_self=False)
    | dg.AssetSelection.groups("label_maps"),
)


@dg.sensor(jobs=[ingest_job, evaluate_job], minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING)
def configured_model_versions(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
    """Add each model version pinned in benchmark.yaml as a partition and evaluate it once.

    Datasets are ingested first: while one is not, the sensor requests its ingestion and
    leaves the model versions for a later tick.
    """
    ingested = context.instance.get_materialized_partitions(DATASET_IMAGES)
    missing = [ds for ds in dataset_partitions.get_partition_keys() if ds not in ingested]
    if missing:
        return dg.SensorResult(
            run_requests=[
                dg.RunRequest(run_key=f"ingest|{ds}", job_name=ingest_job.name, partition_key=ds)
                for ds in missing
            ]
        )
    known = set(context.instance.get_dynamic_partitions(MODEL_PARTITIONS_NAME))
    new = [key for key in configured_model_keys(benchmark_config()) if key not in known]
    if not new:
        return dg.SkipReason("every configured model version is already a partition")
    cfg = benchmark_config()
    requests = [
        dg.RunRequest(
            run_key=f"{model}|{dataset}",
            job_name=evaluate_job.name,
            partition_key=dg.MultiPartitionKey({"model": model, "dataset": dataset}),
        )
        for model in new
        for dataset in dataset_partitions.get_partition_keys()
        # an imported model answers only on the datasets it has a file for
        if cfg.model_for_partition(model).covers(dataset)
    ]
    return dg.SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[dg.AddDynamicPartitionsRequest(MODEL_PARTITIONS_NAME, new)],
    )


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    monitored_jobs=[evaluate_job, ingest_job],
    request_job=refresh_job,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def refresh_after_evaluation(context: dg.RunStatusSensorContext) -> dg.RunRequest:
    """New raw answers -> rebuild the marts, statistics and figures."""
    return dg.RunRequest(run_key=f"refresh-after-{context.dagster_run.run_id}")
