"""Start a worker process, wait until a condition holds, then kill -9 it (the kill-and-resume
tests of the API runner): the worker is this test file run as a script."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest


def kill9_when(args: list[str], env: dict[str, str], cwd: Path, ready: Callable[[], bool],
               timeout_s: float = 60.0, poll_s: float = 0.005) -> None:
    """Run `python *args`, SIGKILL it once `ready()` (or after `timeout_s`: a loaded machine
    starts it slowly), and check that the kill is what ended it; a worker that exits on its own
    first fails the test with its stderr."""
    worker = subprocess.Popen([sys.executable, *args], env={**os.environ, **env}, cwd=cwd,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and not ready():
            if worker.poll() is not None:
                pytest.fail(f"worker exited early: {worker.communicate()[1].decode()[-2000:]}")
            time.sleep(poll_s)
        worker.send_signal(signal.SIGKILL)
    finally:
        worker.wait(timeout=10)
    assert worker.returncode == -signal.SIGKILL
