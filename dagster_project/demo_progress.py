"""What `fer-warehouse demo` shows a person: one line per step, a progress bar, a log file.

While a `DemoProgress` is open, everything a run would print goes to one log file instead of
the terminal:

- Dagster's event log, through the `event_log_file` logger that replaces the job's default
  console logger (`logger_defs`; Dagster instantiates only loggers named in the run config);
- what is written to file descriptors 1 and 2 (dbt's output, which dagster-dbt writes to
  stdout, library warnings, C extensions): both point at the log file; Dagster's compute-log
  capture still tees a step's output to its own files, so the UI keeps it.

The person sees only `console`: a header naming the log file, a line per finished step, a
transient bar while a step runs (naming the asset being computed), and, on failure, the
failing step, its error and the log path.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import sys
import time
import traceback
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING

import dagster as dg
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

if TYPE_CHECKING:
    from dagster_project.orchestration import Step

LOGGER_NAME = "event_log_file"
ERROR_LINES = 15  # of a failing step's error on the terminal; the log has all of it
_FORMAT = "%(asctime)s - %(levelname)s - %(message)s"


def demo_log_path(log_dir: Path, now: dt.datetime | None = None) -> Path:
    """`<log_dir>/demo-<YYYYmmdd-HHMMSS>.log`."""
    return Path(log_dir) / f"demo-{(now or dt.datetime.now()):%Y%m%d-%H%M%S}.log"


class _StepStarts(logging.Handler):
    """Names the asset step being computed in the progress bar (from STEP_START events)."""

    def __init__(self, progress: DemoProgress) -> None:
        super().__init__(level=logging.DEBUG)
        self._progress = progress

    def emit(self, record: logging.LogRecord) -> None:
        meta = getattr(record, "dagster_meta", None) or {}
        event = meta.get("dagster_event")
        if event is not None and event.event_type_value == dg.DagsterEventType.STEP_START.value:
            self._progress.show_activity(str(meta.get("step_key") or ""))


class DemoProgress:
    """Context manager: the terminal reporter of `orchestration.run_steps` (a StepReporter)."""

    def __init__(self, log_path: Path, console: Console | None = None) -> None:
        self.log_path = Path(log_path)
        self._given_console = console
        self.console: Console
        self._log: IO[str] | None = None
        self._saved_fds: dict[int, int] = {}
        self._saved_streams: tuple[IO[str], IO[str]] | None = None
        self._terminal: IO[str] | None = None  # our copy of the real stdout, for the console
        self._warnings_state: tuple[logging.Handler, bool] | None = None
        self._bar: Progress | None = None
        self._task = None
        self._steps: Sequence[Step] = ()
        self._done = 0
        self._label = ""
        self._started = time.monotonic()
        self._events = logging.Logger("dagster", level=logging.DEBUG)  # not in logging's tree

    # -- context ---------------------------------------------------------------------------

    def __enter__(self) -> DemoProgress:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "a", buffering=1, encoding="utf-8")
        file_handler = logging.StreamHandler(self._log)
        file_handler.setFormatter(logging.Formatter(_FORMAT))
        self._events.addHandler(file_handler)
        self._events.addHandler(_StepStarts(self))
        self._capture_warnings(file_handler)
        self._redirect_fds()
        if self.console.is_terminal:  # a bar in a pipe or CI log would only add lines
            self._bar = Progress(
                SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TimeElapsedColumn(), console=self.console, transient=True,
            )
            self._bar.start()
        self._started = time.monotonic()
        self.say(f"Full log (Dagster events, dbt output, warnings): {self.log_path}")
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._bar is not None:
            self._bar.stop()
        if exc is not None and self._log is not None:
            self._log.write("".join(traceback.format_exception(exc_type, exc, tb)))
        self._restore_fds()
        self._release_warnings()
        for handler in list(self._events.handlers):
            self._events.removeHandler(handler)
        if self._log is not None:
            self._log.close()

    def _capture_warnings(self, handler: logging.Handler) -> None:
        """Python warnings (Dagster's beta/deprecation notices, libraries') into the log only."""
        logging.captureWarnings(True)
        py_warnings = logging.getLogger("py.warnings")
        self._warnings_state = (handler, py_warnings.propagate)
        py_warnings.addHandler(handler)
        py_warnings.propagate = False

    def _release_warnings(self) -> None:
        if self._warnings_state is None:
            return
        handler, propagate = self._warnings_state
        self._warnings_state = None
        py_warnings = logging.getLogger("py.warnings")
        py_warnings.removeHandler(handler)
        py_warnings.propagate = propagate
        logging.captureWarnings(False)

    def _redirect_fds(self) -> None:
        """Point fds 1 and 2 at the log file; the console keeps a copy of the real stdout."""
        assert self._log is not None
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        self._saved_fds = {fd: os.dup(fd) for fd in (1, 2)}
        if self._given_console is not None:
            self.console = self._given_console
        else:
            self._terminal = os.fdopen(os.dup(self._saved_fds[1]), "w", buffering=1, encoding="utf-8")
            self.console = Console(file=self._terminal)
        for fd in (1, 2):
            os.dup2(self._log.fileno(), fd)
        # sys.stdout may not write to fd 1 (pytest, IDEs); make it, so Dagster's capture sees it
        self._saved_streams = (sys.stdout, sys.stderr)
        sys.stdout = open(1, "w", buffering=1, encoding="utf-8", closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", buffering=1, encoding="utf-8", closefd=False)  # noqa: SIM115

    def _restore_fds(self) -> None:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(ValueError, OSError):
                stream.flush()
        if self._saved_streams is not None:
            sys.stdout, sys.stderr = self._saved_streams
            self._saved_streams = None
        for fd, saved in self._saved_fds.items():
            os.dup2(saved, fd)
            os.close(saved)
        self._saved_fds = {}
        if self._terminal is not None:
            self._terminal.close()
            self._terminal = None

    # -- StepReporter ------------------------------------------------------------------------

    @property
    def logger_defs(self) -> Mapping[str, dg.LoggerDefinition]:
        """Replaces the job's console logger: every Dagster event, DEBUG included, to the log."""
        return {LOGGER_NAME: dg.LoggerDefinition(
            lambda _init: self._events, description="the demo's log file")}

    def start(self, steps: Sequence[Step]) -> None:
        self._steps, self._done = list(steps), 0
        if self._bar is not None:
            self._task = self._bar.add_task("starting", total=len(self._steps))

    @contextlib.contextmanager
    def step(self, step: Step) -> Iterator[None]:
        """Report one step: a line when it finished, or its error and the log path."""
        self._label = f"[{self._done + 1}/{len(self._steps)}] {step.label}"
        self.show_activity("")
        self._events.info(f"=== demo step {self._label} (job {step.job_name}, partition {step.partition_key or step.partition_range})")
        began = time.monotonic()
        try:
            yield
        except Exception as exc:
            self.say(f"✗ {self._label}  failed after {time.monotonic() - began:.1f} s")
            lines = str(exc).strip().splitlines() or [type(exc).__name__]
            if len(lines) > ERROR_LINES:
                lines = [*lines[:ERROR_LINES], "… (the rest is in the log)"]
            self.say("\n".join(f"  {line}" for line in lines))
            self.say(f"  full log: {self.log_path}")
            self._events.error(f"demo step {self._label} failed:\n{exc}")
            raise
        self._done += 1
        self.say(f"✓ {self._label}  {time.monotonic() - began:.1f} s")
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, completed=self._done)

    def finished(self) -> None:
        self.say(f"All {self._done} steps done in {time.monotonic() - self._started:.0f} s.")

    # -- output ------------------------------------------------------------------------------

    def say(self, text: str) -> None:
        """One or more lines on the terminal (above the bar), copied into the log."""
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)
        if self._log is not None and not self._log.closed:
            self._log.write(f"[demo] {text}\n")

    def show_activity(self, activity: str) -> None:
        if self._bar is not None and self._task is not None:
            suffix = f": {activity}" if activity else ""
            self._bar.update(self._task, description=f"{self._label}{suffix}")
