"""Where a configured dataset lives on disk (local copy or downloaded into the cache)."""

from __future__ import annotations

from pathlib import Path

from inference.config import BenchmarkConfig, ConfigError, DatasetConfig


def dataset_location(bench: BenchmarkConfig, ds: DatasetConfig) -> Path:
    """The folder (London Set) or manifest file (manifest datasets) to load."""
    if ds.kind == "london_set":
        from inference.datasets import obtain_london_set

        local = bench.resolve(ds.location) if ds.location else None
        return obtain_london_set(local, bench.cache_dir, dict(ds.options))
    if not ds.location:
        raise ConfigError(
            f"{bench.path}: datasets.{ds.name}.location: a manifest dataset needs the path of its "
            f"manifest file (CSV or Parquet)"
        )
    return bench.resolve(ds.location)


def dataset_root(ds: DatasetConfig, location: Path) -> Path:
    """The folder image paths are relative to."""
    return location.parent if ds.kind == "manifest" else location


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
