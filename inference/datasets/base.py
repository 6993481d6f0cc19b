"""The dataset-adapter interface: what an adapter returns (`DatasetLoad`: loadable images, the
rows it had to quarantine, human ratings) and how it finds its data (`DatasetAdapter.locate`).
Kinds register in `inference.kinds.DATASET_ADAPTERS`; orchestration calls only this interface."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from inference.config import DatasetConfig
    from inference.datasets.labels import LabelMap
    from inference.datasets.ratings import RatingsLoad


@dataclass(frozen=True)
class ImageRecord:
    image_id: str  # posix path relative to the dataset root; unique within the dataset
    path: Path  # absolute path of the readable image file
    image_hash: str  # sha256 of the file bytes (images are keyed by content)
    source_label: str  # the dataset's own emotion label, mapped to canonical labels by a dbt seed
    identity: str | None
    race: str | None
    gender: str | None
    age: float | None
    width: int
    height: int
    extra: dict[str, Any] = field(default_factory=dict)
    media_type: str = "image"  # "image", or "video" for clips (CAER); width/height of its frames


@dataclass(frozen=True)
class QuarantinedRow:
    source: str  # the file that held the row (manifest path, or dataset folder)
    row_number: int  # 1-based data row in that file; 0 when the problem is not row-based
    image_path: str | None
    reason: str  # says what is wrong and how to fix it
    record: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ExcludedImage:
    """An image left out on purpose (a configured or preset exclusion), kept on record with why:
    `raw.dataset_exclusions`, so an analysis's denominator never shrinks silently."""

    image_id: str
    field: str  # what the rule looked at: emotion, race, gender, or another attribute
    value: str  # the image's value of that field, as the dataset writes it
    reason: str


@dataclass
class DatasetLoad:
    images: list[ImageRecord]
    quarantined: list[QuarantinedRow]
    ratings: RatingsLoad | None = None  # the configured human ratings (None: none configured)
    ratings_source: Path | None = None  # their file
    excluded: list[ExcludedImage] = field(default_factory=list)


def _relative_to_cwd(location: str) -> Path:
    return Path(os.path.expanduser(location)).resolve()


@dataclass(frozen=True)
class DatasetContext:
    """What locating a dataset may need besides its config."""

    resolve: Callable[[str], Path] = _relative_to_cwd  # a path written in the config -> absolute
    cache_dir: Path = Path("data/cache")  # downloads land here
    config_path: Path | None = None  # the benchmark file, named in errors


class NoImagesLoaded(ValueError):
    """An ingestion that found no loadable image: nothing is written, the run fails."""


# How many quarantine reasons an empty load's error quotes (the rest are counted).
QUOTED_REASONS = 3


class DatasetAdapter(ABC):
    """A dataset kind: where its data is (`locate`) and what it holds (`load_images`); `load`
    adds the configured human ratings."""

    kind: ClassVar[str]

    def __init__(self, cfg: DatasetConfig, ctx: DatasetContext | None = None) -> None:
        self.cfg = cfg
        self.ctx = ctx or DatasetContext()

    @abstractmethod
    def locate(self) -> Path:
        """The dataset's data on this machine (a folder, a manifest file), obtained (downloaded
        and verified) first when the kind can do that."""

    def image_root(self, location: Path) -> Path:
        """The folder image ids are relative to."""
        return location

    def preprocessing(self) -> dict[str, Any] | None:
        """The kind's default preprocessing declaration (e.g. {crop: square_center, size: 224}),
        for the preprocessing step to apply; None when the kind declares none."""
        return None

    @abstractmethod
    def load_images(self, location: Path, label_map: LabelMap) -> DatasetLoad:
        """The loadable images (labels known to the seed) and the quarantined rows."""

    def load(self, location: Path, label_map: LabelMap, *, ratings: bool = True) -> DatasetLoad:
        """Images, quarantined rows and (unless `ratings` is false) the configured human ratings
        of the loaded images."""
        from inference.datasets.ratings import load_human_ratings

        label_set = self.cfg.effective_label_set
        label_map.labels(label_set)  # fail early, naming the seed, for an unknown label_set
        load = self.load_images(location, label_map)
        agreement = self.cfg.human_agreement
        if agreement is not None:
            from inference.datasets.human_agreement import join_agreement

            load.images, unmatched = join_agreement(load.images, self.ctx.resolve(agreement.location),
                                                    agreement.columns)
            load.quarantined = [*load.quarantined, *unmatched]
        spec = self.cfg.human_ratings
        if spec is not None and ratings:
            load.ratings_source = self.ctx.resolve(spec.location)
            load.ratings = load_human_ratings(
                load.ratings_source, label_set=label_set, label_map=label_map,
                image_ids={img.image_id for img in load.images}, columns=spec.columns, scale=spec.scale,
            )
        return load

    def empty_load_hint(self, location: Path, load: DatasetLoad) -> str:
        """What to change when `load` holds no image (the kind knows its layout best)."""
        return f"check that datasets.{self.cfg.name}.location points at the {self.kind} data"

    def require_images(self, location: Path, load: DatasetLoad) -> None:
        """Fail, naming the first quarantine reasons and a fix, when nothing loaded: a dataset of
        zero images is a wrong layout or location, never a result."""
        if load.images:
            return
        reasons = [row.reason for row in load.quarantined[:QUOTED_REASONS]]
        more = len(load.quarantined) - len(reasons)
        found = (f"{len(load.quarantined)} rows quarantined, e.g.: " + "; ".join(reasons)
                 + (f" (and {more} more)" if more > 0 else "")) if reasons else "no row quarantined"
        excluded = f", {len(load.excluded)} excluded by its rules" if load.excluded else ""
        raise NoImagesLoaded(
            f"datasets.{self.cfg.name} (kind {self.kind}): no image loaded from {location}{excluded}; nothing "
            f"was written. Fix: {self.empty_load_hint(location, load)}. What was found: {found}")
