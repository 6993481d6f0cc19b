"""`fer-warehouse export`: one papers.*, marts.* or stats.* table as CSV or LaTeX (booktabs).

A papers.* table leaves in the paper's own grid (analysis/paper_grid.py: rows and columns as
printed, ours beside the paper's value, differences outside rounding marked); `long=True` gives
its rows as stored (one per cell, every column) instead. marts.* and stats.* leave as stored.
"""

from __future__ import annotations

import duckdb
import pandas as pd

from dagster_project.analysis.paper_grid import GRID_NOTE, OFF_MARK, paper_grid

EXPORTABLE_SCHEMAS = ("papers", "marts", "stats")
FORMATS = ("csv", "latex")
LATEX_DAGGER = r"\textsuperscript{\dag}"
# JSON of each row's method details: readable in CSV, too wide for a printed table
LATEX_DROPPED = ("detail",)


class ExportError(ValueError):
    """A table that cannot be exported (unknown name, wrong schema); the message says which exist."""


def exportable_tables(con: duckdb.DuckDBPyConnection) -> list[str]:
    rows = con.execute(
        "select table_schema || '.' || table_name from information_schema.tables "
        "where table_catalog = current_database() and table_schema in ('papers', 'marts', 'stats') order by 1"
    ).fetchall()
    return [name for (name,) in rows]


def read_exportable(con: duckdb.DuckDBPyConnection, table: str) -> pd.DataFrame:
    """The rows of `table` ("schema.name"); ExportError naming the tables there are otherwise."""
    schema, _, name = table.partition(".")
    available = exportable_tables(con)
    if schema not in EXPORTABLE_SCHEMAS or not name:
        raise ExportError(f"cannot export {table!r}: name a table as schema.table with schema one of "
                          f"{', '.join(EXPORTABLE_SCHEMAS)} (e.g. papers.tae_table2)")
    if table not in available:
        listing = ", ".join(available) or "none yet: run `fer-warehouse demo` first"
        raise ExportError(f"no table {table!r} in the warehouse; exportable tables: {listing}")
    return con.execute(f'select * from "{schema}"."{name}"').df()


def _latex_number(value: float) -> str:
    return f"{value:.4g}"


def to_latex(frame: pd.DataFrame, caption: str, *, index: bool) -> str:
    """booktabs tabular (pandas: \\toprule, \\midrule, \\bottomrule) in a table float."""
    shown = frame.drop(columns=[c for c in LATEX_DROPPED if c in frame.columns])
    latex = shown.to_latex(index=index, escape=True, na_rep="", float_format=_latex_number,
                           multicolumn_format="c", caption=caption.replace("_", r"\_"))
    # booktabs rules between row groups, not \\cline (which breaks against booktabs spacing)
    return latex.replace("\\cline{", "\\cmidrule{").replace(OFF_MARK, LATEX_DAGGER)


def export_table(con: duckdb.DuckDBPyConnection, table: str, fmt: str = "csv", *, long: bool = False) -> str:
    """`table` as CSV or LaTeX text (module docstring)."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    frame = read_exportable(con, table)
    if table.startswith("papers.") and not long:
        grid = paper_grid(frame, table)
        caption = f"{table}: {GRID_NOTE}".replace(OFF_MARK, "@DAG@")
        if fmt == "csv":
            return grid.to_csv()
        return to_latex(grid, caption, index=True).replace("@DAG@", LATEX_DAGGER)
    if fmt == "csv":
        return frame.to_csv(index=False)
    return to_latex(frame, f"{table} ({len(frame)} rows)", index=False)
