"""Materialize the whole graph in-process: used by `fer-warehouse demo` and end-to-end tests.

What runs is data: a list of `Step(label, job_name, partition_key)` (`demo_steps`), each one
`execute_in_process` run through `run_step`, reported by an optional `StepReporter`. The runs
are recorded in the Dagster instance ($DAGSTER_HOME), so the UI shows them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import dagster as dg
import duckdb

from dagster_project.defs.partitions import (
    MODEL_DIMENSION,
    MODEL_PARTITIONS_NAME,
    model_dataset_partitions,
    register_configured_models,
    slice_partition,
    slice_ranges,
)
from dagster_project.settings import REPO_ROOT, benchmark_config
from inference.config import BenchmarkConfig
from inference.warehouse import snapshot_for_reading


# The tags by which a run targets a range of partitions (what a single-run backfill sets).
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


@dataclass(frozen=True)
class DemoResult:
    warehouse: Path
    reports_dir: Path
    run_ids: list[str]


@dataclass(frozen=True)
class Step:
    """One run of the demo: a job, for one partition or unpartitioned; `label` is what a person reads."""

    label: str
    job_name: str
    partition_key: str | None = None  # a dg.MultiPartitionKey is a str
    # Or several partitions in one run: a range of a job whose assets run a range at once
    # (BackfillPolicy.single_run), as a backfill from the UI launches it.
    partition_range: dg.PartitionKeyRange | None = None

    @property
    def run_tags(self) -> dict[str, str]:
        if self.partition_range is None:
            return {}
        return {RANGE_START_TAG: self.partition_range.start, RANGE_END_TAG: self.partition_range.end}


class StepFailed(RuntimeError):
    """A step's run failed; the message names the failing asset step and its error."""

    def __init__(self, step: Step, message: str) -> None:
        super().__init__(message)
        self.step = step


class StepReporter(Protocol):
    """Shows progress (see demo_progress.DemoProgress); its loggers replace the console logger."""

    @property
    def logger_defs(self) -> Mapping[str, dg.LoggerDefinition]: ...

    def start(self, steps: Sequence[Step]) -> None: ...

    def step(self, step: Step) -> AbstractContextManager[None]: ...


def load_definitions() -> dg.Definitions:
    return dg.load_from_defs_folder(path_within_project=REPO_ROOT / "dagster_project")


def configured_slices(cfg: BenchmarkConfig) -> list[dg.MultiPartitionKey]:
    """Every (configured model version, dataset) partition the model covers."""
    return [
        slice_partition(model.partition_key, dataset)
        for model in sorted(cfg.models.values(), key=lambda m: m.partition_key)
        for dataset in sorted(cfg.datasets)
        if model.covers(dataset)  # an imported model without a file for it does not
    ]


def _slice_label(key: dg.MultiPartitionKey) -> str:
    by_dimension = key.keys_by_dimension
    return f"{by_dimension[MODEL_DIMENSION]} on {by_dimension['dataset']}"


def refresh_steps(slices: Sequence[dg.MultiPartitionKey], model_keys: Sequence[str]) -> list[Step]:
    """Refresh the slices (marts, statistics, figures), as few runs as partition ranges cover
    them exactly (`slice_ranges`; `model_keys`: the model-version dimension's keys in order),
    then the results spanning slices."""
    return [
        *(_refresh_step(key_range) for key_range in slice_ranges(slices, model_keys)),
        Step("compare   versions and models (McNemar, strength inversion, figures)", "refresh_cross_slice"),
    ]


def _refresh_step(key_range: dg.PartitionKeyRange) -> Step:
    first, last = (model_dataset_partitions.get_partition_key_from_str(k) for k in (key_range.start, key_range.end))
    if first == last:
        return Step(f"refresh   {_slice_label(first)}", "refresh_slice", first)
    return Step(f"refresh   {_slice_label(first)} .. {_slice_label(last)}", "refresh_slice", partition_range=key_range)


def demo_steps(cfg: BenchmarkConfig, model_keys: Sequence[str]) -> list[Step]:
    """Ingest every dataset, evaluate every configured model version on it, refresh the slices."""
    slices = configured_slices(cfg)
    return [
        *(Step(f"ingest    {dataset}", "ingest_dataset", dataset) for dataset in sorted(cfg.datasets)),
        *(Step(f"evaluate  {_slice_label(key)}", "evaluate_model_on_dataset", key) for key in slices),
        *refresh_steps(slices, model_keys),
    ]


