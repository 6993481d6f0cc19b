"""dbt as Dagster assets, in two definitions (the Dagster University / Open Platform shape):

* `warehouse_foundation` (unpartitioned): seeds (label maps), staging views and the
  dataset-level views. Their data version is their code checksum: rebuilding a view (or
  reloading an unchanged seed) changes nothing downstream, so it never makes a slice stale;
  editing a seed or a view's SQL does, for every slice.
* `warehouse_slices` (partitioned by model version x dataset): the slice models (dbt tag
  `slice`). The partition reaches dbt in its environment (`FER_DBT_SLICE`, see dbt_runner:
  not `--vars`, which would defeat partial parsing) and the models replace exactly that slice
  (dbt/macros/slices.sql). Each slice model also depends directly
  on the partition's raw answers and its dataset's raw images and ratings, so Dagster shows
  a slice stale exactly when its own inputs changed.
* `warehouse_after_stats` (unpartitioned): the views over the statistics tables Python writes
  (dbt tag `reads_stats`: papers.* -- the seed papers' tables beside their published values --
  and lineage.stat_lineage). Their dbt sources stats.* are the statistics assets, so they
  follow every slice's statistics; the cross-slice job rebuilds them. With them, the marts
  that span slices (dbt tag `across_slices`: a dataset group's pooled group_accuracy).
"""

from collections.abc import Iterator, Mapping
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, dbt_assets

from dagster_project.defs.conditions import ACROSS_SLICES, SLICE_RESULTS
from dagster_project.defs.dbt_project import dbt_project
from dagster_project.defs.dbt_runner import dbt_build
from dagster_project.defs.headline_metadata import with_paper_match_hints, with_slice_headlines
from dagster_project.defs.inference_assets import MODEL_RUNS, PREDICTIONS, TRANSPORT_FAILURES
from dagster_project.defs.ingestion import DATASET_IMAGES, HUMAN_RATINGS
from dagster_project.defs.partitions import SINGLE_RUN, model_dataset_partitions, slices_of
from dagster_project.defs.resources import WarehouseDbtResource, WarehouseResource
from dagster_project.settings import benchmark_config

SLICE_TAG = "slice"
READS_STATS_TAG = "reads_stats"
ACROSS_SLICES_TAG = "across_slices"
AFTER_SLICES_TAGS = (READS_STATS_TAG, ACROSS_SLICES_TAG)
# A refresh builds models and runs their data tests, not the dbt unit tests: those check each
# model's SQL on fixed fixture rows, never the warehouse's data, so every refresh would repeat
# the same verdict (~0.5 s each; the cross-slice build has 10). `make test` runs every one
# (tests/test_dbt_project.py builds every node; tests/test_papers_tables.py the papers').
BUILD_WITHOUT_UNIT_TESTS = ["build", "--exclude-resource-type", "unit_test"]
# The partition's own raw answers (same partitions: identity) and its dataset's raw tables.
_DATASET_DIMENSION = dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name="dataset")
SLICE_INPUTS = [
    *(dg.AssetDep(key) for key in (PREDICTIONS, MODEL_RUNS, TRANSPORT_FAILURES)),
    *(dg.AssetDep(key, partition_mapping=_DATASET_DIMENSION) for key in (DATASET_IMAGES, HUMAN_RATINGS)),
]


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

    def get_asset_spec(self, manifest: Mapping[str, Any], unique_id: str, project: Any) -> dg.AssetSpec:
        spec = super().get_asset_spec(manifest, unique_id, project)
        if SLICE_TAG in manifest["nodes"].get(unique_id, {}).get("tags", []):
            # its slice's raw tables changed -> rebuilt (declarative automation, defs/conditions.py)
            return spec.merge_attributes(deps=SLICE_INPUTS).replace_attributes(automation_condition=SLICE_RESULTS)
        if set(AFTER_SLICES_TAGS) & set(manifest["nodes"].get(unique_id, {}).get("tags", [])):
            # papers.* / lineage / pooled views over every slice: rebuilt after the slices' stats
            return spec.replace_attributes(automation_condition=ACROSS_SLICES)
        return spec


TRANSLATOR = WarehouseTranslator()


def _code_versioned(context: dg.AssetExecutionContext, events: Iterator[Any]) -> Iterator[Any]:
    """Stamp each foundation materialization with its code version as data version (see top)."""
    for event in events:
        if isinstance(event, dg.Output):
            key = context.asset_key_for_output(event.output_name)
            version = context.assets_def.code_versions_by_key.get(key)
            if version:
                event = dg.Output(event.value, event.output_name, metadata=event.metadata,
                                  data_version=dg.DataVersion(version), tags=event.tags)
        yield event


@dbt_assets(manifest=dbt_project.manifest_path,
            exclude=" ".join(f"tag:{tag}" for tag in (SLICE_TAG, *AFTER_SLICES_TAGS)),
            dagster_dbt_translator=TRANSLATOR)
def warehouse_foundation(context: dg.AssetExecutionContext, dbt: WarehouseDbtResource):
    """`dbt build` of the label-map seeds, staging views and dataset-level views, with their data
    tests (BUILD_WITHOUT_UNIT_TESTS)."""
    yield from _code_versioned(context, dbt_build(context, dbt, [*BUILD_WITHOUT_UNIT_TESTS, *dbt.vars_args()]))


@dbt_assets(
    manifest=dbt_project.manifest_path,
    select=f"tag:{SLICE_TAG}",
    dagster_dbt_translator=TRANSLATOR,
    partitions_def=model_dataset_partitions,
    backfill_policy=SINGLE_RUN,
)
def warehouse_slices(context: dg.AssetExecutionContext, dbt: WarehouseDbtResource, duckdb: WarehouseResource):
    """`dbt build` of the run's evaluated slices (model version x dataset; one, or a backfill's
    range in one invocation): intermediate answers and every mart, replaced for those slices
    only, with their data tests on those slices' rows. The metric unit tests are left out
    (BUILD_WITHOUT_UNIT_TESTS; measured: 17.6 -> 15.3 s CPU per slice build, scripts/bench_at_scale.py
    notes)."""
    slice_keys = slices_of(context.partition_keys, benchmark_config())
    events = dbt_build(context, dbt, [*BUILD_WITHOUT_UNIT_TESTS, *dbt.vars_args()],
                       slices=[slice_key.as_dict() for slice_key in slice_keys])
    yield from with_slice_headlines(context, duckdb, slice_keys, events)


@dbt_assets(manifest=dbt_project.manifest_path, select=" ".join(f"tag:{tag}" for tag in AFTER_SLICES_TAGS),
            dagster_dbt_translator=TRANSLATOR)
def warehouse_after_stats(context: dg.AssetExecutionContext, dbt: WarehouseDbtResource, duckdb: WarehouseResource):
    """`dbt build` of the views over the statistics (papers.*, lineage.stat_lineage) and over
    every slice (the pooled marts), with their data tests (after the statistics;
    BUILD_WITHOUT_UNIT_TESTS); a model matching no paper column is named in
    papers/model_paper_matches' metadata."""
    yield from with_paper_match_hints(context, duckdb, dbt_build(context, dbt, [*BUILD_WITHOUT_UNIT_TESTS,
                                                                               *dbt.vars_args()]))
