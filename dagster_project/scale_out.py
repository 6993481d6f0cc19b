"""Fan partitions out through the Dagster instance's run launcher: one run per partition.

With `deploy/dagster.yaml` the launcher is dagster-celery's `CeleryRunLauncher`: each run becomes a
task on a Celery queue and executes in a worker process (on any machine that reaches the broker,
the Postgres instance and the slice store). On Kubernetes the same runs go to `K8sRunLauncher`
(see deploy/helm-values.yaml). Nothing here executes a step: Dagster's launchers and executors do.

Per-provider pools: a run of a model that spends an API account's quota carries the tag
`dagster-celery/queue = fer.<provider>` (provider as in `inference.vlm.run_tags`), so its run
waits on that provider's queue; the workers consuming it (`--concurrency N` in total) are the
account's pool, and fan-out never runs more of its partitions at once than that. Local kinds go
to the default queue `dagster`. The same runs carry `fer/provider`, which the instance's run
queue also caps (`tag_concurrency_limits` in deploy/dagster.yaml) when runs are submitted
through the daemon (UI backfills, sensors).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import dagster as dg
from dagster._core.definitions.reconstruct import ReconstructableRepository
from dagster._core.execution.api import create_execution_plan

from dagster_project.defs.partitions import MODEL_DIMENSION
from dagster_project.settings import REPO_ROOT, benchmark_config
from inference.config import BenchmarkConfig, ModelConfig
from inference.vlm.run_tags import PROVIDER_TAG, provider_run_tags

DEFINITIONS_MODULE = "dagster_project.definitions"
CELERY_QUEUE_TAG = "dagster-celery/queue"  # dagster_celery.tags.DAGSTER_CELERY_QUEUE_TAG
DEFAULT_QUEUE = "dagster"
FINISHED = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}


def provider_queue_tags(cfg: ModelConfig) -> dict[str, str]:
    """`fer/provider` and the Celery queue of the provider's pool; {} for local kinds."""
    tags = provider_run_tags(cfg)
    return {**tags, CELERY_QUEUE_TAG: f"fer.{tags[PROVIDER_TAG]}"} if tags else {}


def launch_partition_runs(instance: dg.DagsterInstance, job_name: str, partition_keys: Sequence[str],
                          submit: bool = False) -> list[str]:
    """Create one run of `job_name` per partition key and hand each to the instance's run launcher
    (`submit`: to its run queue instead, where the daemon applies the `fer/provider` limits);
    returns the run ids (the runs go on in the workers)."""
    recon_job = ReconstructableRepository.for_module(
        DEFINITIONS_MODULE, "defs", working_directory=str(REPO_ROOT)).get_reconstructable_job(job_name)
    job_def = recon_job.get_definition()
    bench = benchmark_config()
    run_ids = []
    for key in partition_keys:
        tags = partition_run_tags(job_def, key, bench)
        run_config = in_process_run_config(job_def)
        plan = create_execution_plan(recon_job, run_config=run_config, instance_ref=instance.get_ref(), tags=tags)
        run = instance.create_run_for_job(job_def=job_def, execution_plan=plan, run_config=run_config, tags=tags,
                                          job_code_origin=recon_job.get_python_origin())
        if submit:
            instance.submit_run(run.run_id, workspace=None)  # type: ignore[arg-type] - the queue needs none
        else:
            instance.launch_run(run.run_id, workspace=None)  # type: ignore[arg-type] - launchers that need none
        run_ids.append(run.run_id)
    return run_ids


def in_process_run_config(job_def: dg.JobDefinition) -> dict:
    """Run the steps inside the worker that took the run (one partition is one step): with Dagster's
    default executor, the choice `in_process` saves a step subprocess per run. Other executors
    (a job configured with its own) keep their configuration."""
    if job_def.executor_def.name == dg.multi_or_in_process_executor.name:
        return {"execution": {"config": {"in_process": {}}}}
    return {}


def partition_run_tags(job_def: dg.JobDefinition, key: str, bench: BenchmarkConfig) -> dict[str, str]:
    """The partition's own tags, plus its provider's queue when the partition's model calls an API."""
    tags = dict(job_def.get_tags_for_partition_key(key, None))
    model_key = _model_key(job_def, key)
    if model_key:
        tags.update(provider_queue_tags(bench.model_for_partition(model_key)))
    return tags


def _model_key(job_def: dg.JobDefinition, key: str) -> str | None:
    """The "<model>@<version>" of a model version x dataset partition key; None for other jobs."""
    partitions_def = job_def.partitions_def
    if not isinstance(partitions_def, dg.MultiPartitionsDefinition):
        return None
    return partitions_def.get_partition_key_from_str(key).keys_by_dimension.get(MODEL_DIMENSION)


def wait_for_runs(instance: dg.DagsterInstance, run_ids: Sequence[str], timeout_s: float = 600.0,
                  poll_s: float = 0.5) -> dict[str, dg.DagsterRunStatus]:
    """Poll until every run has finished (or `timeout_s` passed); returns each run's status."""
    deadline = time.monotonic() + timeout_s
    while True:
        statuses = {run_id: instance.get_run_by_id(run_id).status for run_id in run_ids}
        if set(statuses.values()) <= FINISHED or time.monotonic() > deadline:
            return statuses
        time.sleep(poll_s)
