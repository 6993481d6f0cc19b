"""Run a dbt command for an asset, retrying while another process holds the DuckDB lock."""

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DbtCliResource

LOCK_RETRIES = 5


def dbt_build(context: dg.AssetExecutionContext, dbt: DbtCliResource, args: list[str]) -> Iterator[Any]:
    for attempt in range(1, LOCK_RETRIES + 1):
        invocation = dbt.cli(args, context=context, raise_on_error=False)
        events = list(invocation.stream())
        log_tail = _log_tail(invocation.target_path / "dbt.log")
        locked = not invocation.is_successful() and "could not set lock" in log_tail.lower()
        if locked and attempt < LOCK_RETRIES:
            context.log.warning(f"warehouse locked by another process; retrying dbt build ({attempt})")
            time.sleep(2 * attempt)
            continue
        yield from events
        if not invocation.is_successful():
            raise dg.Failure(f"dbt build failed; end of dbt.log:\n{log_tail}")
        return


def _log_tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text().splitlines()[-lines:])
    except OSError:
        return ""
