"""Run a dbt command from a Dagster asset, waiting out another process's DuckDB lock.

DuckDB lets one process write a file at a time. When another run holds the warehouse, dbt
fails with "could not set lock"; that invocation is thrown away and run again (tenacity,
`LOCK_RETRY`), so only the final invocation's events reach Dagster. Any other failure raises
`dg.Failure` carrying the end of dbt.log.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import tenacity
from dagster_dbt import DbtCliInvocation, DbtCliResource

LOCK_MESSAGE = "could not set lock"
# 5 tries, 2 s, 4 s, 6 s, 8 s apart: another run's write of a slice is short.
LOCK_TRIES = 5
LOCK_WAIT = tenacity.wait_incrementing(start=2, increment=2)
LOG_TAIL_LINES = 40


@dataclass(frozen=True)
class DbtOutcome:
    """One finished dbt invocation: its Dagster events, success, and the end of its dbt.log."""

    invocation: DbtCliInvocation
    events: list[Any]
    log_tail: str

    @property
    def locked(self) -> bool:
        return not self.invocation.is_successful() and LOCK_MESSAGE in self.log_tail.lower()


def dbt_build(context: dg.AssetExecutionContext, dbt: DbtCliResource, args: list[str]) -> Iterator[Any]:
    """Run `dbt <args>` and yield its events; retried while the warehouse is locked.

    Raises dg.Failure with the tail of dbt.log if the (last) invocation failed.
    """

    def before_sleep(state: tenacity.RetryCallState) -> None:
        context.log.warning(
            f"warehouse locked by another process; retrying `dbt {args[0]}` "
            f"({state.attempt_number}/{LOCK_TRIES})"
        )

    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(LOCK_TRIES),
        wait=LOCK_WAIT,
        retry=tenacity.retry_if_result(lambda outcome: outcome.locked),
        before_sleep=before_sleep,
        retry_error_callback=lambda state: state.outcome.result(),  # still locked: report it below
    )
    outcome: DbtOutcome = retrying(_invoke, context, dbt, args)
    yield from outcome.events
    if not outcome.invocation.is_successful():
        raise dg.Failure(f"`dbt {args[0]}` failed; end of dbt.log:\n{outcome.log_tail}")


def _invoke(context: dg.AssetExecutionContext, dbt: DbtCliResource, args: list[str]) -> DbtOutcome:
    invocation = dbt.cli(args, context=context, raise_on_error=False)
    events = list(invocation.stream())  # held back until we know this try is the one to keep
    return DbtOutcome(invocation, events, _log_tail(invocation.target_path / "dbt.log"))


def _log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        return "\n".join(path.read_text().splitlines()[-lines:])
    except OSError:
        return ""
