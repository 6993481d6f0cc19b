"""Ad hoc SQL on a private snapshot of the warehouse.

The snapshot is copied under a momentary read-only lock, so queries never hold the file
that materializations write, and never see a half-finished write.
"""

from __future__ import annotations

import sys

import duckdb

from dagster_project.settings import benchmark_config
from inference.warehouse import snapshot_for_reading

BANNER = """fer-warehouse SQL on a snapshot of {path}
Schemas: raw, seeds, staging, intermediate, marts, stats. End statements with ';'. Ctrl-D quits.
Try: select * from marts.group_accuracy where grouping = 'race' and true_emotion = 'all';"""


def run_sql(query: str | None = None, csv: bool = False) -> int:
    path = benchmark_config().warehouse
    with snapshot_for_reading(path) as snapshot:
        con = duckdb.connect(str(snapshot), read_only=True)
        try:
            if query is not None:
                return _execute(con, query, csv)
            return _interactive(con, path)
        finally:
            con.close()


def _execute(con: duckdb.DuckDBPyConnection, query: str, csv: bool) -> int:
    try:
        relation = con.sql(query)
    except duckdb.Error as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if relation is None:
        return 0
    frame = relation.df()
    if csv:
        frame.to_csv(sys.stdout, index=False)
    else:
        with_pd_options(lambda: print(frame.to_string(index=False)))
        print(f"({len(frame)} rows)")
    return 0


def with_pd_options(fn) -> None:
    import pandas as pd

    with pd.option_context("display.max_rows", 200, "display.max_columns", 50, "display.width", 200):
        fn()


def _interactive(con: duckdb.DuckDBPyConnection, path) -> int:
    try:
        import readline  # noqa: F401 - line editing and history for input()
    except ImportError:
        pass
    print(BANNER.format(path=path))
    buffer: list[str] = []
    while True:
        try:
            line = input("sql> " if not buffer else "...> ")
        except EOFError:
            print()
            return 0
        buffer.append(line)
        if line.rstrip().endswith(";"):
            _execute(con, "\n".join(buffer), csv=False)
            buffer = []
