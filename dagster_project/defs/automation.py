"""Jobs and sensors: configured model versions become partitions, get evaluated, and each evaluated
slice (partition) is refreshed through its marts, statistics and figures."""


import dagster as dg

from dagster_project.defs import cross_slice, figures, stat_reports, statistics
from dagster_project.defs.html_report import html_report
from dagster_project.defs.cross_slice import HUMAN_RELIABILITY, HUMAN_RESPONSE_STYLE
from dagster_project.defs.dbt_assets import warehouse_after_stats, warehouse_foundation, warehouse_slices
from dagster_project.defs.inference_assets import MODEL_RUNS, PREDICTIONS, TRANSPORT_FAILURES
from dagster_project.defs.ingestion import DATASET_EXCLUSIONS, DATASET_IMAGES, HUMAN_RATINGS, QUARANTINE
from dagster_project.defs.partitions import (
    MODEL_PARTITIONS_NAME,
    configured_model_keys,
    dataset_partitions,
    model_dataset_partitions,
)
from dagster_project.settings import benchmark_config
from inference.vlm.run_tags import provider_run_tags

RAW_ANSWERS = dg.AssetSelection.assets(PREDICTIONS, MODEL_RUNS, TRANSPORT_FAILURES)
# A dataset: its raw tables, the (unpartitioned) seeds and views over them, its human baselines.
ingest_job = dg.define_asset_job(
    "ingest_dataset",
    selection=dg.AssetSelection.assets(DATASET_IMAGES, DATASET_EXCLUSIONS, QUARANTINE, HUMAN_RATINGS,
                                        HUMAN_RELIABILITY, HUMAN_RESPONSE_STYLE)
    | dg.AssetSelection.assets(warehouse_foundation),
    partitions_def=dataset_partitions,
)
evaluate_job = dg.define_asset_job(
    "evaluate_model_on_dataset", selection=RAW_ANSWERS, partitions_def=model_dataset_partitions,
)
# One slice (model version x dataset): its dbt slice models, statistics and figures.
SLICE_ASSETS = dg.AssetSelection.assets(
    warehouse_slices, *statistics.SLICE_STATS, *figures.SLICE_FIGURES, *stat_reports.SLICE_FIGURES
)
refresh_slice_job = dg.define_asset_job(
    "refresh_slice", selection=SLICE_ASSETS, partitions_def=model_dataset_partitions,
)
# What spans slices: McNemar between versions, per-dataset figures comparing models, and the
# views over every slice's statistics (papers.*, lineage.stat_lineage), then the HTML report of
# the whole warehouse (last: it reads every table and figure).
refresh_cross_slice_job = dg.define_asset_job(
    "refresh_cross_slice", selection=dg.AssetSelection.assets(
        cross_slice.mcnemar_tests, cross_slice.strength_inversion, cross_slice.strength_inversion_figure,
        *stat_reports.CROSS_SLICE_FIGURES, warehouse_after_stats, html_report,
    ),
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
            # one provider's runs share its quota: a tag concurrency limit keys on this
            tags=provider_run_tags(cfg.model_for_partition(model)),
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


PARTITION_TAG = "dagster/partition"


def evaluated_slices_of(instance: dg.DagsterInstance, dataset: str) -> list[str]:
    """Partition keys of the model versions evaluated on `dataset` (their slices read its images)."""
    materialized = instance.get_materialized_partitions(PREDICTIONS)
    return sorted(key for key in materialized if model_dataset_partitions.get_partition_key_from_str(key)
                  .keys_by_dimension["dataset"] == dataset)


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    monitored_jobs=[evaluate_job, ingest_job],
    request_job=refresh_slice_job,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def refresh_after_evaluation(context: dg.RunStatusSensorContext) -> dg.SensorResult:
    """New raw answers of a slice -> rebuild that slice's marts, statistics and figures; a
    re-ingested dataset -> rebuild the slices evaluated on it."""
    run = context.dagster_run
    partition = run.tags.get(PARTITION_TAG)
    if partition is None:
        return dg.SensorResult(skip_reason=dg.SkipReason(f"run {run.run_id} has no partition"))
    slices = [partition] if run.job_name == evaluate_job.name else evaluated_slices_of(context.instance, partition)
    return dg.SensorResult(run_requests=[
        dg.RunRequest(run_key=f"refresh-{key}-after-{run.run_id}",
                      partition_key=model_dataset_partitions.get_partition_key_from_str(key))
        for key in slices
    ])


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    monitored_jobs=[refresh_slice_job],
    request_job=refresh_cross_slice_job,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def refresh_across_slices(context: dg.RunStatusSensorContext) -> dg.RunRequest:
    """A refreshed slice -> McNemar between versions and the figures comparing models."""
    return dg.RunRequest(run_key=f"cross-slice-after-{context.dagster_run.run_id}")
