"""The embedded instance notices a run whose worker process died: `MonitoredRunLauncher` checks
the pid the run worker reported (Dagster's default launcher cannot), run monitoring marks the
run failed and run retries start it again (tests/journeys/test_ui_killed_mid_evaluation.py
drives the whole path from outside)."""

from __future__ import annotations

import subprocess
import sys
import time

import dagster as dg
from dagster._core.instance.ref import InstanceRef
from dagster._core.launcher.base import WorkerStatus

from dagster_project.cli import DAGSTER_YAML
from dagster_project.run_launcher import MonitoredRunLauncher, process_started_at, worker_health


def test_a_live_worker_is_running_and_a_killed_one_failed() -> None:
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    reported_at = time.time()
    try:
        assert worker_health((worker.pid, reported_at)).status == WorkerStatus.RUNNING
    finally:
        worker.kill()
        worker.wait()
    health = worker_health((worker.pid, reported_at))
    assert health.status == WorkerStatus.FAILED and str(worker.pid) in health.msg


def test_a_reused_pid_is_not_taken_for_the_worker() -> None:
    # this process started long before a worker that "reported" its pid just now
    import os

    started = process_started_at(os.getpid())
    assert started is not None and started <= time.time()
    assert worker_health((os.getpid(), started - 3600)).status == WorkerStatus.FAILED
    assert worker_health((os.getpid(), time.time())).status == WorkerStatus.RUNNING


def test_a_worker_that_has_not_reported_is_left_alone() -> None:
    assert worker_health(None).status == WorkerStatus.RUNNING


def test_the_embedded_instance_monitors_and_retries_runs(tmp_path) -> None:
    (tmp_path / "dagster.yaml").write_text(DAGSTER_YAML)
    instance = dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(tmp_path)))
    try:
        assert isinstance(instance.run_launcher, MonitoredRunLauncher)
        assert instance.run_launcher.supports_check_run_worker_health
        assert instance.run_monitoring_enabled and instance.run_monitoring_max_resume_run_attempts == 0
        assert instance.run_retries_enabled and instance.run_retries_max_retries >= 1
    finally:
        instance.dispose()
