"""Where a configured dataset lives and whose quarantine rows are whose: the benchmark config
handed to the dataset adapters (inference.datasets), for assets and scripts."""

from __future__ import annotations

from pathlib import Path

from inference.config import BenchmarkConfig, DatasetConfig
from inference.datasets import DatasetAdapter, DatasetContext, dataset_adapter


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
