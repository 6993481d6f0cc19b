"""The demo's terminal output: a line per step, the failing step's error, the log file path.

Real Dagster runs of two small jobs (no project assets, so this stays fast): everything a run
prints (Dagster DEBUG events, stdout of the op, warnings) must reach the log file, not the
terminal.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import dagster as dg

from dagster_project.demo_progress import demo_log_path
from dagster_project.orchestration import Step

REPO_ROOT = Path(__file__).resolve().parents[1]

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


# Each run happens in a child process whose real stdout and stderr are what the demo "leaks":
# the demo moves file descriptors 1 and 2, which must not meet pytest's own capture (nor the
# state TensorFlow's import leaves in a worker that ran the Keras tests before).
CHILD = """
import dataclasses, io, json, sys
import dagster as dg
from rich.console import Console
from dagster_project.demo_progress import DemoProgress
from dagster_project.orchestration import Step, StepFailed, run_steps
from tests.test_demo_progress import DEFS
steps = [Step(**s) for s in json.loads(sys.argv[1])]
terminal = io.StringIO()
failed = None
with dg.instance_for_test() as instance, DemoProgress(sys.argv[2], Console(file=terminal, width=120)) as progress:
    try:
        run_steps(DEFS, instance, steps, progress)
    except StepFailed as exc:
        failed = [steps.index(exc.step), str(exc)]
print("back on the terminal")  # the descriptors are restored after the demo
with open(sys.argv[3], "w") as f:
    json.dump({"out": terminal.getvalue(), "failed": failed}, f)
"""


@dataclasses.dataclass
class Leaked:
    out: str
    err: str


def _run(tmp_path, steps):
    """(terminal text, log path, what reached the real stdout/stderr, (failed step, message) or None)."""
    log_path = demo_log_path(tmp_path / "logs")
    result = tmp_path / "result.json"
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps([dataclasses.asdict(s) for s in steps]), str(log_path), str(result)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "PYTHONWARNINGS": "default"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    outcome = json.loads(result.read_text())
    failed = (steps[outcome["failed"][0]], outcome["failed"][1]) if outcome["failed"] else None
    out = proc.stdout.removesuffix("back on the terminal\n")
    assert proc.stdout.endswith("back on the terminal\n"), proc.stdout
    return outcome["out"], log_path, Leaked(out, proc.stderr), failed


def test_success_prints_one_line_per_step_and_logs_the_rest(tmp_path):
    out, log_path, leaked, failed = _run(tmp_path, STEPS)
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


def test_failure_names_the_step_its_error_and_the_log(tmp_path):
    steps = [STEPS[0], Step("load the weights", "broken_job"), STEPS[1]]
    out, log_path, leaked, failed = _run(tmp_path, steps)
    log = log_path.read_text()
    assert failed is not None and failed[0] == steps[1]
    lines = out.splitlines()
    assert lines[1].startswith("✓ [1/3] paint red")
    assert lines[2].startswith("✗ [2/3] load the weights  failed")
    assert "broken: ValueError: the weights file is missing: put it at /models/x.hdf5" in out
    assert lines[-1] == f"  full log: {log_path}"
    assert "paint green" not in out  # the demo stops at the first failure
    assert "STEP_FAILURE" in log and "Stack Trace" in log  # the whole error stays in the log
    assert leaked.out == leaked.err == ""


def test_unknown_job_is_a_step_failure(tmp_path):
    out, _, _, failed = _run(tmp_path, [Step("typo", "no_such_job")])
    assert failed is not None
    assert "✗ [1/1] typo" in out and "no_such_job" in out


def test_log_file_name_carries_the_time(tmp_path):
    import datetime as dt

    assert demo_log_path(tmp_path, dt.datetime(2026, 1, 2, 3, 4, 5)).name == "demo-20260102-030405.log"


def test_fds_are_restored(tmp_path):
    # the child prints after the demo; _run checks that it reached the real stdout
    _, _, leaked, _ = _run(tmp_path, STEPS[:1])
    assert leaked.out == ""
