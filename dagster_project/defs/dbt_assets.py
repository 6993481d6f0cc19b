"""dbt models (staging / intermediate / marts) and seeds as Dagster assets."""


import os
from collections.abc import Mapping
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, dbt_assets

from dagster_project.defs.dbt_project import dbt_project
from dagster_project.defs.dbt_runner import dbt_build
from dagster_project.settings import benchmark_config

DBT_WAREHOUSE_ENV = "FER_DBT_WAREHOUSE"


class WarehouseTranslator(DagsterDbtTranslator):
    """Asset keys are <schema>/<name>, so SQL names and asset keys read the same."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        if dbt_resource_props["resource_type"] == "source":
            return dg.AssetKey([dbt_resource_props["source_name"], dbt_resource_props["name"]])
        schema = dbt_resource_props.get("config", {}).get("schema") or dbt_resource_props["schema"]
        return dg.AssetKey([schema, dbt_resource_props["name"]])

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        if dbt_resource_props["resource_type"] == "seed":
            return "label_maps"
        return dbt_resource_props.get("config", {}).get("schema") or "dbt"


class DbtBuildConfig(dg.Config):
    """Launchpad option: the slice models are incremental (only slices evaluated or re-ingested
    since the last build are rebuilt); a full refresh rebuilds every slice, e.g. after a seed
    (label map) changed."""

    full_refresh: bool = False


@dbt_assets(manifest=dbt_project.manifest_path, dagster_dbt_translator=WarehouseTranslator())
def warehouse_dbt_models(context: dg.AssetExecutionContext, dbt: DbtCliResource, config: DbtBuildConfig):
    """`dbt build`: seeds, models and their tests, then unit tests of the metric SQL."""
    # Not FER_WAREHOUSE: that would override the config of anything loaded later in this process.
    os.environ[DBT_WAREHOUSE_ENV] = str(benchmark_config().warehouse)
    args = ["build", "--full-refresh"] if config.full_refresh else ["build"]
    yield from dbt_build(context, dbt, args)
