"""What a dataset adapter returns: loadable images and the rows it had to quarantine."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


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


@dataclass(frozen=True)
class QuarantinedRow:
    source: str  # the file that held the row (manifest path, or dataset folder)
    row_number: int  # 1-based data row in that file; 0 when the problem is not row-based
    image_path: str | None
    reason: str  # says what is wrong and how to fix it
    record: dict[str, Any] = field(default_factory=dict)


@dataclass
class DatasetLoad:
    images: list[ImageRecord]
    quarantined: list[QuarantinedRow]
