"""Dataset adapters: turn a configured dataset into image records plus quarantined rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from inference.config import DatasetConfig
from inference.datasets.base import DatasetLoad, ImageRecord, QuarantinedRow
from inference.datasets.labels import LabelMap, UnknownLabelSetError, load_label_map
from inference.datasets.london import DEFAULT_BASE_URL, INFO_FILE, download_london_set, load_london_set
from inference.datasets.manifest import load_manifest

__all__ = [
    "DatasetLoad",
    "ImageRecord",
    "LabelMap",
    "QuarantinedRow",
    "UnknownLabelSetError",
    "download_london_set",
    "load_dataset",
    "load_label_map",
    "load_london_set",
    "load_manifest",
    "obtain_london_set",
]


def load_dataset(cfg: DatasetConfig, location: Path, label_map: LabelMap) -> DatasetLoad:
    label_set = cfg.effective_label_set
    label_map.labels(label_set)  # fail early, naming the seed, for an unknown label_set
    if cfg.kind == "manifest":
        return load_manifest(Path(location), label_set, label_map, cfg.options)
    if cfg.kind == "london_set":
        return _known_labels_only(load_london_set(Path(location)), label_set, label_map)
    raise ValueError(f"dataset {cfg.name!r}: no adapter for kind {cfg.kind!r}")


def _known_labels_only(load: DatasetLoad, label_set: str, label_map: LabelMap) -> DatasetLoad:
    """The London loader emits fixed labels; a seed without them must not pass silently."""
    kept, quarantined = [], list(load.quarantined)
    for image in load.images:
        if label_map.knows(label_set, image.source_label):
            kept.append(image)
        else:
            quarantined.append(QuarantinedRow(
                source=str(image.path.parent.parent), row_number=0, image_path=image.image_id,
                reason=(f"{image.image_id}: label {image.source_label!r} is not in label_set "
                        f"{label_set!r}; add a row '{label_set},{image.source_label},<canonical "
                        f"emotion>' to dbt/seeds/emotion_label_map.csv"),
            ))
    return DatasetLoad(images=kept, quarantined=quarantined)


def obtain_london_set(cfg_location: Path | None, cache_dir: Path, options: dict[str, Any]) -> Path:
    """Use the configured local copy when it exists, else download a verified one into the cache.

    options: base_url (a mirror with the published layout), info_url, checksums (a
    sha256sum file; needed when the mirror does not serve the full-size originals).
    """
    if cfg_location is not None and (Path(cfg_location) / INFO_FILE).is_file():
        return Path(cfg_location)
    checksums = options.get("checksums")
    return download_london_set(
        Path(cache_dir) / "london_set",
        base_url=options.get("base_url", DEFAULT_BASE_URL),
        checksums=Path(checksums) if checksums else None,
        info_url=options.get("info_url"),
    )
