"""Raw slices as Parquet files: many writers on many machines, no shared write lock.

The embedded layout keeps the raw tables in the one DuckDB file, and every writer waits for its
single write lock. With `raw_slices:` configured, each writer instead writes its own files:

    <root>/<table>/dataset=<d>/data.parquet                                  dataset tables
    <root>/<table>/dataset=<d>/model=<m>/model_version=<v>/data.parquet      slice tables
    <root>/<table>/_empty.parquet       zero rows with the table's DDL types (the read glob always
                                        matches, and a column no slice has yet keeps its type)

Directory values are percent-encoded (model versions hold '@', '+', '/'); readers take the key
columns from the files themselves (`hive_partitioning = false`), so a version such as
'2024-06-01' is never re-typed as a date. A file is written under a temporary name and renamed
into place (atomic on POSIX, also on NFS): a reader sees a slice's old file or its new one, never
half a file. Two writers of different slices touch different files, so neither waits.

The warehouse file then holds `raw.<table>` as views over these files (`attach_views`), so dbt,
asset checks and statistics read `raw.*` exactly as in the embedded layout.

Rows are shaped by the embedded writer itself: `warehouse.write_evaluation` / `write_dataset` run
against a private in-memory DuckDB with the same DDL, and each table is then copied to Parquet,
so both layouts hold the same rows with the same types.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import duckdb
import pandas as pd

from inference import warehouse

SLICE_KEYS = ("dataset", "model", "model_version")
EVALUATION_TABLES = ("predictions", "model_runs", "transport_failures", "image_embeddings", "model_versions",
                     "quarantine")
DATASET_TABLES = ("dataset_images", "dataset_exclusions", "human_ratings", "quarantine")
# raw.api_batches: one file per slice, rewritten by inference.batch_ledger as batches progress
LEDGER_TABLES = ("api_batches",)
ALL_TABLES = tuple(dict.fromkeys(EVALUATION_TABLES + DATASET_TABLES + LEDGER_TABLES))
# Tables the embedded writer replaces even with no rows (an evaluation that failed nothing
# clears the slice's earlier failures); the others are replaced only when the run produced rows.
ALWAYS_REPLACED = ("transport_failures",)
# raw.model_versions keeps the first sighting of a version; each slice records its own.
FIRST_SIGHTING = "qualify row_number() over (partition by model, model_version order by discovered_at, first_run_id) = 1"


def _is_url(root: str) -> bool:
    return "://" in root


class SliceStore:
    """The Parquet slice store under `root` (a directory; `s3://...` needs DuckDB's httpfs)."""

    def __init__(self, root: str | Path) -> None:
        self.root = str(root).rstrip("/")

    def slice_dir(self, table: str, key: dict[str, str]) -> str:
        parts = [f"{k}={quote(str(key[k]), safe='')}" for k in SLICE_KEYS if k in key]
        return "/".join([self.root, table, *parts])

    def table_glob(self, table: str) -> str:
        return f"{self.root}/{table}/**/*.parquet"

    def write_evaluation(self, slice_key: dict[str, str], rows: warehouse.EvaluationRows) -> dict[str, int]:
        """Replace one (model, model_version, dataset) slice's files; returns rows written per table."""
        replaced = set(ALWAYS_REPLACED) | ({"quarantine"} if rows.quarantine_sources else set())
        return self._write(lambda con: warehouse.write_evaluation(con, slice_key, rows), slice_key,
                           EVALUATION_TABLES, replaced)

    def write_dataset(self, dataset: str, *, images: pd.DataFrame, quarantined: pd.DataFrame,
                      ratings: pd.DataFrame, exclusions: pd.DataFrame | None = None) -> dict[str, int]:
        """Replace one dataset's images, ratings and ingestion quarantine (model files' quarantined
        rows live in their slices' own files, so nothing of theirs needs keeping)."""
        return self._write(
            lambda con: warehouse.write_dataset(con, dataset, images=images, quarantined=quarantined,
                                                ratings=ratings, keep_sources=[], exclusions=exclusions),
            {"dataset": dataset}, DATASET_TABLES, set(DATASET_TABLES))

    def read_table(self, table: str, where: dict[str, str]) -> pd.DataFrame:
        """Rows of one table matching `where` (e.g. a dataset's images), read without any lock."""
        con = duckdb.connect()
        try:
            clause = " and ".join(f"{col} = ?" for col in where) or "true"
            return con.execute(f"select * from read_parquet(?, union_by_name = true) where {clause}",
                               [self.table_glob(table), *where.values()]).df()
        finally:
            con.close()

    def replace_slice_table(self, table: str, key: dict[str, str], frame: pd.DataFrame) -> None:
        """Replace one slice's file of `table` by `frame` (typed by the table's DDL)."""
        self.ensure_layout()
        con = _raw_memory_db()
        try:
            con.register("_incoming", frame)
            columns = ", ".join(frame.columns)
            con.execute(f"insert into raw.{table} ({columns}) select {columns} from _incoming")
            _copy_out(con, f"select * from raw.{table}", f"{self.slice_dir(table, key)}/data.parquet")
        finally:
            con.close()

    def ensure_layout(self) -> None:
        """Write each table's `_empty.parquet` (zero rows, DDL types) once."""
        con = _raw_memory_db()
        try:
            for table in ALL_TABLES:
                target = f"{self.root}/{table}/_empty.parquet"
                if _is_url(self.root) or not Path(target).exists():
                    _copy_out(con, f"select * from raw.{table}", target)
        finally:
            con.close()

    def _write(self, write: Callable[[duckdb.DuckDBPyConnection], None], key: dict[str, str],
               tables: tuple[str, ...], replaced: set[str]) -> dict[str, int]:
        self.ensure_layout()
        con = _raw_memory_db()
        try:
            write(con)
            written = {}
            for table in tables:
                n = con.execute(f"select count(*) from raw.{table}").fetchone()[0]
                if n or table in replaced:
                    _copy_out(con, f"select * from raw.{table}", f"{self.slice_dir(table, key)}/data.parquet")
                    written[table] = n
            return written
        finally:
            con.close()


def _raw_memory_db() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    warehouse.ensure_raw_schema(con)
    return con


def _copy_out(con: duckdb.DuckDBPyConnection, query: str, target: str) -> None:
    """COPY to `target` atomically: a temporary name then a rename (object stores: one PUT)."""
    if _is_url(target):
        con.execute(f"copy ({query}) to '{target}' (format parquet)")
        return
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    tmp = f"{target}.{uuid.uuid4().hex}.tmp"
    try:
        con.execute(f"copy ({query}) to '{_sql_str(tmp)}' (format parquet)")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _sql_str(value: str) -> str:
    return value.replace("'", "''")


def attach_views(con: duckdb.DuckDBPyConnection, root: str | Path) -> None:
    """Make `raw.<table>` in the warehouse file views over the slice store under `root`.

    A warehouse that already holds rows in embedded raw tables is refused rather than dropped:
    its data would vanish behind the views."""
    store = SliceStore(root)
    store.ensure_layout()
    con.execute(f"create schema if not exists {warehouse.RAW_SCHEMA}")
    existing = dict(con.execute(
        "select table_name, estimated_size from duckdb_tables() where schema_name = ?",
        [warehouse.RAW_SCHEMA]).fetchall())
    for table in ALL_TABLES:
        if table in existing:
            if con.execute(f"select count(*) from raw.{table}").fetchone()[0]:
                raise RuntimeError(
                    f"raw.{table} of this warehouse holds rows of the embedded layout; the slice layout "
                    f"({store.root}) needs a warehouse file of its own: set `warehouse:` to a new file "
                    f"(or remove `raw_slices:` to keep the embedded layout)")
            con.execute(f"drop table raw.{table}")
        extra = FIRST_SIGHTING if table == "model_versions" else ""
        con.execute(
            f"create or replace view raw.{table} as select * from read_parquet("
            f"'{_sql_str(store.table_glob(table))}', union_by_name = true, hive_partitioning = false) {extra}")
