"""The Parquet slice store (`raw_slices:`): writers never take the warehouse lock, a rewrite
replaces exactly its slice, and one dbt build over the slices gives the embedded layout's marts."""

from __future__ import annotations

import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from dagster_project.defs.resources import WarehouseResource
from dbt_support import run_dbt
from inference import slice_store, warehouse
from inference.config import load_config
from inference.frames import Discovery
from inference.pipeline import model_quarantine_sources
from inference.slice_rows import dataset_rows, evaluate_slice
from tests.support.tae_fixture import build_tae_fixture
from tests.support.warehouse_compare import relation_frame, schema_tables

# Four slices: two imported models, each under two names (distinct slices, same answers files).
MODELS = {"gemma_a": "gemma_answers", "gemma_b": "gemma_answers", "fer_a": "fer_answers", "fer_b": "fer_answers"}
WRITER_TIMEOUT_S = 120  # a writer that touched the held warehouse file would wait far longer


def _evaluation_rows(run_id: str, version: str) -> warehouse.EvaluationRows:
    now = pd.Timestamp("2026-01-01 12:00:00")
    predictions = pd.DataFrame([{
        "run_id": run_id, "model": "m", "model_version": version, "model_kind": "imported", "label_set": "canonical",
        "dataset": "d", "image_id": f"img{i}.png", "image_hash": f"h{i}", "protocol": "imported", "step": 1,
        "step_name": "emotion", "sample_index": 0, "attempt": 1, "parse_status": "ok", "predicted_label": "happy",
        "created_at": now} for i in range(3)])
    run = pd.DataFrame([{"run_id": run_id, "model": "m", "model_version": version, "model_kind": "imported",
                         "dataset": "d", "started_at": now, "finished_at": now, "n_images": 3, "n_answers": 3,
                         "n_no_face": 0}])
    empty = pd.DataFrame(columns=["dataset"])
    return warehouse.EvaluationRows(
        transport_failures=pd.DataFrame(columns=["run_id"]), quarantined=empty, quarantine_sources=[],
        predictions=predictions, model_run=run,
        model_version={"model": "m", "model_version": version, "model_kind": "imported", "discovered_by": "config",
                       "discovered_at": now, "discovered_from": None, "run_id": run_id})


def test_rewriting_a_slice_replaces_only_that_slice(tmp_path):
    store = slice_store.SliceStore(tmp_path / "slices")
    for version in ("v1", "v2"):
        store.write_evaluation({"model": "m", "model_version": version, "dataset": "d"}, _evaluation_rows("r1", version))
    store.write_evaluation({"model": "m", "model_version": "v1", "dataset": "d"}, _evaluation_rows("r2", "v1"))
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    slice_store.attach_views(con, store.root)
    runs = con.execute("select model_version, run_id, count(*) from raw.predictions group by all order by 1").fetchall()
    assert runs == [("v1", "r2", 3), ("v2", "r1", 3)]  # v1 replaced, not duplicated; v2 untouched
    # the first sighting of a version stays its record (as `on conflict do nothing` in the file)
    assert con.execute("select count(*) from raw.model_versions").fetchone()[0] == 2
    # tables no slice wrote yet still have their columns and types
    assert con.execute("select count(*) from raw.image_embeddings").fetchone()[0] == 0
    assert "embedding" in [c[0] for c in con.execute("describe raw.image_embeddings").fetchall()]
    con.close()


def test_attaching_refuses_a_warehouse_with_embedded_rows(tmp_path):
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    warehouse.ensure_raw_schema(con)
    warehouse.write_evaluation(con, {"model": "m", "model_version": "v1", "dataset": "d"}, _evaluation_rows("r", "v1"))
    with pytest.raises(RuntimeError, match="raw.predictions of this warehouse holds rows of the embedded layout"):
        slice_store.attach_views(con, tmp_path / "slices")
    assert con.execute("select count(*) from raw.predictions").fetchone()[0] == 3  # nothing dropped
    con.close()


