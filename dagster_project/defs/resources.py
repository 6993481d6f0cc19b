"""Resources: the DuckDB warehouse (lock-tolerant) and the dbt CLI."""


import contextlib
import importlib.metadata
import json
import shutil
import sys
from collections.abc import Iterator, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DbtCliResource
from dagster_duckdb import DuckDBResource
from packaging.version import Version

from dagster_project.defs.dbt_project import dbt_project
from dagster_project.settings import benchmark_config
import pandas as pd

from inference import slice_store, warehouse
from inference.config import StatisticsConfig, dbt_vars
from inference.paper_names import paper_names


class WarehouseResource(DuckDBResource):
    """DuckDBResource whose connections wait out another process's lock instead of failing.

    Several runs (and the ad hoc SQL command) share one DuckDB file; each writer holds it only
    for a short transaction, so waiting is always the right answer to a lock.
    """

    lock_timeout_s: float = 600.0
    # "" = embedded raw tables; otherwise the Parquet slice store (`raw_slices:` in the config),
    # which raw writers use instead of the file and which the file shows as `raw.*` views.
    raw_slices: str = ""

    @contextlib.contextmanager
    def get_connection(self) -> Iterator:  # type: ignore[override]
        con = warehouse.connect(Path(self.database), timeout_s=self.lock_timeout_s)
        try:
            if self.raw_slices:
                slice_store.attach_views(con, self.raw_slices)
            else:
                warehouse.ensure_raw_schema(con)
            yield con
        finally:
            con.close()

    @contextlib.contextmanager
    def raw_connection(self) -> Iterator:
        """A connection for queries on `raw.*` only (the raw tables' asset checks). With the slice
        store: an in-memory database whose `raw.*` views read the Parquet files, so runs on many
        machines never open the warehouse file nor wait for its lock; otherwise the warehouse."""
        if not self.raw_slices:
            with self.get_connection() as con:
                yield con
            return
        import duckdb

        con = duckdb.connect(":memory:")
        try:
            slice_store.attach_views(con, self.raw_slices)
            yield con
        finally:
            con.close()

    def write_evaluation(self, slice_key: dict[str, str], rows: warehouse.EvaluationRows) -> None:
        """One evaluation's raw rows: its own Parquet files (no lock) or one transaction in the file."""
        if self.raw_slices:
            slice_store.SliceStore(self.raw_slices).write_evaluation(slice_key, rows)
            return
        with self.get_connection() as con:
            warehouse.write_evaluation(con, slice_key, rows)

    def write_dataset(self, dataset: str, *, images: pd.DataFrame, quarantined: pd.DataFrame,
                      ratings: pd.DataFrame, keep_sources: list[str], exclusions: pd.DataFrame) -> None:
        """One dataset's raw rows (`keep_sources`: model files whose quarantined rows stay)."""
        if self.raw_slices:
            slice_store.SliceStore(self.raw_slices).write_dataset(
                dataset, images=images, quarantined=quarantined, ratings=ratings, exclusions=exclusions)
            return
        with self.get_connection() as con:
            warehouse.write_dataset(con, dataset, images=images, quarantined=quarantined, ratings=ratings,
                                    keep_sources=keep_sources, exclusions=exclusions)

    def dataset_images(self, dataset: str) -> pd.DataFrame:
        """raw.dataset_images rows of one dataset, by image_id; the slice store is read without the file."""
        if self.raw_slices:
            rows = slice_store.SliceStore(self.raw_slices).read_table("dataset_images", {"dataset": dataset})
            return rows.sort_values("image_id", ignore_index=True)
        with self.get_connection() as con:
            return con.execute("select * from raw.dataset_images where dataset = ? order by image_id", [dataset]).df()


