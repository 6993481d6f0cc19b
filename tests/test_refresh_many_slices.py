"""A refresh of several slices as one run (a backfill from the UI, `fer-warehouse demo`):
one dbt invocation, one read per statistic, one transaction per table -- and the same
warehouse, row for row and type for type, as one refresh run per slice. Dagster records every
partition of the run as materialized, as the UI shows it.

Each way runs in its own process and warehouse (the definitions read their config at import),
on three slices of a dataset with human ratings, so every statistic has rows to compare."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.tae_fixture import build_tae_fixture
from tests.support.warehouse_compare import differing_tables, schema_tables

REPO_ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = ("intermediate", "marts", "stats")
RUN = """
import json, sys
import dagster as dg
from dagster_project.defs.automation import SLICE_ASSETS
from dagster_project.defs.ingestion import DATASET_EXCLUSIONS, DATASET_IMAGES, HUMAN_RATINGS, QUARANTINE
from dagster_project.defs.dbt_assets import warehouse_foundation
from dagster_project.defs.partitions import register_configured_models
from dagster_project.orchestration import (RANGE_END_TAG, RANGE_START_TAG, configured_slices, load_definitions)
from dagster_project.settings import benchmark_config

cfg, instance, defs = benchmark_config(), dg.DagsterInstance.get(), load_definitions()

def run(job, **kwargs):
    return defs.resolve_job_def(job).execute_in_process(instance=instance, raise_on_error=True, **kwargs).run_id

slices = configured_slices(cfg)
if sys.argv[1] == "prepare":  # the dataset (not its human baselines: not read here) and the answers
    register_configured_models(instance, cfg)
    run("ingest_dataset", partition_key="tae_sim",
        asset_selection=[DATASET_IMAGES, DATASET_EXCLUSIONS, QUARANTINE, HUMAN_RATINGS, *warehouse_foundation.keys])
    for key in slices:
        run("evaluate_model_on_dataset", partition_key=key)
    sys.exit(0)
if sys.argv[1] == "one-run":
    run_ids = [run("refresh_slice", tags={RANGE_START_TAG: str(slices[0]), RANGE_END_TAG: str(slices[-1])})]
else:
    run_ids = [run("refresh_slice", partition_key=key) for key in slices]
asset_keys = SLICE_ASSETS.resolve(defs.resolve_asset_graph())
print(json.dumps({
    "runs": len(run_ids),
    "slices": sorted(map(str, slices)),
    "materialized": {key.to_user_string(): sorted(instance.get_materialized_partitions(key)) for key in asset_keys},
}))
"""
MODELS = {"fer_b": "fer", "gemma_a": "vlm", "gemma_b": "vlm"}  # three slices, next to each other


def _write_config(root: Path, tae) -> Path:
    models = "".join(
        f"  {name}:\n    kind: imported\n    family: {family}\n    version: sim-1\n"
        f"    options: {{files: {{tae_sim: {tae.fer_answers if family == 'fer' else tae.gemma_answers}}}"
        f"{', value_scale: [-1, 1]' if family == 'fer' else ''}}}\n"
        for name, family in MODELS.items())
    config = root / "benchmark.yaml"
    config.write_text(
        f"warehouse: {root / 'warehouse.duckdb'}\nreports_dir: {root / 'reports'}\ncache_dir: {root / 'cache'}\n"
        f"datasets:\n  tae_sim:\n    kind: manifest\n    location: {tae.manifest}\n    label_set: canonical\n"
        f"    human_ratings: {{location: {tae.ratings}, scale: [1, 9]}}\n"
        f"models:\n{models}"
        f"statistics: {{min_cell_n: 5, bootstrap_resamples: 50}}\n")
    return config


def _run(root: Path, way: str) -> dict:
    env = {**os.environ, "FER_CONFIG": str(root / "benchmark.yaml"), "DAGSTER_HOME": str(root / "home"),
           "DBT_TARGET_PATH": str(root / "dbt_target")}
    env.pop("FER_WAREHOUSE", None)
    done = subprocess.run([sys.executable, "-c", RUN, way], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    return json.loads(done.stdout.strip().splitlines()[-1]) if way != "prepare" else {}


@pytest.mark.timeout(1200)
def test_three_slices_in_one_run_equal_three_single_runs(tmp_path: Path) -> None:
    tae = build_tae_fixture(tmp_path / "tae_sim")
    one, single = tmp_path / "one", tmp_path / "single"
    (one / "home").mkdir(parents=True)
    _write_config(one, tae)
    _run(one, "prepare")  # evaluated, not refreshed; the same state for both ways
    shutil.copytree(one, single)
    _write_config(single, tae)
    one, single = _run(one, "one-run"), _run(single, "per-slice")
    assert one["runs"] == 1 and single["runs"] == 3 and len(one["slices"]) == 3

    # Every asset of the refresh has the three partitions materialized, by the one run.
    assert one["materialized"] and all(parts == one["slices"] for parts in one["materialized"].values()), one
    assert one["materialized"] == single["materialized"]

    for schema in SCHEMAS:
        expected = schema_tables(tmp_path / "single" / "warehouse.duckdb", schema)
        got = schema_tables(tmp_path / "one" / "warehouse.duckdb", schema)
        assert expected and differing_tables(expected, got) == [], schema
    stats = schema_tables(tmp_path / "one" / "warehouse.duckdb", "stats")
    # Rows of each slice in the tables that do not need more than answers (not an empty comparison).
    for table in ("error_rate_ztests", "misclassification_tests", "categorical_agreement", "dimensional_agreement"):
        assert stats[table][["model", "model_version"]].drop_duplicates().shape[0] == 3, table
