"""The raw rows of one dataset and of one (model version x dataset) slice, without Dagster.

The ingestion and inference assets call these and hand the rows to the warehouse (embedded file
or Parquet slice store); tests and scripts call them the same way in plain processes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd

from inference.batch_ledger import ledger_for
from inference.config import BenchmarkConfig, DatasetConfig, ModelConfig
from inference.datasets.base import DatasetLoad, ImageRecord
from inference.datasets.labels import load_label_map
from inference.frames import (Discovery, dataset_images_frame, evaluation_rows, exclusions_frame,
                              human_ratings_frame, quarantined_rows_frame, records_from_rows, utc_now)
from inference.models import EvaluationContext, build_model
from inference.models.base import Evaluation
from inference.models.frame_vote import evaluate_media
from inference.pipeline import dataset_for, dataset_preprocessing
from inference.preprocessing import Preprocessor, evaluate_preprocessed
from inference.warehouse import EvaluationRows


@dataclass
class DatasetRows:
    """What ingesting one dataset writes: raw.dataset_images, raw.dataset_exclusions,
    raw.quarantine, raw.human_ratings."""

    images: pd.DataFrame
    exclusions: pd.DataFrame
    quarantined: pd.DataFrame
    ratings: pd.DataFrame
    load: DatasetLoad  # what the adapter loaded (its ratings file, the ratings' own quarantined rows)


def dataset_rows(bench: BenchmarkConfig, ds: DatasetConfig) -> DatasetRows:
    """Load one dataset (and its human ratings); bad rows become quarantine rows. A dataset that
    loads no image raises `NoImagesLoaded` (naming the reasons and the fix) before any write."""
    dataset = dataset_for(bench, ds)
    location = dataset.locate()
    load = dataset.load(location, load_label_map())
    dataset.require_images(location, load)
    ratings_quarantined = load.ratings.quarantined if load.ratings else []
    return DatasetRows(
        images=dataset_images_frame(ds.name, ds.effective_label_set, load),
        exclusions=exclusions_frame(ds.name, load),
        quarantined=quarantined_rows_frame(ds.name, [*load.quarantined, *ratings_quarantined]),
        ratings=human_ratings_frame(ds.name, load.ratings.ratings if load.ratings else []),
        load=load,
    )


@dataclass
class SliceEvaluation:
    """One evaluation of a model version on a dataset and the raw rows it writes."""

    evaluation: Evaluation
    rows: EvaluationRows
    n_images: int
    started: datetime
    seconds: float


def evaluate_slice(bench: BenchmarkConfig, model_cfg: ModelConfig, ds: DatasetConfig, image_rows: pd.DataFrame, *,
                   run_id: str, discovery: Discovery, progress: Callable[[int, int], Any] | None = None,
                   show_progress_bar: bool = False) -> SliceEvaluation:
    """Run `model_cfg` on the dataset's images (`image_rows`: its raw.dataset_images rows)."""
    dataset = dataset_for(bench, ds)
    images = records_from_rows(image_rows, dataset.image_root(dataset.locate()))
    # resolve: paths in model options are relative to the config file; dataset_config: an imported
    # model reads that dataset's file, a VLM calling an external API checks allow_external_apis
    model = build_model(model_cfg, bench.cache_dir, resolve=bench.resolve, dataset=ds.name, dataset_config=ds)
    label_map = load_label_map()
    slice_key = {"model": model_cfg.name, "model_version": model_cfg.version, "dataset": ds.name}
    context = EvaluationContext(
        true_labels=[label_map.canonical(ds.effective_label_set, r.source_label) for r in images],
        progress=progress, show_progress_bar=show_progress_bar,
        # batch delivery keeps its submitted batches in the deployment's raw store
        batch_ledger=ledger_for(bench.warehouse, bench.raw_slices, slice_key),
    )
    # Every model that reads images gets the dataset's preprocessed images (the step records
    # itself in each answer); built before the clock starts (MTCNN loads its weights).
    step = (Preprocessor.build(dataset_preprocessing(bench, ds), bench.cache_dir, bench.resolve,
                               f"datasets.{ds.name}.preprocessing") if model.reads_images else None)
    started, t0 = utc_now(), time.perf_counter()

    def ask(records: Sequence[ImageRecord], ctx: EvaluationContext) -> Evaluation:
        # the dataset's preprocessing applies to images and to sampled frames; a clip goes as it is
        if step is None or any(r.media_type == "video" for r in records):
            return model.evaluate(records, ctx)
        return evaluate_preprocessed(model, records, ctx, step)

    # clips reach a model that takes images as sampled frames (models.<name>.frames)
    evaluation = evaluate_media(model, images, context, frames=model_cfg.frames, cache_dir=bench.cache_dir,
                                evaluate=ask)
    seconds = time.perf_counter() - t0
    rows = evaluation_rows(evaluation, run_id=run_id, model=model_cfg, dataset=ds.name, n_images=len(images),
                           started=started, discovery=discovery)
    return SliceEvaluation(evaluation=evaluation, rows=rows, n_images=len(images), started=started, seconds=seconds)
