"""Resources: the DuckDB warehouse (lock-tolerant) and the dbt CLI."""


import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DbtCliResource
from dagster_duckdb import DuckDBResource

from dagster_project.defs.dbt_project import dbt_project
from dagster_project.settings import benchmark_config
from inference import warehouse
from inference.config import dbt_vars


class WarehouseResource(DuckDBResource):
    """DuckDBResource whose connections wait out another process's lock instead of failing.

    Several runs (and the ad hoc SQL command) share one DuckDB file; each writer holds it only
    for a short transaction, so waiting is always the right answer to a lock.
    """

    lock_timeout_s: float = 600.0

    @contextlib.contextmanager
    def get_connection(self) -> Iterator:  # type: ignore[override]
        con = warehouse.connect(Path(self.database), timeout_s=self.lock_timeout_s)
        try:
            warehouse.ensure_raw_schema(con)
            yield con
        finally:
            con.close()


class WarehouseDbtResource(DbtCliResource):
    """The dbt CLI pointed at the configured warehouse: the path travels as a dbt var
    (dbt/profiles.yml reads `var('warehouse')`), never through the process environment."""

    warehouse: str

    # The statistics settings SQL shares with Python (interval level, groupings, tie rule), as
    # JSON: inference.config.dbt_vars of benchmark.yaml's `statistics:`.
    statistics_vars: str = "{}"

    def vars_args(self, **extra_vars: Any) -> list[str]:
        """`--vars` for a dbt command: warehouse, statistics settings, plus `extra_vars`. Keep them
        the same across invocations (the slice goes through dbt_runner.dbt_build): any change of
        command-line vars makes dbt parse the whole project again."""
        merged = {"warehouse": self.warehouse, **json.loads(self.statistics_vars), **extra_vars}
        return ["--vars", json.dumps(merged, sort_keys=True)]


@dg.definitions
def resources() -> dg.Definitions:
    cfg = benchmark_config()
    return dg.Definitions(
        resources={
            "duckdb": WarehouseResource(database=str(cfg.warehouse)),
            "dbt": WarehouseDbtResource(
                project_dir=dbt_project, profiles_dir=str(dbt_project.project_dir), warehouse=str(cfg.warehouse),
                statistics_vars=json.dumps(dbt_vars(cfg.statistics)),
            ),
        }
    )
