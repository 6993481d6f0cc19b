"""Read whole schemas of a DuckDB warehouse for comparing two layouts (tests, benchmarks)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd


def relation_frame(path: Path, relation: str) -> pd.DataFrame:
    """Every row of `relation`, in a canonical order."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(f"select * from {relation} order by all").df()
    finally:
        con.close()


def schema_tables(path: Path, schema: str) -> dict[str, pd.DataFrame]:
    """Every table of `schema`, each in a canonical order."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        names = [r[0] for r in con.execute(
            "select table_name from duckdb_tables() where schema_name = ? order by 1", [schema]).fetchall()]
    finally:
        con.close()
    return {name: relation_frame(path, f"{schema}.{name}") for name in names}


def differing_tables(expected: dict[str, pd.DataFrame], got: dict[str, pd.DataFrame]) -> list[str]:
    """Names of tables missing on either side or whose rows differ (same rows, numbers and types)."""
    differ = sorted(set(expected) ^ set(got))
    for name in sorted(set(expected) & set(got)):
        try:
            pd.testing.assert_frame_equal(got[name], expected[name])
        except AssertionError:
            differ.append(name)
    return differ
