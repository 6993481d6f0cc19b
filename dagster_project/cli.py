"""`fer-warehouse`: run the demo, start the UI, query the warehouse.

    fer-warehouse demo            obtain data and models, materialize every asset
    fer-warehouse ui [--port N]   start the Dagster UI on 127.0.0.1
    fer-warehouse sql [-c SQL]    ad hoc SQL on a snapshot of the warehouse
    fer-warehouse dry-run         calls, tokens and cost each model x dataset partition would
                                  take (VLMs), without calling or writing anything
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

from dagster_project.settings import REPO_ROOT

DAGSTER_YAML = """\
# Written by fer-warehouse. Runs launched from the UI queue here; DuckDB has one writer at a
# time and each run holds the file only briefly, so two concurrent runs are plenty.
run_coordinator:
  module: dagster.core.run_coordinator
  class: QueuedRunCoordinator
  config:
    max_concurrent_runs: 2
telemetry:
  enabled: false
# Loading the code location takes ~15 s of CPU; on a busy machine the default 180 s can pass.
code_servers:
  local_startup_timeout: 600
"""


def dagster_home() -> Path:
    """$DAGSTER_HOME, defaulting to data/dagster_home so the UI sees the demo's runs."""
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(REPO_ROOT / "data" / "dagster_home")))
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(DAGSTER_YAML)
    return home


def cmd_demo(args: argparse.Namespace) -> int:
    from dagster_project.demo_progress import DemoProgress, demo_log_path
    from dagster_project.settings import benchmark_config

    dagster_home()
    log_path = demo_log_path(benchmark_config().reports_dir.parent / "logs")
    with DemoProgress(log_path) as progress:
        # imported here so that import-time warnings of Dagster and the libraries go to the log
        from dagster_project.orchestration import StepFailed, materialize_everything, summary_table

        try:
            result = materialize_everything(reporter=progress)
        except StepFailed:
            return 1  # the reporter printed the step, its error and the log path
        progress.finished()
        table = summary_table(result.warehouse)
    print(table)
    print(f"\nfigures: {result.reports_dir}\nwarehouse: {result.warehouse}\nfull log: {log_path}")
    print("query it with: make sql   (or .venv/bin/fer-warehouse sql -c 'select ...')")
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    import dagster as dg

    from dagster_project.defs.partitions import register_configured_models
    from dagster_project.settings import benchmark_config

    dagster_home()
    register_configured_models(dg.DagsterInstance.get(), benchmark_config())
    # `dg dev` (Dagster's recommended CLI) reads the project from pyproject.toml's [tool.dg]:
    # the code location `fer_bias_warehouse`, served from this virtual environment.
    # Warnings and errors only: at INFO the daemon logs every sensor tick (thousands of lines a day).
    command = [str(Path(sys.executable).with_name("dg")), "dev", "--host", "127.0.0.1", "--port", str(args.port),
               "--log-level", "warning"]
    # dg checks that the project's .venv is the active one: it is (we run from it), say so
    env = {**os.environ, "VIRTUAL_ENV": sys.prefix}
    print(f"Dagster UI on http://127.0.0.1:{args.port} (code location fer_bias_warehouse); Ctrl-C stops it",
          flush=True)
    return run_until_signalled(command, cwd=REPO_ROOT, env=env)


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


def cmd_sql(args: argparse.Namespace) -> int:
    from dagster_project.sql_shell import run_sql

    return run_sql(query=args.command, csv=args.csv)


def cmd_dry_run(args: argparse.Namespace) -> int:
    import pandas as pd

    from dagster_project.settings import benchmark_config
    from inference.config import load_config
    from inference.planning import plan_benchmark

    bench = load_config(args.config) if args.config else benchmark_config()
    rows = plan_benchmark(bench)
    columns = ["model", "kind", "dataset", "protocol", "n_images", "expected_calls", "max_calls",
               "projected_input_tokens", "projected_output_tokens", "projected_cost_usd", "note"]
    frame = pd.DataFrame(rows).reindex(columns=columns)
    frame["n_images"] = frame["n_images"].astype("Int64")
    print(f"Dry run of {bench.path} (nothing is called or written). Calls: one per protocol step "
          f"and sample (expected) or with every retry of invalid answers (max); input tokens "
          f"~4 characters per token + 800 per image; output tokens: the max_tokens budget "
          f"(an upper bound); cost at price_per_million_tokens.\n")
    print(frame.astype(object).where(frame.notna(), "").to_string(index=False))
    priced = pd.to_numeric(frame["projected_cost_usd"], errors="coerce").fillna(0.0)
    print(f"\ntotal: {int(frame['expected_calls'].sum())} calls expected "
          f"(at most {int(frame['max_calls'].sum())}), ~{int(frame['projected_input_tokens'].sum())} input "
          f"tokens, <= {int(frame['projected_output_tokens'].sum())} output tokens, ~${priced.sum():.2f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fer-warehouse", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command_name", required=True)
    sub.add_parser("demo", help="obtain datasets and models, materialize every asset").set_defaults(func=cmd_demo)
    ui = sub.add_parser("ui", help="start the Dagster UI on 127.0.0.1")
    ui.add_argument("--port", type=int, default=3000)
    ui.set_defaults(func=cmd_ui)
    sql = sub.add_parser("sql", help="ad hoc SQL on a snapshot of the warehouse (never blocks a run)")
    sql.add_argument("-c", "--command", help="run one statement and exit (otherwise interactive)")
    sql.add_argument("--csv", action="store_true", help="print results as CSV")
    sql.set_defaults(func=cmd_sql)
    dry = sub.add_parser("dry-run", help="calls, tokens and cost per model x dataset partition; calls nothing")
    dry.add_argument("--config", help="benchmark file (default: $FER_CONFIG or ./benchmark.yaml)")
    dry.set_defaults(func=cmd_dry_run)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except Exception as exc:  # noqa: BLE001 - the CLI turns known errors into one clear line
        from inference.config import ConfigError
        from inference.download import DownloadError
        from inference.models.vlm import ExternalAPIError

        if isinstance(exc, ConfigError | DownloadError | FileNotFoundError | ExternalAPIError):
            print(f"error: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