class WarehouseDbtResource(DbtCliResource):
    """The dbt CLI pointed at the configured warehouse: the path travels as a dbt var
    (dbt/profiles.yml reads `var('warehouse')`), never through the process environment."""

    warehouse: str

    # benchmark.yaml's `statistics:` as JSON (StatisticsConfig; "" = the SQL macros' defaults).
    # The vars SQL shares with Python (interval level, groupings, tie rule) are derived from it
    # per dbt command, not here: inference.config.dbt_vars imports scipy (~2 s CPU), which every
    # load of the code location -- each run launched from the UI -- would otherwise pay.
    statistics_config: str = ""

    # The Parquet slice store (`raw_slices:`): its `raw.*` views are (re)made in the warehouse
    # file before each dbt command, so one build reads every slice however it was written.
    raw_slices: str = ""

    # benchmark.yaml's `dataset_groups:` as JSON ({group: [datasets]}), the dbt var of the pooled
    # marts (macros/dataset_groups.sql); "" = no groups.
    dataset_groups: str = ""

    # The models' and datasets' declared `paper_name:`s as JSON (inference.paper_names),
    # the dbt var the papers views match the seed papers' columns by; "" = none declared.
    paper_names: str = ""

    @cached_property
    def _cli_version(self) -> Version:
        """dagster-dbt's `dbt --version` check, answered without starting dbt where we can."""
        return own_dbt_version(self.dbt_executable) or DbtCliResource._cli_version.func(self)

    def _initialize_dbt_core_adapter(self, args: Sequence[str]) -> None:  # type: ignore[override]
        """No in-process dbt adapter. dagster-dbt builds one before every dbt command (~2 s CPU
        in the run's process: dbt's project, profile and every macro loaded again, beside the
        dbt process that does the same) for only two things: `fetch_row_counts()` and
        `fetch_column_metadata()` on the event stream, which this project does not call (a
        slice's row counts come from headline_metadata). Without one, both would say so."""
        return None

    def cli(self, args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        if self.raw_slices:
            with contextlib.closing(warehouse.connect(Path(self.warehouse))) as con:
                slice_store.attach_views(con, self.raw_slices)
        return super().cli(args, **kwargs)

    def vars_args(self, **extra_vars: Any) -> list[str]:
        """`--vars` for a dbt command: warehouse, statistics settings, plus `extra_vars`. Keep them
        the same across invocations (the slice goes through dbt_runner.dbt_build): any change of
        command-line vars makes dbt parse the whole project again."""
        statistics = (dbt_vars(StatisticsConfig.model_validate_json(self.statistics_config))
                      if self.statistics_config else {})
        groups = {"dataset_groups": json.loads(self.dataset_groups)} if self.dataset_groups else {}
        papers = {"paper_names": json.loads(self.paper_names)} if self.paper_names else {}
        merged = {"warehouse": self.warehouse, **statistics, **groups, **papers, **extra_vars}
        return ["--vars", json.dumps(merged, sort_keys=True)]


def own_dbt_version(executable: str) -> Version | None:
    """The installed dbt-core's version when `executable` is this interpreter's own dbt (the
    usual case: settings.py puts its bin folder first on PATH), else None. dagster-dbt starts
    `dbt --version` (~1.8 s CPU: dbt's imports) before every dbt command of every run to learn
    this; the package metadata of the same installation says it without a process."""
    found = shutil.which(executable)
    own = Path(sys.executable).parent / "dbt"
    if found and own.exists() and Path(found).resolve() == own.resolve():
        return Version(importlib.metadata.version("dbt-core"))
    return None


@dg.definitions
def resources() -> dg.Definitions:
    cfg = benchmark_config()
    return dg.Definitions(
        resources={
            "duckdb": WarehouseResource(database=str(cfg.warehouse), raw_slices=cfg.raw_slices or ""),
            "dbt": WarehouseDbtResource(
                project_dir=dbt_project, profiles_dir=str(dbt_project.project_dir), warehouse=str(cfg.warehouse),
                statistics_config=cfg.statistics.model_dump_json(),
                raw_slices=cfg.raw_slices or "",
                dataset_groups=json.dumps(cfg.dataset_groups) if cfg.dataset_groups else "",
                paper_names=json.dumps(paper_names(cfg.models, cfg.datasets), sort_keys=True),
            ),
        }
    )
