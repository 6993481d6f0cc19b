"""Write the HTML report (analysis/report.py) from a warehouse connection and the figures.

Used by the `reports/html_report` asset (after every cross-slice refresh) and by
`fer-warehouse report` (on a snapshot, so it never blocks a run). The SQL lives here; the
page is built by the pure `report.render_report`.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from urllib.parse import quote

import duckdb
import pandas as pd

from dagster_project.analysis.report import Figure, Settings, render_report
from dagster_project.analysis.report_summary import VERSION_ORDER
from inference.config import BenchmarkConfig, StatisticsConfig

REPORT_FILE = "report.html"
# What one report holds. A refresh of 200 slices leaves ~2,800 figures (405 MB of PNG) and
# ~10^5 statistics rows: inlined whole, the report was a 1.67 GB file that took 7 minutes and
# 9 GB of memory to write and that no browser opens. Beyond these caps figures are linked (the
# files beside the report) and rows are read with `fer-warehouse sql`; the page says which.
INLINE_FIGURE_MB = 32.0
MAX_TABLE_ROWS = 2_000
# What the report reads: every stats.* and papers.* table (papers.* only where that schema
# exists: the seed papers' models may not be built), the accuracy mart, the API cost mart and the human baseline.
TABLES_SQL = """
select table_schema, table_name
from information_schema.tables
where table_catalog = current_database()
  and (table_schema in ('stats', 'papers') or (table_schema = 'marts' and table_name in ('group_accuracy', 'run_costs', 'human_category_agreement')))
order by all
"""


def report_limits(max_rows: int | None, inline_mb: float | None) -> dict:
    """`fer-warehouse report --max-rows/--inline-mb` as write_report's arguments: None = the
    defaults above, 0 rows / a negative budget = no cap."""
    return {"max_rows": MAX_TABLE_ROWS if max_rows is None else (None if max_rows == 0 else max_rows),
            "inline_mb": INLINE_FIGURE_MB if inline_mb is None else (None if inline_mb < 0 else inline_mb)}


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


def _figure_order(path: Path) -> tuple[int, str]:
    """Figures across slices (`<stem>__<dataset>`) before a slice's own
    (`<stem>__<model>__<version>__<dataset>__<protocol>`), then by name: a report that cannot
    inline everything shows the comparisons first and each kind of slice figure side by side."""
    return path.name.count("__"), path.name


def read_figures(reports_dir: Path, report_dir: Path | None = None,
                 inline_mb: float | None = INLINE_FIGURE_MB) -> list[Figure]:
    """Every PNG the figure assets wrote under reports_dir, in _figure_order: the first ones
    (up to inline_mb megabytes; None = all) with their bytes to inline, the rest as links
    relative to report_dir (the report's folder; default reports_dir)."""
    paths = sorted(Path(reports_dir).glob("*.png"), key=_figure_order)
    budget = float("inf") if inline_mb is None else inline_mb * 2**20
    figures = []
    for path in paths:
        size = path.stat().st_size
        href = quote(os.path.relpath(path, report_dir or reports_dir).replace(os.sep, "/"))
        if size <= budget:  # a prefix of the order is inlined: once one is linked, the rest are
            figures.append(Figure(path.name, path.read_bytes(), href))
            budget -= size
        else:
            figures.append(Figure(path.name, None, href))
            budget = 0
    return figures


def report_settings(cfg: StatisticsConfig) -> Settings:
    return Settings(alpha=cfg.alpha, min_cell_n=cfg.min_cell_n, corrections=tuple(cfg.corrections),
                    family=cfg.family, bootstrap_resamples=cfg.bootstrap_resamples, tie_policy=cfg.tie_policy,
                    gate_correction=cfg.gate_correction)


def write_report(con: duckdb.DuckDBPyConnection, cfg: BenchmarkConfig, out: Path | None = None, *,
                 max_rows: int | None = MAX_TABLE_ROWS, inline_mb: float | None = INLINE_FIGURE_MB) -> Path:
    """Render the report from `con` and cfg.reports_dir's figures into `out` (default
    report_path(cfg)); the file is replaced atomically, so a reader never sees half of it.
    max_rows: rows shown per table (None = all); inline_mb: figures inlined (None = all)."""
    out = Path(out) if out is not None else report_path(cfg)
    html = render_report(
        read_tables(con), read_figures(cfg.reports_dir, out.parent, inline_mb), report_settings(cfg.statistics),
        generated_at=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        source=f"{cfg.warehouse} (config {cfg.path})", max_rows=max_rows,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    # a plain open (not mkstemp, whose 0600 would hide the report from other users), then rename
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    tmp.write_text(html, encoding="utf-8")
    os.replace(tmp, out)
    return out
