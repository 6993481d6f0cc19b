"""The demo's terminal output: a line per step, the failing step's error, the log file path.

Real Dagster runs of two small jobs (no project assets, so this stays fast): everything a run
prints (Dagster DEBUG events, stdout of the op, warnings) must reach the log file, not the
terminal.
"""

from __future__ import annotations

import io
import warnings

import dagster as dg
from rich.console import Console

from dagster_project.demo_progress import DemoProgress, demo_log_path
from dagster_project.orchestration import Step, StepFailed, run_steps

colours = dg.StaticPartitionsDefinition(["red", "green"])


@dg.asset(partitions_def=colours)
def noisy(context) -> None:
    print("chatter on stdout from inside an asset")
    warnings.warn("a notice nobody running the demo can act on", UserWarning, stacklevel=1)
    context.log.info(f"computed {context.partition_key}")


@dg.asset
def broken() -> None:
    raise ValueError("the weights file is missing: put it at /models/x.hdf5")


DEFS = dg.Definitions(
    assets=[noisy, broken],
    jobs=[dg.define_asset_job("noisy_job", [noisy]),
          dg.define_asset_job("broken_job", [broken])],
)
STEPS = [Step("paint red", "noisy_job", "red"), Step("paint green", "noisy_job", "green")]


def _run(tmp_path, steps, capfd):
    terminal = io.StringIO()
    log_path = demo_log_path(tmp_path / "logs")
    with dg.instance_for_test() as instance, DemoProgress(log_path, Console(file=terminal, width=120)) as progress:
        try:
            run_steps(DEFS, instance, steps, progress)
            failed = None
        except StepFailed as exc:
            failed = exc
    leaked = capfd.readouterr()
    return terminal.getvalue(), log_path, leaked, failed


def test_success_prints_one_line_per_step_and_logs_the_rest(tmp_path, capfd):
    out, log_path, leaked, failed = _run(tmp_path, STEPS, capfd)
    log = log_path.read_text()
    assert failed is None
    lines = out.splitlines()
    assert len(lines) == 1 + len(STEPS), out  # the log path, then one line per step
    assert lines[0].endswith(str(log_path))
    assert lines[1].startswith("✓ [1/2] paint red") and lines[2].startswith("✓ [2/2] paint green")
    # the noise went to the log file, none of it to the real stdout/stderr
    for text in ("STEP_START", "DEBUG", "chatter on stdout", "a notice nobody", "computed green"):
        assert text in log and text not in out
    assert "chatter" not in leaked.out + leaked.err and "DEBUG" not in leaked.out + leaked.err


def test_failure_names_the_step_its_error_and_the_log(tmp_path, capfd):
    steps = [STEPS[0], Step("load the weights", "broken_job"), STEPS[1]]
    out, log_path, leaked, failed = _run(tmp_path, steps, capfd)
    log = log_path.read_text()
    assert isinstance(failed, StepFailed) and failed.step == steps[1]
    lines = out.splitlines()
    assert lines[1].startswith("✓ [1/3] paint red")
    assert lines[2].startswith("✗ [2/3] load the weights  failed")
    assert "broken: ValueError: the weights file is missing: put it at /models/x.hdf5" in out
    assert lines[-1] == f"  full log: {log_path}"
    assert "paint green" not in out  # the demo stops at the first failure
    assert "STEP_FAILURE" in log and "Stack Trace" in log  # the whole error stays in the log
    assert leaked.out == leaked.err == ""


def test_unknown_job_is_a_step_failure(tmp_path, capfd):
    out, _, _, failed = _run(tmp_path, [Step("typo", "no_such_job")], capfd)
    assert isinstance(failed, StepFailed)
    assert "✗ [1/1] typo" in out and "no_such_job" in out


def test_log_file_name_carries_the_time(tmp_path):
    import datetime as dt

    assert demo_log_path(tmp_path, dt.datetime(2026, 1, 2, 3, 4, 5)).name == "demo-20260102-030405.log"


def test_fds_are_restored(tmp_path, capfd):
    _run(tmp_path, STEPS[:1], capfd)
    print("back on the terminal")
    assert capfd.readouterr().out == "back on the terminal\n"
