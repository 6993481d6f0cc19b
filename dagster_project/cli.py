"""`fer-warehouse`: run the demo, start the UI, query the warehouse.

    fer-warehouse demo            obtain data and models, materialize every asset
    fer-warehouse ui [--port N]   start the Dagster UI on 127.0.0.1
    fer-warehouse sql [-c SQL]    ad hoc SQL on a snapshot of the warehouse
    fer-warehouse plan            per dataset x grouping x emotion: n and the smallest detectable
                                  error-rate ratio (80 % power, family-corrected), cost beside it
    fer-warehouse dry-run         calls, tokens and cost each model x dataset partition would
                                  take (VLMs), without calling or writing anything
    fer-warehouse fan-out         one run per partition through the instance's run launcher
                                  (Celery workers: docs/scaling-out.md)
    fer-warehouse report [--out F] one self-contained HTML report of the warehouse (tables,
                                  figures, method notes); default <reports_dir>/report.html;
                                  --max-rows / --inline-mb: how much of it is inline
    fer-warehouse export TABLE    a papers.*, marts.* or stats.* table as CSV or LaTeX (booktabs;
                                  papers.* in the paper's own grid)
    fer-warehouse docs [--port N] dbt docs of the warehouse (every model, source, column; lineage
                                  graph), generated from a snapshot and served on 127.0.0.1
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from dagster_project.process_group import run_until_signalled
from dagster_project.settings import REPO_ROOT

DAGSTER_YAML = """\
# Written by fer-warehouse. Runs launched from the UI queue here; DuckDB has one writer at a
# time and each run holds the file only briefly, so two concurrent runs are plenty.
run_coordinator:
  module: dagster.core.run_coordinator
  class: QueuedRunCoordinator
  config:
    max_concurrent_runs: 2
    # The daemon looks at the queue every 5 s by default: up to 5 s between a click on
    # Materialize and the run's start; 1 s costs nothing measurable.
    dequeue_interval_seconds: 1
# A run whose process dies (kill -9, out of memory) is noticed within ~10 s by run monitoring
# (the launcher checks the run worker's pid; Dagster's default launcher cannot) and marked failed;
# run retries then start it again (up to twice), from the step that did not finish. Only runs
# that failed that way are retried: a step that raised fails for a reason a retry would repeat.
# An evaluation retried this way asks the provider only what its response cache lacks.
run_launcher:
  module: dagster_project.run_launcher
  class: MonitoredRunLauncher
run_monitoring:
  enabled: true
  poll_interval_seconds: 10
  start_timeout_seconds: 600
  max_resume_run_attempts: 0
run_retries:
  enabled: true
  max_retries: 2
  retry_on_asset_or_op_failure: false
telemetry:
  enabled: false
# Loading the code location takes ~3.5 s of CPU, far longer on a busy machine; the default
# 180 s can pass.
code_servers:
  local_startup_timeout: 600