def _latest_storage_id(instance: dg.DagsterInstance, key: dg.AssetKey, partition: str) -> int:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition]), limit=1).records
    return records[0].storage_id if records else 0


def slices_to_refresh(instance: dg.DagsterInstance) -> list[dg.MultiPartitionKey]:
    """Evaluated slices whose raw answers are newer than their marts (a refresh would change them)."""
    answers, marts = dg.AssetKey(["raw", "predictions"]), dg.AssetKey(["marts", "group_accuracy"])
    return [
        model_dataset_partitions.get_partition_key_from_str(key)
        for key in sorted(instance.get_materialized_partitions(answers))
        if _latest_storage_id(instance, answers, key) > _latest_storage_id(instance, marts, key)
    ]


def refresh(defs: dg.Definitions, instance: dg.DagsterInstance, slices: Sequence[dg.MultiPartitionKey]) -> list[str]:
    """Run the refresh of the given slices and then of what spans slices (tests, benchmarks)."""
    return run_steps(defs, instance, refresh_steps(slices, instance.get_dynamic_partitions(MODEL_PARTITIONS_NAME)))


def materialize_everything(
    instance: dg.DagsterInstance | None = None,
    reporter: StepReporter | None = None,
    steps: Sequence[Step] | None = None,
) -> DemoResult:
    """Run `steps` (default: `demo_steps` of the benchmark config) in-process, in order."""
    cfg = benchmark_config()
    instance = instance or dg.DagsterInstance.get()
    defs = load_definitions()
    register_configured_models(instance, cfg)
    planned = list(steps) if steps is not None else demo_steps(
        cfg, instance.get_dynamic_partitions(MODEL_PARTITIONS_NAME))
    run_ids = run_steps(defs, instance, planned, reporter)
    return DemoResult(warehouse=cfg.warehouse, reports_dir=cfg.reports_dir, run_ids=run_ids)


def run_steps(
    defs: dg.Definitions, instance: dg.DagsterInstance, steps: Sequence[Step], reporter: StepReporter | None = None
) -> list[str]:
    """Run each step, reporting through `reporter`; the first failure raises StepFailed."""
    if reporter is not None:
        reporter.start(steps)
    run_ids = []
    for step in steps:
        with reporter.step(step) if reporter is not None else contextlib.nullcontext():
            run_ids.append(run_step(defs, instance, step, reporter.logger_defs if reporter else None))
    return run_ids


def run_step(
    defs: dg.Definitions, instance: dg.DagsterInstance, step: Step,
    logger_defs: Mapping[str, dg.LoggerDefinition] | None = None,
) -> str:
    """One `execute_in_process` run; `logger_defs` replace the job's loggers (all are enabled)."""
    try:
        job = defs.resolve_job_def(step.job_name)
        run_config: dict = {}
        if logger_defs:
            job = job.with_logger_defs(logger_defs)
            run_config = {"loggers": {name: {} for name in logger_defs}}
        result = job.execute_in_process(
            run_config=run_config, instance=instance, partition_key=step.partition_key, raise_on_error=False,
            tags=step.run_tags,
        )
    except Exception as exc:  # noqa: BLE001 - e.g. an unknown job or invalid config: still this step's failure
        raise StepFailed(step, f"{type(exc).__name__}: {exc}") from exc
    if not result.success:
        raise StepFailed(step, _failure_message(result))
    return result.run_id


def _failure_message(result: dg.ExecuteInProcessResult) -> str:
    """`<asset step>: <innermost error>` for each failed step, else the run's failure message."""
    lines = []
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data is not None:
            error = event.step_failure_data.error
            while error is not None and error.cause is not None:
                error = error.cause  # Dagster wraps user errors; the cause says what went wrong
            lines.append(f"{event.step_key}: {error.message.strip() if error else 'failed'}")
    if not lines:
        lines = [event.message or "run failed" for event in result.all_events if event.is_run_failure]
    return "\n".join(lines) or f"run {result.run_id} failed"


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
