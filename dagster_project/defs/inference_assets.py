"""Inference: one (model version x dataset) partition -> raw.predictions (+ raw.model_runs,
raw.transport_failures)."""


import inspect
import sys
import time

import dagster as dg
import pandas as pd

from dagster_project.defs.ingestion import DATASET_IMAGES
from dagster_project.defs.partitions import model_dataset_partitions
from dagster_project.defs.resources import WarehouseResource
from dagster_project.settings import benchmark_config
from inference import warehouse
from inference.datasets.labels import load_label_map
from inference.frames import (
    embeddings_frame,
    predictions_frame,
    quarantined_rows_frame,
    records_from_rows,
    redacted_options,
    transport_failures_frame,
    utc_now,
)
from inference.models import build_model
from inference.pipeline import dataset_location, dataset_root

# Run tags the watched-versions sensor sets (how and when a version was discovered).
DISCOVERED_BY_TAG = "fer/discovered_by"
DISCOVERED_AT_TAG = "fer/discovered_at"
DISCOVERED_FROM_TAG = "fer/discovered_from"

PREDICTIONS = dg.AssetKey(["raw", "predictions"])
MODEL_RUNS = dg.AssetKey(["raw", "model_runs"])
TRANSPORT_FAILURES = dg.AssetKey(["raw", "transport_failures"])


def _predict_kwargs(model, images, ds, context: dg.AssetExecutionContext, label: str) -> dict:
    """What this adapter's predict takes beyond the images: true labels for a probe trained
    out-of-fold (CLIP linear probe), a progress callback for long remote runs."""
    kwargs: dict = {}
    parameters = inspect.signature(model.predict).parameters
    if getattr(model, "needs_true_labels", False):
        label_map = load_label_map()
        kwargs["true_labels"] = [label_map.canonical(ds.effective_label_set, r.source_label) for r in images]
    if "progress" in parameters:
        kwargs["progress"] = _progress_logger(context, f"{label} on {ds.name}")
        kwargs["use_tqdm"] = sys.stderr.isatty()
    return kwargs