"""


WRITTEN_MARK = "# Written by fer-warehouse"


def dagster_home(instance_yaml: Path | None = None) -> Path:
    """$DAGSTER_HOME, defaulting to data/dagster_home so the UI sees the demo's runs.

    Its dagster.yaml is written when missing: a copy of `instance_yaml` (the config's
    `dagster_instance:`, e.g. deploy/dagster.yaml) or the embedded default. A copy that
    fer-warehouse wrote is refreshed from `instance_yaml`; a file written by hand is never touched.
    """
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(REPO_ROOT / "data" / "dagster_home")))
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if instance_yaml is not None:
        if not config.exists() or config.read_text().startswith(WRITTEN_MARK):
            config.write_text(f"{WRITTEN_MARK} from {instance_yaml}: edit that file, not this copy.\n"
                              + instance_yaml.read_text())
    elif not config.exists() or _older_embedded_default(config.read_text()):
        config.write_text(DAGSTER_YAML)
    return home


def _older_embedded_default(text: str) -> bool:
    """An embedded default written by an earlier fer-warehouse (replaced, so new defaults reach
    existing homes); not a copy of a configured instance file (`... from <path>`), which is kept
    for users who point DAGSTER_HOME at it."""
    return text.startswith(f"{WRITTEN_MARK}.") and text != DAGSTER_YAML


def configured_dagster_home() -> Path:
    from dagster_project.settings import benchmark_config

    return dagster_home(benchmark_config().dagster_instance)


def cmd_demo(args: argparse.Namespace) -> int:
    from dagster_project.demo_progress import DemoProgress, demo_log_path
    from dagster_project.settings import benchmark_config

    configured_dagster_home()
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
    from dagster_project.reporting import report_path

    print(table)
    print(f"\nreport: {report_path(benchmark_config())} (open it in a browser; works offline)")
    print(f"figures: {result.reports_dir}\nwarehouse: {result.warehouse}\nfull log: {log_path}")
    print("query it with: make sql   (or .venv/bin/fer-warehouse sql -c 'select ...')")
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    import dagster as dg

    from dagster_project.defs.partitions import register_configured_models
    from dagster_project.settings import benchmark_config

    configured_dagster_home()
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
               "projected_input_tokens", "projected_output_tokens", "delivery", "projected_cost_usd",
               "cost_standard_usd", "cost_flex_usd", "cost_batch_usd", "budget_usd", "note"]
    frame = pd.DataFrame(rows).reindex(columns=columns)
    frame["n_images"] = frame["n_images"].astype("Int64")
    print(f"Dry run of {bench.path} (nothing is called or written). Calls: one per protocol step "
          f"and sample (expected) or with every retry of invalid answers (max); input tokens "
          f"~4 characters per token + 800 per image; output tokens: the max_tokens budget "
          f"(an upper bound); cost at price_per_million_tokens: projected_cost_usd at the model's "
          f"delivery tier, and each tier's cost (flex and batch: half the standard price unless "
          f"configured).\n")
    print(frame.astype(object).where(frame.notna(), "").to_string(index=False))
    priced = pd.to_numeric(frame["projected_cost_usd"], errors="coerce").fillna(0.0)
    print(f"\ntotal: {int(frame['expected_calls'].sum())} calls expected "
          f"(at most {int(frame['max_calls'].sum())}), ~{int(frame['projected_input_tokens'].sum())} input "
          f"tokens, <= {int(frame['projected_output_tokens'].sum())} output tokens, ~${priced.sum():.2f}")
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    import pandas as pd

    from dagster_project.analysis.power import plan_cells
    from dagster_project.settings import benchmark_config
    from inference.config import load_config
    from inference.planning import plan_benchmark, planned_images

    bench = load_config(args.config) if args.config else benchmark_config()
    cfg = bench.statistics
    cells = plan_cells(planned_images(bench), groupings=cfg.groupings, family=cfg.family, alpha=cfg.alpha,
                       power=args.power, baseline=args.baseline_error_rate, icc=args.icc, min_n=cfg.min_cell_n)
    cost = pd.DataFrame(plan_benchmark(bench)).groupby("dataset").agg(
        expected_calls=("expected_calls", "sum"), projected_cost_usd=("projected_cost_usd", lambda c: c.fillna(0).sum()))
    table = cells.join(cost, on="dataset")
    table["detectable_ratio"] = table["detectable_ratio"].map(lambda r: "n < min" if pd.isna(r) else f"{r:.2f}")
    table["alpha_per_test"] = table["alpha_per_test"].map(lambda a: f"{a:.2g}")
    print(f"Plan for {bench.path}: per dataset x grouping x true emotion, the two smallest groups' images and "
          f"people and the smallest error-rate ratio (higher / lower) detectable with power {args.power} by a "
          f"two-sided test at alpha / m (Bonferroni over the family's m pairs, statistics.family = "
          f"{cfg.family!r}, alpha {cfg.alpha}), lower group's error rate {args.baseline_error_rate}, each n divided "
          f"by the planned design effect 1 + (images per person - 1) x ICC {args.icc}; cost: the dry-run's "
          f"projection for the dataset (all configured models).\n")
    print(table.drop(columns=["below_min_n"]).to_string(index=False))
    return 0


def cmd_fan_out(args: argparse.Namespace) -> int:
    import dagster as dg

    from dagster_project.defs.partitions import register_configured_models
    from dagster_project.orchestration import configured_slices
    from dagster_project.scale_out import launch_partition_runs, wait_for_runs
    from dagster_project.settings import benchmark_config

    configured_dagster_home()
    instance = dg.DagsterInstance.get()
    register_configured_models(instance, benchmark_config())
    keys = args.partition or [str(key) for key in configured_slices(benchmark_config())]
    run_ids = launch_partition_runs(instance, args.job, keys, submit=args.submit)
    for key, run_id in zip(keys, run_ids):
        print(f"{run_id}  {args.job}  {key}")
    if not args.wait:
        return 0
    statuses = wait_for_runs(instance, run_ids, timeout_s=args.timeout)
    failed = {run_id: status.value for run_id, status in statuses.items() if status != dg.DagsterRunStatus.SUCCESS}
    for run_id, status in failed.items():
        print(f"{run_id}: {status}", file=sys.stderr)
    return 1 if failed else 0

def cmd_report(args: argparse.Namespace) -> int:
    import duckdb

    from dagster_project.reporting import report_limits, write_report
    from dagster_project.settings import benchmark_config
    from inference.warehouse import snapshot_for_reading

    cfg = benchmark_config()
    if not cfg.warehouse.exists():
        raise FileNotFoundError(f"no warehouse at {cfg.warehouse}: run `fer-warehouse demo` first "
                                "(or point FER_CONFIG / FER_WAREHOUSE at one)")
    with snapshot_for_reading(cfg.warehouse) as snapshot:  # never blocks a run writing the warehouse
        con = duckdb.connect(str(snapshot), read_only=True)
        try:
            path = write_report(con, cfg, args.out, **report_limits(args.max_rows, args.inline_mb))
        finally:
            con.close()
    print(f"report: {path}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    import duckdb

    from dagster_project.export import export_table
    from dagster_project.settings import benchmark_config
    from inference.warehouse import snapshot_for_reading

    with snapshot_for_reading(benchmark_config().warehouse) as snapshot:
        con = duckdb.connect(str(snapshot), read_only=True)
        try:
            text = export_table(con, args.table, args.format, long=args.long)
        finally:
            con.close()
    if args.out is None:
        sys.stdout.write(text)
    else:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")
        print(f"{args.table} -> {args.out}", file=sys.stderr)
    return 0


def cmd_docs(args: argparse.Namespace) -> int:
    from dagster_project import dbt_docs
    from dagster_project.settings import benchmark_config

    cfg = benchmark_config()
    target = dbt_docs.generate(cfg, args.out or dbt_docs.docs_dir(cfg))
    missing = dbt_docs.undocumented(target)
    print(f"dbt docs: {target / 'index.html'} (served below); one offline file: {target / 'static_index.html'}")
    if missing:
        print(f"{len(missing)} without a description (add them to the yml beside the model):", *missing, sep="\n  ")
    else:
        print("every model, seed, source and column has a description")
    return 0 if args.no_serve else dbt_docs.serve(target, args.port)


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
    plan = sub.add_parser("plan", help="per dataset x grouping x emotion: n, people and the smallest error-rate "
                                       "ratio detectable after the family's correction, with the dry-run's cost")
    plan.add_argument("--config", help="benchmark file (default: $FER_CONFIG or ./benchmark.yaml)")
    plan.add_argument("--power", type=float, default=0.8, help="power to detect the ratio (default: %(default)s)")
    plan.add_argument("--baseline-error-rate", type=float, default=0.2,
                      help="error rate of the lower group (default: %(default)s)")
    plan.add_argument("--icc", type=float, default=0.2,
                      help="planned intra-person correlation of errors (default: %(default)s)")
    plan.set_defaults(func=cmd_plan)
    fan = sub.add_parser("fan-out", help="one run per partition through the instance's run launcher "
                                         "(Celery workers, Kubernetes; docs/scaling-out.md)")
    fan.add_argument("--job", default="evaluate_model_on_dataset", help="a partitioned job (default: %(default)s)")
    fan.add_argument("--partition", action="append", help="a partition key, repeatable (default: every "
                                                          "configured model version x dataset)")
    fan.add_argument("--submit", action="store_true", help="to the instance's run queue (the daemon starts them "
                                                           "within its tag limits) instead of the launcher at once")
    fan.add_argument("--wait", action="store_true", help="wait for the runs; exit 1 if one failed")
    fan.add_argument("--timeout", type=float, default=3600.0, help="seconds --wait waits at most")
    fan.set_defaults(func=cmd_fan_out)
    report = sub.add_parser("report", help="write one self-contained HTML report of the warehouse")
    report.add_argument("--out", type=Path, help="output file (default: <reports_dir>/report.html)")
    report.add_argument("--max-rows", type=int, default=None,
                        help="rows shown per table, smallest adjusted p first (0 = all; default 2000)")
    report.add_argument("--inline-mb", type=float, default=None,
                        help="megabytes of figures inlined, the rest linked to their files (-1 = all; default 32)")
    report.set_defaults(func=cmd_report)
    export = sub.add_parser("export", help="a papers.*, marts.* or stats.* table as CSV or LaTeX")
    export.add_argument("table", help="schema.table, e.g. papers.tae_table2 or stats.error_rate_ztests")
    export.add_argument("--format", choices=("csv", "latex"), default="csv",
                        help="csv or latex (booktabs); default %(default)s")
    export.add_argument("--long", action="store_true",
                        help="papers.*: one row per cell, every column, instead of the paper's grid")
    export.add_argument("--out", type=Path, help="write to this file (default: standard output)")
    export.set_defaults(func=cmd_export)
    docs = sub.add_parser("docs", help="generate the warehouse's dbt docs and serve them on 127.0.0.1")
    docs.add_argument("--port", type=int, default=8080)
    docs.add_argument("--out", type=Path, help="where the docs go (default: <reports_dir>/dbt_docs)")
    docs.add_argument("--no-serve", action="store_true", help="generate only (static_index.html opens offline)")
    docs.set_defaults(func=cmd_docs)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except Exception as exc:  # noqa: BLE001 - the CLI turns known errors into one clear line
        from dagster_project.export import ExportError
        from inference.config import ConfigError
        from inference.download import DownloadError
        from inference.models.vlm import ExternalAPIError

        if isinstance(exc, ConfigError | DownloadError | FileNotFoundError | ExternalAPIError | ExportError):
            print(f"error: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
