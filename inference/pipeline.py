"""Where a configured dataset lives and whose quarantine rows are whose: the benchmark config
handed to the dataset adapters (inference.datasets), for assets and scripts."""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from inference.config import BenchmarkConfig, ConfigError, DatasetConfig, explain_errors
from inference.datasets import DatasetAdapter, DatasetContext, dataset_adapter
from inference.preprocessing_config import PreprocessingConfig


def dataset_for(bench: BenchmarkConfig, ds: DatasetConfig) -> DatasetAdapter:
    """The adapter of `ds`, resolving its paths against the config file."""
    return dataset_adapter(ds, DatasetContext(resolve=bench.resolve, cache_dir=bench.cache_dir,
                                              config_path=bench.path))


def dataset_location(bench: BenchmarkConfig, ds: DatasetConfig) -> Path:
    """The dataset's data on this machine (obtained first when its kind can download it)."""
    return dataset_for(bench, ds).locate()


def dataset_root(ds: DatasetConfig, location: Path) -> Path:
    """The folder image paths are relative to."""
    return dataset_adapter(ds).image_root(location)


def dataset_preprocessing(bench: BenchmarkConfig, ds: DatasetConfig) -> PreprocessingConfig:
    """`datasets.<name>.preprocessing`, else the kind's default (presets.yaml, or the dataset's
    options.preprocessing), else none (the images as stored)."""
    if ds.preprocessing is not None:
        return ds.preprocessing
    default = dataset_for(bench, ds).preprocessing()
    try:
        return PreprocessingConfig(**(default or {}))
    except ValidationError as exc:
        raise ConfigError(explain_errors(exc, bench.path, f"datasets.{ds.name}.options.preprocessing")
                          + f"\n(the {ds.kind} kind's default is in inference/datasets/presets.yaml; "
                          f"datasets.{ds.name}.preprocessing replaces it)") from None


def human_ratings_location(bench: BenchmarkConfig, ds: DatasetConfig) -> Path | None:
    """The configured human ratings file of a dataset, or None when it has none."""
    return bench.resolve(ds.human_ratings.location) if ds.human_ratings else None


def model_quarantine_sources(bench: BenchmarkConfig, dataset: str) -> list[str]:
    """Files whose quarantined rows belong to model assets (imported predictions of
    `dataset`); ingestion replaces the dataset's quarantine rows except these."""
    sources = []
    for model in bench.models.values():
        if model.kind == "imported" and model.covers(dataset):
            sources.append(str(bench.resolve(str(model.options["files"][dataset]))))
    return sorted(set(sources))
