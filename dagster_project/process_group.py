"""A long-running command (the UI, dbt docs) in a process group of its own, stopped whole."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path

# `dagster dev` alone waits up to 60 s for each of its children after a SIGTERM / SIGINT.
STOP_GRACE_S = 3.0


class _Stop(Exception):
    def __init__(self, signum: int) -> None:
        self.signum = signum


def run_until_signalled(command: list[str], cwd: Path, env: dict[str, str] | None = None,
                        grace_s: float = STOP_GRACE_S) -> int:
    """Run `command` in a process group of its own; a SIGTERM / SIGINT to us stops the whole
    group (the webserver, the daemon, code servers, run workers) within `grace_s` seconds,
    first politely (SIGTERM to every member at once), then with SIGKILL."""

    def stop(signum: int, frame: object) -> None:
        raise _Stop(signum)

    process = subprocess.Popen(command, cwd=cwd, env=env, start_new_session=True)
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        return process.wait()
    except _Stop as stopped:
        _signal_group(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
        _signal_group(process.pid, signal.SIGKILL)  # whatever is left of the group, children too
        process.wait()
        return 128 + stopped.signum
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)