def _config(root: Path) -> Path:
    tae = build_tae_fixture(root / "tae_sim")
    models = "\n".join(
        f"  {name}:\n    kind: imported\n    family: {'fer' if attr == 'fer_answers' else 'vlm'}\n"
        f"    version: sim-1\n    options:\n      files: {{tae_sim: {getattr(tae, attr)}}}"
        + ("\n      value_scale: [-1, 1]" if attr == "fer_answers" else "")
        for name, attr in MODELS.items())
    config = root / "benchmark.yaml"
    config.write_text(f"""
warehouse: {root / 'unused.duckdb'}
reports_dir: {root / 'reports'}
cache_dir: {root / 'cache'}
datasets:
  tae_sim:
    kind: manifest
    location: {tae.manifest}
    label_set: canonical
    human_ratings: {{location: {tae.ratings}, scale: [1, 9]}}
models:
{models}
""")
    return config


def _write_slice(root: Path, slice_key: dict[str, str], rows: warehouse.EvaluationRows) -> float:
    """One writer process: land a slice in the store; returns the seconds the write took."""
    t0 = time.perf_counter()
    slice_store.SliceStore(root).write_evaluation(slice_key, rows)
    return time.perf_counter() - t0


def test_concurrent_slice_writers_never_wait_and_dbt_builds_the_embedded_marts(tmp_path):
    bench = load_config(_config(tmp_path))
    ds = bench.datasets["tae_sim"]
    data = dataset_rows(bench, ds)
    embedded, sliced, root = tmp_path / "embedded.duckdb", tmp_path / "sliced.duckdb", tmp_path / "slices"

    # The embedded layout: everything in one file, one transaction per slice.
    with warehouse.writer(embedded) as con:
        warehouse.write_dataset(con, ds.name, images=data.images, quarantined=data.quarantined, ratings=data.ratings,
                                keep_sources=model_quarantine_sources(bench, ds.name), exclusions=data.exclusions)
        image_rows = con.execute("select * from raw.dataset_images order by image_id").df()
        slices = {}
        for name in MODELS:
            key = {"model": name, "model_version": "sim-1", "dataset": ds.name}
            slices[name] = (key, evaluate_slice(bench, bench.models[name], ds, image_rows, run_id=f"run-{name}",
                                                discovery=Discovery()).rows)
            warehouse.write_evaluation(con, *slices[name])

    # The slice layout: four writer processes at once, while this process holds the warehouse
    # file's write lock (as a long dbt build would): a writer that needed it could not finish.
    store = slice_store.SliceStore(root)
    store.write_dataset(ds.name, images=data.images, quarantined=data.quarantined, ratings=data.ratings,
                        exclusions=data.exclusions)
    holder = duckdb.connect(str(sliced))
    try:
        with ProcessPoolExecutor(4, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(_write_slice, root, key, rows) for key, rows in slices.values()]
            seconds = [f.result(timeout=WRITER_TIMEOUT_S) for f in futures]
        # The raw tables' asset checks read the slices without the file too (lock still held).
        resource = WarehouseResource(database=str(sliced), raw_slices=str(root), lock_timeout_s=0.5)
        with resource.raw_connection() as con:
            n_answers = con.execute("select count(*) from raw.predictions").fetchone()[0]
    finally:
        holder.close()
    assert len(seconds) == 4
    assert n_answers == sum(len(rows.predictions) for _, rows in slices.values())

    con = duckdb.connect(str(sliced))
    slice_store.attach_views(con, root)
    con.close()
    args = ["build", "--exclude-resource-type", "test", "--exclude-resource-type", "unit_test"]
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda w: run_dbt(args, warehouse=w, target_dir=tmp_path / w.stem / "target"), [embedded, sliced]))

    for table in ("predictions", "model_runs", "model_versions", "dataset_images", "human_ratings", "quarantine"):
        expected, got = relation_frame(embedded, f"raw.{table}"), relation_frame(sliced, f"raw.{table}")
        pd.testing.assert_frame_equal(got, expected, obj=f"raw.{table}")  # nothing lost, same types
    assert sorted(relation_frame(sliced, "raw.model_runs")["model"]) == sorted(MODELS)

    expected_marts, got_marts = schema_tables(embedded, "marts"), schema_tables(sliced, "marts")
    assert sorted(got_marts) == sorted(expected_marts) and "group_accuracy" in got_marts
    for name in ("group_accuracy", "confusion_counts", "misclassification_ratios", "answer_status_rates"):
        assert len(expected_marts[name]), f"marts.{name} is empty: the comparison would prove nothing"
    for name, frame in expected_marts.items():
        pd.testing.assert_frame_equal(got_marts[name], frame, obj=f"marts.{name}")
