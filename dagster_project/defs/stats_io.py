"""Writing statistics tables slice by slice, and the metadata every stats asset reports."""

from collections.abc import Sequence

import dagster as dg
import duckdb
import pandas as pd

from dagster_project.defs.partitions import SliceKey
from dagster_project.settings import benchmark_config

STATS_SCHEMA = "stats"


def owned_by(frame: pd.DataFrame, slice_key: SliceKey) -> pd.DataFrame:
    """The rows of `frame` that belong to the slice (human-only rows belong to their dataset)."""
    if frame.empty:
        return frame
    mask = ((frame["model"].astype(str) == slice_key.model)
            & (frame["model_version"].astype(str) == slice_key.model_version)
            & (frame["dataset"].astype(str) == slice_key.dataset))
    return frame[mask].reset_index(drop=True)


def replace_rows(con: duckdb.DuckDBPyConnection, table: str, where: dict[str, str], frame: pd.DataFrame) -> None:
    """Replace the rows of stats.<table> matching `where` by `frame`, in one transaction.

    The table takes its column types from the first rows written; a table that holds no rows
    (e.g. created from a slice without results) is re-created from the next non-empty frame,
    so a typeless empty frame never fixes the types of later results.
    """
    replace_many_rows(con, table, [(where, frame)])


def replace_many_rows(con: duckdb.DuckDBPyConnection, table: str,
                      parts: Sequence[tuple[dict[str, str], pd.DataFrame]]) -> None:
    """`replace_rows` for each (where, frame) in turn, all in one transaction: a run of many
    slices writes the same rows and column types as one run per slice in that order, and a
    failure leaves every slice as it was."""
    con.execute("begin transaction")
    try:
        con.execute(f"create schema if not exists {STATS_SCHEMA}")
        for where, frame in parts:
            _replace_in_transaction(con, table, where, frame)
        con.execute("commit")
    except Exception:
        con.execute("rollback")
        raise


def _replace_in_transaction(con: duckdb.DuckDBPyConnection, table: str, where: dict[str, str],
                            frame: pd.DataFrame) -> None:
    name = f"{STATS_SCHEMA}.{table}"
    con.register("_incoming", frame)
    exists = con.execute(
        "select count(*) from information_schema.tables where table_schema = ? and table_name = ?",
        [STATS_SCHEMA, table],
    ).fetchone()[0]
    if exists:
        clause = " and ".join(f"{column} = ?" for column in where) or "true"
        con.execute(f"delete from {name} where {clause}", list(where.values()))
        if len(frame) and con.execute(f"select count(*) from {name}").fetchone()[0] == 0:
            exists = False
    if not exists:
        con.execute(f"create or replace table {name} as select * from _incoming")
    elif len(frame):
        held = {row[0] for row in con.execute(f"describe {name}").fetchall()}
        for column in frame.columns:
            if column not in held:  # a measure with a new extra column
                kind = con.execute(f"select typeof({column}) from _incoming limit 1").fetchone()[0]
                con.execute(f'alter table {name} add column "{column}" {kind}')
        con.execute(f"insert into {name} by name select * from _incoming")
    con.unregister("_incoming")


def summary_metadata(frame: pd.DataFrame) -> dict:
    """Row count, significant tests and small cells of a (slice of a) stats table."""
    meta: dict = {"dagster/row_count": len(frame)}
    if "p_adjusted" in frame and len(frame):
        alpha = benchmark_config().statistics.alpha
        meta["n_significant_adjusted"] = int((frame["p_adjusted"] < alpha).sum())
    if "below_min_n" in frame and len(frame):
        meta["n_below_min_n"] = int(frame["below_min_n"].astype(bool).sum())
    if "measure" in frame and len(frame):
        meta["measures"] = dg.MetadataValue.json(frame["measure"].value_counts().to_dict())
    return meta
