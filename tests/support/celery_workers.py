"""Celery workers in processes of their own, for the scale-out tests and the fan-out journey:
started on the queues given, stopped (SIGTERM, then SIGKILL after 30 s) however the test ends.
Imports nothing of the product, so journeys may use it."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

STOP_GRACE_S = 30


@contextmanager
def celery_workers(count: int, queues: str, *, name: str, cwd: Path, env: dict[str, str],
                   log_dir: Path) -> Iterator[list[Path]]:
    """`count` single-threaded workers of dagster_celery's app on `queues` (comma-separated),
    each logging to log_dir/worker<i>.log; yields the log paths."""
    log_paths = [log_dir / f"worker{i}.log" for i in range(count)]
    logs = [path.open("w") for path in log_paths]
    workers = [subprocess.Popen(
        [sys.executable, "-m", "celery", "--app", "dagster_celery.app", "worker", "--queues", queues,
         "--pool", "threads", "--concurrency", "1", "--hostname", f"{name}{i}-{uuid.uuid4().hex[:6]}@%h",
         "--include", "dagster_project.definitions", "--without-gossip", "--without-mingle", "--loglevel", "INFO"],
        cwd=cwd, env=env, stdout=log, stderr=log) for i, log in enumerate(logs)]
    try:
        yield log_paths
    finally:
        for worker in workers:
            worker.terminate()
        for worker, log in zip(workers, logs):
            try:
                worker.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                worker.kill()
            log.close()