def _progress_logger(context: dg.AssetExecutionContext, label: str):
    """progress(done, total) that logs about every 10 %."""
    last = {"decile": -1}

    def progress(done: int, total: int) -> None:
        decile = (10 * done) // max(total, 1)
        if decile > last["decile"]:
            last["decile"] = decile
            context.log.info(f"{label}: {done}/{total} images ({100 * done // max(total, 1)} %)")

    return progress


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            PREDICTIONS,
            deps=[DATASET_IMAGES],
            description=(
                "Every answer of every model about every image: full probability vector, label, "
                "parse status, face box, preprocessing and latency."
            ),
            group_name="inference",
            kinds={"duckdb", "pytorch"},
        ),
        dg.AssetSpec(
            MODEL_RUNS,
            deps=[DATASET_IMAGES],
            description="One row per evaluation of a model version on a dataset.",
            group_name="inference",
            kinds={"duckdb"},
        ),
        dg.AssetSpec(
            TRANSPORT_FAILURES,
            deps=[DATASET_IMAGES],
            description=(
                "VLM requests that never got a model answer after retries (rate limits, timeouts, "
                "server errors, safety blocks); never answers, kept out of accuracy denominators."
            ),
            group_name="inference",
            kinds={"duckdb"},
        ),
    ],
    partitions_def=model_dataset_partitions,
)
def model_predictions(context: dg.AssetExecutionContext, duckdb: WarehouseResource):
    """Run one model version on one dataset and replace that slice of raw.predictions."""
    keys = context.partition_key.keys_by_dimension
    bench = benchmark_config()
    model_cfg = bench.model_for_partition(keys["model"])
    ds = bench.datasets[keys["dataset"]]
    with duckdb.get_connection() as con:
        rows = con.execute(
            "select * from raw.dataset_images where dataset = ? order by image_id", [ds.name]
        ).df()
    if rows.empty:
        raise dg.Failure(
            f"raw.dataset_images has no rows for dataset {ds.name!r}; materialize "
            f"raw/dataset_images for partition {ds.name!r} first"
        )
    images = records_from_rows(rows, dataset_root(ds, dataset_location(bench, ds)))
    # resolve: paths in model options are relative to the config file; dataset: an imported
    # model reads that dataset's file (and fails naming options.files.<dataset> without one)
    # dataset_config: a VLM calling an external API checks datasets.<name>.allow_external_apis
    model = build_model(model_cfg, bench.cache_dir, resolve=bench.resolve, dataset=ds.name,
                        dataset_config=ds)
    started = utc_now()
    t0 = time.perf_counter()
    answers = model.predict(images, **_predict_kwargs(model, images, ds, context, model_cfg.partition_key))
    elapsed = time.perf_counter() - t0
    slice_key = {"model": model_cfg.name, "model_version": model_cfg.version, "dataset": ds.name}
    # Requests that never got an answer: their own table, replaced like the predictions slice.
    failures = transport_failures_frame(
        getattr(model, "transport_failures", []), run_id=context.run.run_id,
        model=model_cfg.name, model_version=model_cfg.version, dataset=ds.name,
    )
    with duckdb.get_connection() as con:
        warehouse.replace_slice(con, "raw.transport_failures", slice_key, failures)
    usage = dict(getattr(model, "usage", None) or {})
    # Rows the adapter could not use (imported files): replace only this file's quarantine
    # rows, never the ingestion's.
    quarantine_sources = list(getattr(model, "quarantine_sources", []))
    quarantined = quarantined_rows_frame(ds.name, getattr(model, "quarantined", []))
    if quarantine_sources:
        with duckdb.get_connection() as con:
            warehouse.replace_quarantine(con, ds.name, quarantined, sources=quarantine_sources)
    if not answers:
        raise dg.Failure(
            f"{model_cfg.partition_key} gave no answers on dataset {ds.name!r}"
            + (f"; all {len(quarantined)} rows of its file were quarantined (see raw.quarantine)"
               if len(quarantined) else "")
            + (f"; {len(failures)} requests failed in transport (see raw.transport_failures), e.g. "
               f"{failures['kind'].iloc[0]}: {failures['message'].iloc[0]}" if len(failures) else "")
        )
    frame = predictions_frame(
        answers,
        run_id=context.run.run_id,
        model=model_cfg.name,
        model_version=model_cfg.version,
        model_kind=model_cfg.kind,
        label_set=model.label_set,
        dataset=ds.name,
    )
    n_no_face = int((frame["parse_status"] == "no_face").sum())
    run_row = pd.DataFrame(
        [
            {
                "run_id": context.run.run_id,
                "model": model_cfg.name,
                "model_version": model_cfg.version,
                "model_kind": model_cfg.kind,
                "dataset": ds.name,
                "started_at": started,
                "finished_at": utc_now(),
                "n_images": len(images),
                "n_answers": len(frame),
                "n_no_face": n_no_face,
                "weights_sha256": model.weights_sha256,
                "options": redacted_options(dict(model_cfg.options)),
            }
        ]
    )
    embeddings = embeddings_frame(getattr(model, "embeddings", None), run_id=context.run.run_id, **slice_key)
    tags = context.run.tags
    with duckdb.get_connection() as con:
        warehouse.replace_slice(con, "raw.predictions", slice_key, frame)
        if embeddings is not None:
            warehouse.replace_slice(con, "raw.image_embeddings", slice_key, embeddings)
        warehouse.record_model_version(
            con, model=model_cfg.name, model_version=model_cfg.version, model_kind=model_cfg.kind,
            discovered_by=tags.get(DISCOVERED_BY_TAG, "config"),
            discovered_at=tags.get(DISCOVERED_AT_TAG) or started, discovered_from=tags.get(DISCOVERED_FROM_TAG),
            run_id=context.run.run_id,
        )
        con.execute(
            "delete from raw.model_runs where model = ? and model_version = ? and dataset = ?",
            list(slice_key.values()),
        )
        con.register("_run", run_row)
        con.execute(f"insert into raw.model_runs ({', '.join(run_row.columns)}) select * from _run")
    answered = frame[(frame["step_name"] == "emotion") & frame["parse_status"].isin(["ok", "repaired"])]
    failed_images = int(failures["image_id"].nunique()) if len(failures) else 0
    context.log.info(
        f"{model_cfg.partition_key} on {ds.name}: {len(answered)}/{len(images)} answered, "
        f"{n_no_face} without a detected face, {elapsed:.1f}s"
        + (f", {len(failures)} transport failures on {failed_images} images" if len(failures) else "")
        + (f", {usage.get('calls', 0)} calls / {usage.get('cache_hits', 0)} cache hits" if usage else "")
    )
    # usage of a VLM run: calls made, answers served from the response cache, tokens, cost
    usage_metadata = {}
    if usage:
        usage_metadata = {
            "calls": int(usage.get("calls") or 0),
            "cache_hits": int(usage.get("cache_hits") or 0),
            "input_tokens": int(usage.get("input_tokens") or 0),
            "output_tokens": int(usage.get("output_tokens") or 0),
            "cost_usd": float(usage["cost_usd"]) if usage.get("cost_usd") is not None else "unpriced",
        }
    yield dg.MaterializeResult(
        asset_key=PREDICTIONS,
        metadata={
            "model": model_cfg.name,
            "model_version": model_cfg.version,
            "dataset": ds.name,
            "n_images": len(images),
            "n_answered": len(answered),
            "n_no_face": n_no_face,
            "seconds": round(elapsed, 2),
            "ms_per_image": round(1000 * elapsed / max(len(images), 1), 2),
            "predicted_labels": dg.MetadataValue.json(
                answered["predicted_label"].value_counts().to_dict()
            ),
            "weights_sha256": model.weights_sha256 or "",
            "n_quarantined": len(quarantined),
            "n_transport_failures": len(failures),
            "n_images_with_transport_failures": failed_images,
            **usage_metadata,
            "dagster/row_count": len(frame),
        },
    )
    yield dg.MaterializeResult(asset_key=MODEL_RUNS, metadata={"run_id": context.run.run_id})
    yield dg.MaterializeResult(
        asset_key=TRANSPORT_FAILURES,
        metadata={
            "n_failures": len(failures),
            "n_images_failed": failed_images,
            "by_kind": dg.MetadataValue.json(
                failures["kind"].value_counts().to_dict() if len(failures) else {}),
            "dagster/row_count": len(failures),
        },
    )
