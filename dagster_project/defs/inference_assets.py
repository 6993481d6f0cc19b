"""Inference: one (model version x dataset) partition -> raw.predictions (+ raw.model_runs,
raw.transport_failures, raw.image_embeddings, raw.model_versions, the model's raw.quarantine rows).

Thin: the model adapter's `evaluate` does the work, `WarehouseResource.write_evaluation`
writes the slice: one transaction in the warehouse file, or its own Parquet files (`raw_slices:`)."""

import sys

import dagster as dg

from dagster_project.defs.ingestion import DATASET_IMAGES
from dagster_project.defs.partitions import DATASET_DIMENSION, MODEL_DIMENSION, model_dataset_partitions
from dagster_project.defs.resources import WarehouseResource
from dagster_project.settings import benchmark_config
from inference.frames import Discovery
from inference.models.vlm_batch import BatchPending
from inference.slice_rows import evaluate_slice

# Run tags the watched-versions sensor sets (how and when a version was discovered).
DISCOVERED_BY_TAG = "fer/discovered_by"
DISCOVERED_AT_TAG = "fer/discovered_at"
DISCOVERED_FROM_TAG = "fer/discovered_from"

PREDICTIONS = dg.AssetKey(["raw", "predictions"])
MODEL_RUNS = dg.AssetKey(["raw", "model_runs"])
TRANSPORT_FAILURES = dg.AssetKey(["raw", "transport_failures"])
MODEL_VERSIONS = dg.AssetKey(["raw", "model_versions"])

# Written by model_predictions beside the answers, keyed by model version rather than by slice,
# so it is declared (grouped and described in the UI) but not materialized on its own.
model_versions = dg.AssetSpec(
    MODEL_VERSIONS, group_name="inference", kinds={"duckdb"},
    description="Every model version seen, with when and how it was discovered (config, sensor, schedule); "
                "one row per (model, model_version), written by each evaluation (raw/predictions).",
)


def _progress_logger(context: dg.AssetExecutionContext, label: str):
    """progress(done, total) that logs about every 10 %."""
    last = {"decile": -1}

    def progress(done: int, total: int) -> None:
        decile = (10 * done) // max(total, 1)
        if decile > last["decile"]:
            last["decile"] = decile
            context.log.info(f"{label}: {done}/{total} images ({100 * done // max(total, 1)} %)")

    return progress


def _spec(key: dg.AssetKey, description: str, kinds: set[str]) -> dg.AssetSpec:
    # skippable: a batch-delivery run that submitted and returns materializes nothing yet
    return dg.AssetSpec(key, deps=[DATASET_IMAGES], description=description, group_name="inference", kinds=kinds,
                        skippable=True)


