"""Write the HTML report (analysis/report.py) from a warehouse connection and the figures.

Used by the `reports/html_report` asset (after every cross-slice refresh) and by
`fer-warehouse report` (on a snapshot, so it never blocks a run). The SQL lives here; the
page is built by the pure `report.render_report`.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import duckdb
import pandas as pd

from dagster_project.analysis.report import Figure, Settings, render_report
from dagster_project.analysis.report_summary import VERSION_ORDER
from inference.config import BenchmarkConfig, StatisticsConfig

REPORT_FILE = "report.html"
# What the report reads: every stats.* and papers.* table (papers.* only where that schema
# exists: the seed papers' models may not be built), the accuracy mart, the API cost mart and the human baseline.
TABLES_SQL = """
select table_schema, table_name
from information_schema.tables
where table_catalog = current_database()
  and (table_schema in ('stats', 'papers') or (table_schema = 'marts' and table_name in ('group_accuracy', 'run_costs', 'human_category_agreement')))
order by all
"""


def report_path(cfg: BenchmarkConfig) -> Path:
    """`<reports_dir>/report.html` (data/reports/report.html with the default config)."""
    return cfg.reports_dir / REPORT_FILE


# Versions of a model in the order they were first evaluated: the summary's "since the previous
# version" (the same order as the regression gate's asset check, defs/gate.py).
VERSION_ORDER_SQL = """
select model, model_version, min(started_at) as first_evaluated
from raw.model_runs
group by all
"""


def read_tables(con: duckdb.DuckDBPyConnection) -> dict[str, pd.DataFrame]:
    """{"schema.table": rows} of the tables the report shows, and raw.version_order."""
    names = con.execute(TABLES_SQL).fetchall()
    tables = {f"{schema}.{name}": con.execute(f'select * from "{schema}"."{name}"').df() for schema, name in names}
    has_runs = con.execute("select count(*) from information_schema.tables where table_catalog = current_database() "
                           "and table_schema = 'raw' and table_name = 'model_runs'").fetchone()[0]
    if has_runs:
        tables[VERSION_ORDER] = con.execute(VERSION_ORDER_SQL).df()
    return tables


def read_figures(reports_dir: Path) -> list[Figure]:
    """Every PNG the figure assets wrote under reports_dir, by name."""
    return [Figure(path.name, path.read_bytes()) for path in sorted(Path(reports_dir).glob("*.png"))]


def report_settings(cfg: StatisticsConfig) -> Settings:
    return Settings(alpha=cfg.alpha, min_cell_n=cfg.min_cell_n, corrections=tuple(cfg.corrections),
                    family=cfg.family, bootstrap_resamples=cfg.bootstrap_resamples, tie_policy=cfg.tie_policy,
                    gate_correction=cfg.gate_correction)


def write_report(con: duckdb.DuckDBPyConnection, cfg: BenchmarkConfig, out: Path | None = None) -> Path:
    """Render the report from `con` and cfg.reports_dir's figures into `out` (default
    report_path(cfg)); the file is replaced atomically, so a reader never sees half of it."""
    out = Path(out) if out is not None else report_path(cfg)
    html = render_report(
        read_tables(con), read_figures(cfg.reports_dir), report_settings(cfg.statistics),
        generated_at=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        source=f"{cfg.warehouse} (config {cfg.path})",
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    # a plain open (not mkstemp, whose 0600 would hide the report from other users), then rename
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    tmp.write_text(html, encoding="utf-8")
    os.replace(tmp, out)
    return out
