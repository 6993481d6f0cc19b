"""Run a dbt command from a Dagster asset, waiting out another process's DuckDB lock.

DuckDB lets one process write a file at a time. When another run holds the warehouse, dbt
fails with "could not set lock"; that invocation is thrown away and run again (tenacity,
`LOCK_RETRY`), so only the final invocation's events reach Dagster. Any other failure raises
`dg.Failure` carrying the end of dbt.log.

Two things keep dbt's partial parsing working across invocations (a full parse costs seconds of
CPU per build): a slice build names its slices in the dbt process's environment (`SLICE_ENV`,
read by dbt/macros/slices.sql at run time) instead of in `--vars`, whose every change makes dbt
re-parse the whole project; and each invocation's saved parse is shared back to
<project>/target/, the file dagster-dbt copies into every new invocation's own target folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
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
# The slices a build is for, as a JSON list; read by dbt/macros/slices.sql. Unset: every slice.
SLICE_ENV = "FER_DBT_SLICE"
PARTIAL_PARSE_FILE = "partial_parse.msgpack"
# os.environ is the only way into dagster-dbt's dbt subprocess; one invocation starts at a time.
_ENV_LOCK = threading.Lock()


@dataclass(frozen=True)
class DbtOutcome:
    """One finished dbt invocation: its Dagster events, success, and the end of its dbt.log."""

    invocation: DbtCliInvocation
    events: list[Any]
    log_tail: str

    @property
    def locked(self) -> bool:
        return not self.invocation.is_successful() and LOCK_MESSAGE in self.log_tail.lower()


def dbt_build(
    context: dg.AssetExecutionContext, dbt: DbtCliResource, args: list[str],
    slices: Sequence[Mapping[str, str]] | None = None,
) -> Iterator[Any]:
    """Run `dbt <args>` (for `slices` only, if given) and yield its events; retried while the
    warehouse is locked.

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
    outcome: DbtOutcome = retrying(_invoke, context, dbt, args, slices)
    yield from outcome.events
    if not outcome.invocation.is_successful():
        raise dg.Failure(f"`dbt {args[0]}` failed; end of dbt.log:\n{outcome.log_tail}")


def _invoke(
    context: dg.AssetExecutionContext, dbt: DbtCliResource, args: list[str],
    slices: Sequence[Mapping[str, str]] | None,
) -> DbtOutcome:
    with slice_environment(slices):
        invocation = dbt.cli(args, context=context, raise_on_error=False)  # the subprocess starts here
    events = list(invocation.stream())  # held back until we know this try is the one to keep
    _share_partial_parse(Path(dbt.project_dir), invocation.target_path)
    return DbtOutcome(invocation, events, _log_tail(invocation.target_path / "dbt.log"))


@contextlib.contextmanager
def slice_environment(slices: Sequence[Mapping[str, str]] | None) -> Iterator[None]:
    """SLICE_ENV set to `slices` (or unset: every slice) while a dbt subprocess is started."""
    with _ENV_LOCK:
        previous = os.environ.pop(SLICE_ENV, None)
        if slices is not None:
            os.environ[SLICE_ENV] = json.dumps([dict(slice_) for slice_ in slices], sort_keys=True)
        try:
            yield
        finally:
            os.environ.pop(SLICE_ENV, None)
            if previous is not None:
                os.environ[SLICE_ENV] = previous


def _share_partial_parse(project_dir: Path, invocation_target: Path) -> None:
    """Publish the invocation's saved parse as <project>/target/partial_parse.msgpack (atomically:
    other processes copy it at any time). dbt checks it before use (file checksums, vars,
    profile), so a parse saved under other settings costs one full parse, never a wrong one."""
    produced = invocation_target / PARTIAL_PARSE_FILE
    shared_dir = Path(os.environ.get("DBT_TARGET_PATH", "target"))  # where dagster-dbt copies from
    shared_dir = shared_dir if shared_dir.is_absolute() else project_dir / shared_dir
    if not produced.is_file() or produced.parent.resolve() == shared_dir.resolve():
        return
    partial = shared_dir / f".{PARTIAL_PARSE_FILE}.{uuid.uuid4().hex}"
    try:
        shutil.copyfile(produced, partial)
        os.replace(partial, shared_dir / PARTIAL_PARSE_FILE)
    except OSError:
        partial.unlink(missing_ok=True)  # only a speed-up: the next invocation parses in full


def _log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        return "\n".join(path.read_text().splitlines()[-lines:])
    except OSError:
        return ""