@dg.multi_asset(
    specs=[
        _spec(PREDICTIONS, "Every answer of every model about every image: full probability vector, label, "
                           "parse status, face box, preprocessing and latency.", {"duckdb", "pytorch"}),
        _spec(MODEL_RUNS, "One row per evaluation of a model version on a dataset.", {"duckdb"}),
        _spec(TRANSPORT_FAILURES, "VLM requests that never got a model answer after retries (rate limits, "
                                  "timeouts, server errors, safety blocks); never answers, kept out of accuracy "
                                  "denominators.", {"duckdb"}),
    ],
    partitions_def=model_dataset_partitions,
)
def model_predictions(context: dg.AssetExecutionContext, duckdb: WarehouseResource):
    """Run one model version on one dataset and replace that slice of the raw tables."""
    keys = context.partition_key.keys_by_dimension
    bench = benchmark_config()
    model_cfg = bench.model_for_partition(keys[MODEL_DIMENSION])
    ds = bench.datasets[keys[DATASET_DIMENSION]]
    rows = duckdb.dataset_images(ds.name)
    if rows.empty:
        raise dg.Failure(
            f"raw.dataset_images has no rows for dataset {ds.name!r}; materialize "
            f"raw/dataset_images for partition {ds.name!r} first"
        )
    tags = context.run.tags
    try:
        result = evaluate_slice(
            bench, model_cfg, ds, rows, run_id=context.run.run_id,
            discovery=Discovery(tags.get(DISCOVERED_BY_TAG, "config"), tags.get(DISCOVERED_AT_TAG),
                                tags.get(DISCOVERED_FROM_TAG)),
            progress=_progress_logger(context, f"{model_cfg.partition_key} on {ds.name}"),
            show_progress_bar=sys.stderr.isatty(),
        )
    except BatchPending as pending:  # submitted and returns; the finished_api_batches sensor polls
        context.log.info(f"{pending} (open batches: {', '.join(pending.open_batches)})")
        return
    evaluation, out, elapsed, n_images = result.evaluation, result.rows, result.seconds, result.n_images
    slice_key = {"model": model_cfg.name, "model_version": model_cfg.version, "dataset": ds.name}
    duckdb.write_evaluation(slice_key, out)
    failures, frame = out.transport_failures, out.predictions
    if frame is None:
        raise dg.Failure(
            f"{model_cfg.partition_key} gave no answers on dataset {ds.name!r}"
            + (f"; all {len(out.quarantined)} rows of its file were quarantined (see raw.quarantine)"
               if len(out.quarantined) else "")
            + (f"; {len(failures)} requests failed in transport (see raw.transport_failures), e.g. "
               f"{failures['kind'].iloc[0]}: {failures['message'].iloc[0]}" if len(failures) else "")
        )
    n_no_face = int((frame["parse_status"] == "no_face").sum())
    answered = frame[(frame["step_name"] == "emotion") & frame["parse_status"].isin(["ok", "repaired"])]
    failed_images = int(failures["image_id"].nunique()) if len(failures) else 0
    # requests still unanswered at the run's deadline (options.deadline_s): the slice is not
    # complete; the next materialization asks only those (everything answered is cached)
    unanswered = failures[failures["kind"].isin(["deadline", "budget"])] if len(failures) else failures
    if len(unanswered):
        context.log.warning(
            f"{model_cfg.partition_key} on {ds.name}: INCOMPLETE: {len(unanswered)} requests on "
            f"{unanswered['image_id'].nunique()} images still unanswered at the run's deadline "
            f"(options.deadline_s) or never sent once its billed cost reached options.budget_usd; "
            f"materialize the partition again to ask only those")
    usage = evaluation.usage
    if usage is not None and usage.stopped_at_budget:
        context.log.warning(f"{model_cfg.partition_key} on {ds.name}: STOPPED at budget_usd "
                            f"{model_cfg.options.get('budget_usd')}: billed ${usage.cost_usd}; what was "
                            f"answered is stored, the rest was not sent")
    context.log.info(
        f"{model_cfg.partition_key} on {ds.name}: {len(answered)}/{n_images} answered, "
        f"{n_no_face} without a detected face, {elapsed:.1f}s"
        + (f", {len(failures)} transport failures on {failed_images} images" if len(failures) else "")
        + (f", {usage.calls} calls / {usage.cache_hits} cache hits / {usage.rate_limited_calls} throttled"
           if usage else "")
    )
    # usage of a VLM run: calls made, answers served from the response cache, tokens, cost
    usage_metadata = {} if usage is None else {
        "calls": usage.calls, "cache_hits": usage.cache_hits, "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens, "rate_limited_calls": usage.rate_limited_calls,
        "cost_usd": float(usage.cost_usd) if usage.cost_usd is not None else "unpriced",
        "stopped_at_budget": usage.stopped_at_budget,
        **({"concurrency_window": dg.MetadataValue.json(usage.concurrency)} if usage.concurrency else {}),
    }
    yield dg.MaterializeResult(asset_key=PREDICTIONS, metadata={
        "model": model_cfg.name, "model_version": model_cfg.version, "dataset": ds.name,
        "n_images": n_images, "n_answered": len(answered), "n_no_face": n_no_face,
        "seconds": round(elapsed, 2), "ms_per_image": round(1000 * elapsed / max(n_images, 1), 2),
        "predicted_labels": dg.MetadataValue.json(answered["predicted_label"].value_counts().to_dict()),
        "weights_sha256": evaluation.weights_sha256 or "", "n_quarantined": len(out.quarantined),
        "n_transport_failures": len(failures), "n_images_with_transport_failures": failed_images,
        "complete": not len(unanswered), "n_unanswered_at_deadline": len(unanswered),
        **usage_metadata, "dagster/row_count": len(frame),
    })
    yield dg.MaterializeResult(asset_key=MODEL_RUNS, metadata={"run_id": context.run.run_id})
    yield dg.MaterializeResult(asset_key=TRANSPORT_FAILURES, metadata={
        "n_failures": len(failures), "n_images_failed": failed_images,
        "by_kind": dg.MetadataValue.json(failures["kind"].value_counts().to_dict() if len(failures) else {}),
        "dagster/row_count": len(failures),
    })
