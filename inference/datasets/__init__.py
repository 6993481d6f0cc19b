"""Dataset adapters: turn a configured dataset into image records plus quarantined rows.

Every kind is a `DatasetAdapter` (inference.datasets.base) registered in
`inference.kinds.DATASET_ADAPTERS`; its module is imported when a dataset of that kind is used.
"""

from __future__ import annotations

from pathlib import Path

from inference.config import DatasetConfig
from inference.datasets.base import DatasetAdapter, DatasetContext, DatasetLoad, ImageRecord, QuarantinedRow
from inference.datasets.labels import LabelMap, UnknownLabelSetError, load_label_map
from inference.datasets.london import (
    DEFAULT_BASE_URL, INFO_FILE, download_london_set, load_london_set, obtain_london_set,
)
from inference.datasets.manifest import load_manifest
from inference.kinds import DATASET_ADAPTERS, adapter_class

__all__ = [
    "DEFAULT_BASE_URL",
    "INFO_FILE",
    "DatasetAdapter",
    "DatasetContext",
    "DatasetLoad",
    "ImageRecord",
    "LabelMap",
    "QuarantinedRow",
    "UnknownLabelSetError",
    "dataset_adapter",
    "download_london_set",
    "load_dataset",
    "load_label_map",
    "load_london_set",
    "load_manifest",
    "obtain_london_set",
]


def dataset_adapter(cfg: DatasetConfig, ctx: DatasetContext | None = None) -> DatasetAdapter:
    """The adapter of a configured dataset, from the registry (its module imported now)."""
    return adapter_class(DATASET_ADAPTERS, cfg.kind, f"datasets.{cfg.name}")(cfg, ctx)


def load_dataset(cfg: DatasetConfig, location: Path, label_map: LabelMap) -> DatasetLoad:
    """Images and quarantined rows of the dataset at `location` (no human ratings)."""
    return dataset_adapter(cfg).load(Path(location), label_map, ratings=False)
