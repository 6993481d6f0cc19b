"""Jobs and sensors: configured model versions become partitions and get evaluated; each
evaluated slice (partition) then follows through its marts, statistics and figures by
declarative automation (defs/conditions.py, `default_automation_condition_sensor`).

Every job runs in one process (`in_process_executor`): its steps share one DuckDB file that
admits one writer at a time, so separate step processes would only add a code-location load
(~15 s CPU) per step. The same holds for runs the UI launches outside a job (asset page,
backfills, automation): definitions.py makes it the code location's default executor.
"""


import dagster as dg

from dagster_project.defs import cross_slice, figures, stat_reports, statistics
from dagster_project.defs.html_report import html_report
from dagster_project.defs.cross_slice import HUMAN_RELIABILITY, HUMAN_RESPONSE_STYLE
from dagster_project.defs.dbt_assets import warehouse_after_stats, warehouse_foundation, warehouse_slices
from dagster_project.defs.inference_assets import MODEL_RUNS, PREDICTIONS, TRANSPORT_FAILURES
from dagster_project.defs.ingestion import DATASET_EXCLUSIONS, DATASET_IMAGES, HUMAN_RATINGS, QUARANTINE
from dagster_project.defs.partitions import (
    DATASET_DIMENSION,
    MODEL_DIMENSION,
    MODEL_PARTITIONS_NAME,
    configured_model_keys,
    dataset_partitions,
    model_dataset_partitions,
    slice_partition,
    unconfigured_model_keys,
)
from dagster_project.settings import benchmark_config
from inference.config import BenchmarkConfig
from inference.vlm.run_tags import provider_run_tags

EXECUTOR = dg.in_process_executor
# Seconds between evaluations of the automation conditions (default 30, Dagster's; benchmark.yaml
# `automation.automation_interval_s`): each tick costs the daemon CPU (the whole daemon took
# ~6.5 s of CPU a minute with 10 s ticks on this graph).
AUTOMATION_INTERVAL_S = benchmark_config().automation.automation_interval_s

RAW_ANSWERS = dg.AssetSelection.assets(PREDICTIONS, MODEL_RUNS, TRANSPORT_FAILURES)
# A dataset: its raw tables, the (unpartitioned) seeds and views over them, its human baselines.
ingest_job = dg.define_asset_job(
    "ingest_dataset",
    selection=dg.AssetSelection.assets(DATASET_IMAGES, DATASET_EXCLUSIONS, QUARANTINE, HUMAN_RATINGS,
                                        HUMAN_RELIABILITY, HUMAN_RESPONSE_STYLE)
    | dg.AssetSelection.assets(warehouse_foundation),
    partitions_def=dataset_partitions,
    executor_def=EXECUTOR,
)
evaluate_job = dg.define_asset_job(
    "evaluate_model_on_dataset", selection=RAW_ANSWERS, partitions_def=model_dataset_partitions,
    executor_def=EXECUTOR,
)
# One slice (model version x dataset): its dbt slice models, statistics and figures.
SLICE_ASSETS = dg.AssetSelection.assets(
    warehouse_slices, *statistics.SLICE_STATS, *figures.SLICE_FIGURES, *stat_reports.SLICE_FIGURES
)
refresh_slice_job = dg.define_asset_job(
    "refresh_slice", selection=SLICE_ASSETS, partitions_def=model_dataset_partitions,
    executor_def=EXECUTOR,
)
# What spans slices: McNemar between versions, per-dataset figures comparing models, and the
# views over every slice's statistics (papers.*, lineage.stat_lineage) and the pooled marts of
# dataset groups, then the HTML report of the whole warehouse (last: it reads every table and figure).
refresh_cross_slice_job = dg.define_asset_job(
    "refresh_cross_slice", selection=dg.AssetSelection.assets(
        cross_slice.mcnemar_tests, cross_slice.strength_inversion, cross_slice.strength_inversion_figure,
        cross_slice.pooled_misclassification_tests,
        *stat_reports.CROSS_SLICE_FIGURES, warehouse_after_stats, html_report,
    ),
    executor_def=EXECUTOR,
)


