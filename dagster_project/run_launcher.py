"""The embedded instance's run launcher: Dagster's default one, plus a health check of the run
worker so that run monitoring notices a run whose process died (`kill -9`, an OOM kill, a
machine that lost power) and run retries start it again.

Dagster's `DefaultRunLauncher` cannot tell whether a run's process is alive, so a run killed
that way stays STARTED for ever. Each run worker reports its pid as an engine event when it
starts ("Started process for run (pid: N)."); on this one machine that pid is checked in /proc.
Imported by the webserver and the daemon (dagster.yaml's `run_launcher`): keep it light.
"""

from __future__ import annotations

import os
from pathlib import Path

from dagster import DagsterEventType, DagsterInstance, DagsterRun
from dagster._core.launcher import DefaultRunLauncher
from dagster._core.launcher.base import CheckRunHealthResult, WorkerStatus

# A process that started this long after its run reported the pid is another process (pid reuse).
PID_REUSE_SLACK_S = 5.0


def run_worker_pid(instance: DagsterInstance, run_id: str) -> tuple[int, float] | None:
    """(pid, when it was reported) of the run's worker, from its last "Started process" event."""
    for record in reversed(instance.all_logs(run_id, of_type=DagsterEventType.ENGINE_EVENT)):
        event = record.dagster_event
        metadata = event.engine_event_data.metadata if event and event.engine_event_data else {}
        pid = metadata.get("pid")
        if pid is not None:
            return int(pid.value), record.timestamp
    return None


def _boot_time_s() -> float:
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    raise OSError("/proc/stat has no btime line")


def process_started_at(pid: int) -> float | None:
    """Unix time the process `pid` started, or None when no such process lives (zombies count
    as dead: their work is over)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    if fields[0] in ("Z", "X"):
        return None
    return _boot_time_s() + int(fields[19]) / os.sysconf("SC_CLK_TCK")


def worker_health(reported: tuple[int, float] | None) -> CheckRunHealthResult:
    if reported is None:  # the worker has not reported yet: nothing to say against it
        return CheckRunHealthResult(WorkerStatus.RUNNING, "run worker has not reported its pid yet")
    pid, reported_at = reported
    started_at = process_started_at(pid)
    if started_at is None:
        return CheckRunHealthResult(WorkerStatus.FAILED, f"run worker process {pid} is gone (killed or crashed)")
    if started_at > reported_at + PID_REUSE_SLACK_S:
        return CheckRunHealthResult(WorkerStatus.FAILED,
                                    f"run worker process {pid} is gone (pid {pid} now belongs to a newer process)")
    return CheckRunHealthResult(WorkerStatus.RUNNING, f"run worker process {pid} is alive")


class MonitoredRunLauncher(DefaultRunLauncher):
    """`DefaultRunLauncher` whose run workers run monitoring can check (single machine)."""

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        return worker_health(run_worker_pid(self._instance, run.run_id))
