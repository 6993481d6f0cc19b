"""Another process holding a DuckDB file's write lock, as a long materialization or dbt build does."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HOLD = ("import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('locked', flush=True); "
        "time.sleep(float(sys.argv[2])); c.close()")


def hold_write_lock(path: Path, seconds: float) -> subprocess.Popen:
    """Start a process that holds `path`'s write lock for `seconds`, then exits 0; returns once
    the lock is held."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(path), str(seconds)], stdout=subprocess.PIPE, text=True)
    line = holder.stdout.readline().strip()
    if line != "locked":
        holder.kill()
        raise RuntimeError(f"the lock holder did not take {path}'s lock (it printed {line!r})")
    return holder
