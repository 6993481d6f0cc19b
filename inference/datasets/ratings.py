"""Human ratings of a dataset's images: rater-level long format from CSV or Parquet.

One row per rater x image x dimension. Dimension 'emotion' is categorical: its value is a
label of the dataset's label_set (mapped to canonical emotions by the dbt seed, like the
dataset's own labels). Every other dimension (valence, arousal, naturalness, ...) is
numeric and must lie within its scale: the row's scale_min / scale_max, else the configured
default scale. Every row problem is quarantined with the reason and the fix; only problems
with the file itself (missing file, missing column) raise.
"""

from __future__ import annotations

import math
import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from inference.datasets.base import QuarantinedRow
from inference.datasets.labels import LabelMap
from inference.datasets.manifest import _json_safe, _read_frame, _text

FIELDS = ("rater", "image", "dimension", "value", "scale_min", "scale_max")
REQUIRED = ("rater", "image", "dimension", "value")
CATEGORICAL = "emotion"


@dataclass(frozen=True)
class HumanRating:
    rater: str
    image_id: str
    dimension: str  # lower-case; 'emotion' or a numeric dimension
    value: float | None  # numeric dimensions
    label: str | None  # 'emotion': the label in the dataset's label_set
    scale_min: float | None
    scale_max: float | None


@dataclass
class RatingsLoad:
    ratings: list[HumanRating]
    quarantined: list[QuarantinedRow]


def normalize_image_id(image: str) -> str:
    """The dataset-relative posix path used as image_id (as the manifest adapter writes it)."""
    return PurePosixPath(os.path.normpath(image.replace("\\", "/"))).as_posix()


def load_human_ratings(
    path: Path,
    *,
    label_set: str,
    label_map: LabelMap,
    image_ids: Collection[str],
    columns: Mapping[str, str] | None = None,
    scale: tuple[float, float] = (1.0, 9.0),
) -> RatingsLoad:
    """Read the ratings file; `image_ids` are the dataset's loaded images."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(
            f"human ratings file {path} does not exist; fix the dataset's 'human_ratings.location'"
        )
    renames = dict(columns or {})
    unknown = sorted(set(renames) - set(FIELDS))
    if unknown:
        raise ValueError(
            f"human_ratings.columns for {path}: unknown field(s) {', '.join(unknown)}; "
            f"fields are {', '.join(FIELDS)}"
        )
    cols = {f: str(renames.get(f, f)) for f in FIELDS}
    frame = _read_frame(path)
    for field in REQUIRED:
        if cols[field] not in frame.columns:
            raise ValueError(
                f"human ratings file {path} has no column {cols[field]!r} (field {field!r}, required); "
                f"add it, or map it with human_ratings.columns.{field}: <column name>"
            )
    known_labels = set(label_map.labels(label_set))  # raises for an unknown label_set
    known_images = set(image_ids)
    default_lo, default_hi = float(scale[0]), float(scale[1])
    seen: dict[tuple[str, str, str], int] = {}
    ratings: list[HumanRating] = []
    quarantined: list[QuarantinedRow] = []

    for number, raw in enumerate(frame.to_dict(orient="records"), start=1):
        row = {str(k): _json_safe(v) for k, v in raw.items()}
        values = {f: _text(row.get(cols[f])) for f in FIELDS}

        def bad(problem: str, image: str | None = values["image"]) -> None:
            quarantined.append(QuarantinedRow(
                str(path), number, image, f"{path.name} row {number}: {problem}", row))

        empty = [f for f in REQUIRED if values[f] is None]
        if empty:
            bad(f"missing value for required field(s) {', '.join(empty)}; fill them in or drop the row")
            continue
        image_id = normalize_image_id(values["image"])
        if image_id not in known_images:
            bad(f"image {values['image']!r} is not a loaded image of this dataset (see "
                f"raw.dataset_images; it may be quarantined itself); write its path relative to "
                f"the dataset root, or drop the row")
            continue
        rater, dimension = values["rater"], values["dimension"].lower()
        key = (rater, image_id, dimension)
        if key in seen:
            bad(f"duplicate of row {seen[key]} (rater {rater}, image {image_id}, dimension "
                f"{dimension}); the first row is kept, delete this one")
            continue
        seen[key] = number
        if dimension == CATEGORICAL:
            label = values["value"]
            if not label_map.knows(label_set, label):
                bad(f"emotion label {label!r} is not in label_set {label_set!r} (known: "
                    f"{', '.join(sorted(known_labels))}); fix the label, or add a row "
                    f"'{label_set},{label},<canonical emotion>' to dbt/seeds/emotion_label_map.csv")
                del seen[key]
                continue
            ratings.append(HumanRating(rater, image_id, dimension, None, label, None, None))
            continue
        problem, number_value, lo, hi = _numeric(values, default_lo, default_hi)
        if problem:
            bad(problem)
            del seen[key]
            continue
        ratings.append(HumanRating(rater, image_id, dimension, number_value, None, lo, hi))
    return RatingsLoad(ratings=ratings, quarantined=quarantined)


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _numeric(values: dict[str, Any], lo: float, hi: float) -> tuple[str | None, float, float, float]:
    for end in ("scale_min", "scale_max"):
        if values[end] is not None and _number(values[end]) is None:
            return (f"{end} {values[end]!r} is not a number; write a number or leave it empty "
                    f"(the default scale [{lo:g}, {hi:g}] applies)"), 0.0, lo, hi
    lo = _number(values["scale_min"]) if values["scale_min"] is not None else lo
    hi = _number(values["scale_max"]) if values["scale_max"] is not None else hi
    if not lo < hi:
        return f"scale [{lo:g}, {hi:g}] is empty; scale_min must be below scale_max", 0.0, lo, hi
    value = _number(values["value"])
    if value is None:
        return (f"value {values['value']!r} of dimension {values['dimension']!r} is not a number; "
                f"numeric dimensions need a number on the scale [{lo:g}, {hi:g}] "
                f"(only dimension 'emotion' takes a label)"), 0.0, lo, hi
    if not lo <= value <= hi:
        return (f"value {value:g} of dimension {values['dimension']!r} is outside the scale "
                f"[{lo:g}, {hi:g}]; fix the value, or declare the row's scale with scale_min / "
                f"scale_max (or human_ratings.scale)"), 0.0, lo, hi
    return None, value, lo, hi