def _model_and_dataset(partition_key: str) -> tuple[str, str]:
    by_dimension = model_dataset_partitions.get_partition_key_from_str(partition_key).keys_by_dimension
    return by_dimension[MODEL_DIMENSION], by_dimension[DATASET_DIMENSION]


def unevaluated_slices(cfg: BenchmarkConfig, datasets: list[str], evaluated: set[str]) -> list[tuple[str, str]]:
    """(model key, dataset) of each configured model version on each dataset it covers that has
    no answers yet (`evaluated`: the materialized slice partitions of raw/predictions).

    Whether the version is already a partition does not matter: `fer-warehouse ui`, the CLI or
    the UI's "Add partition" may have added it before any run asked the model."""
    return [
        (key, dataset)
        for key in configured_model_keys(cfg)
        for dataset in datasets
        # an imported model answers only on the datasets it has a file for
        if cfg.model_for_partition(key).covers(dataset) and slice_partition(key, dataset) not in evaluated
    ]


@dg.sensor(jobs=[ingest_job, evaluate_job], minimum_interval_seconds=benchmark_config().automation.sensor_interval_s,
           default_status=dg.DefaultSensorStatus.RUNNING)
def configured_model_versions(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
    """Evaluate each model version pinned in benchmark.yaml once on each dataset it covers.

    Datasets are ingested first: while one is not, the sensor requests its ingestion and
    leaves the model versions for a later tick. A slice is requested once (its run key): a run
    that dies is retried by the instance (run monitoring and run retries), not by this sensor.
    A partition added by hand for a version that is not configured is never evaluated by itself
    (an API model costs money): it is removed unless it already has answers.
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
    cfg = benchmark_config()
    known = set(context.instance.get_dynamic_partitions(MODEL_PARTITIONS_NAME))
    evaluated_slices = set(context.instance.get_materialized_partitions(PREDICTIONS))
    # Dagster's "Add a partition" accepts any key: one naming no configured model, never
    # evaluated, is removed here (the tick log says why) instead of failing every run of it.
    evaluated = {_model_and_dataset(key)[0] for key in evaluated_slices}
    stray = {key: reason for key, reason in unconfigured_model_keys(known, cfg).items() if key not in evaluated}
    for key, reason in stray.items():
        context.log.warning(f"removing partition {key!r}: {reason}")
    partition_requests: list = [dg.DeleteDynamicPartitionsRequest(MODEL_PARTITIONS_NAME, sorted(stray))] if stray else []
    new_keys = [key for key in configured_model_keys(cfg) if key not in known]
    if new_keys:
        partition_requests.append(dg.AddDynamicPartitionsRequest(MODEL_PARTITIONS_NAME, new_keys))
    todo = unevaluated_slices(cfg, dataset_partitions.get_partition_keys(), evaluated_slices)
    if not todo:
        if partition_requests:
            return dg.SensorResult(dynamic_partitions_requests=partition_requests)
        return dg.SkipReason("every configured model version has answers on every dataset it covers")
    requests = [
        dg.RunRequest(
            run_key=f"{model}|{dataset}",
            job_name=evaluate_job.name,
            partition_key=slice_partition(model, dataset),
            # one provider's runs share its quota: a tag concurrency limit keys on this
            tags=provider_run_tags(cfg.model_for_partition(model)),
        )
        for model, dataset in todo
    ]
    return dg.SensorResult(run_requests=requests, dynamic_partitions_requests=partition_requests)


# Everything downstream of the raw tables follows them by declarative automation: each asset's
# automation condition (defs/conditions.py), evaluated per partition by this sensor, requests a
# slice's marts, statistics and figures when its raw tables were materialized, whichever way.
default_automation_condition_sensor = dg.AutomationConditionSensorDefinition(
    "default_automation_condition_sensor",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=AUTOMATION_INTERVAL_S,
)
