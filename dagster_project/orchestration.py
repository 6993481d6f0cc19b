"""Materialize the whole graph in-process: used by `fer-warehouse demo` and end-to-end tests.

The runs are recorded in the Dagster instance ($DAGSTER_HOME), so the UI shows them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import duckdb

from dagster_project.defs.partitions import register_configured_models
from dagster_project.settings import REPO_ROOT, benchmark_config
from inference.warehouse import snapshot_for_reading


@dataclass(frozen=True)
class DemoResult:
    warehouse: Path
    reports_dir: Path
    run_ids: list[str]


def load_definitions() -> dg.Definitions:
    return dg.load_from_defs_folder(path_within_project=REPO_ROOT / "dagster_project")


def materialize_everything(instance: dg.DagsterInstance | None = None) -> DemoResult:
    """Ingest every dataset, evaluate every configured model version on it, refresh each
    evaluated slice (marts, statistics, figures), then what spans slices."""
    cfg = benchmark_config()
    instance = instance or dg.DagsterInstance.get()
    defs = load_definitions()
    register_configured_models(instance, cfg)
    run_ids = []
    for dataset in sorted(cfg.datasets):
        run_ids.append(_run(defs, "ingest_dataset", instance, partition_key=dataset))
    slices = configured_slices(cfg)
    for key in slices:
        run_ids.append(_run(defs, "evaluate_model_on_dataset", instance, partition_key=key))
    run_ids += refresh(defs, instance, slices)
    return DemoResult(warehouse=cfg.warehouse, reports_dir=cfg.reports_dir, run_ids=run_ids)


def configured_slices(cfg) -> list[dg.MultiPartitionKey]:
    """Every (configured model version, dataset) partition the model covers."""
    return [
        dg.MultiPartitionKey({"model": model.partition_key, "dataset": dataset})
        for model in sorted(cfg.models.values(), key=lambda m: m.partition_key)
        for dataset in sorted(cfg.datasets)
        if model.covers(dataset)  # an imported model without a file for it does not
    ]


def refresh(defs: dg.Definitions, instance: dg.DagsterInstance, slices: list[dg.MultiPartitionKey]) -> list[str]:
    """Refresh the given slices (marts, statistics, figures), then the results spanning slices."""
    run_ids = [_run(defs, "refresh_slice", instance, partition_key=key) for key in slices]
    run_ids.append(_run(defs, "refresh_cross_slice", instance))
    return run_ids


def _run(defs: dg.Definitions, job_name: str, instance: dg.DagsterInstance, partition_key=None) -> str:
    job = defs.resolve_job_def(job_name)
    result = job.execute_in_process(instance=instance, partition_key=partition_key, raise_on_error=True)
    return result.run_id


def summary_table(warehouse: Path) -> str:
    """Accuracy per race group (all emotions) for every model version and dataset."""
    with snapshot_for_reading(warehouse) as snapshot:
        con = duckdb.connect(str(snapshot), read_only=True)
        try:
            frame = con.execute(
                """
                select model, model_version, dataset, group_value as race, n, correct,
                       round(accuracy, 3) as accuracy, round(ci_low, 3) as ci_low, round(ci_high, 3) as ci_high,
                       round(coverage, 3) as face_found_share
                from marts.group_accuracy
                where grouping in ('race', 'all') and true_emotion = 'all'
                order by model, dataset, grouping, race
                """
            ).df()
        finally:
            con.close()
    return "Accuracy by race (all emotions, Wilson 95 % CI):\n" + frame.to_string(index=False)
