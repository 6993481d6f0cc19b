"""Per-image human agreement: how many of a stimulus set's validation raters chose the
intended expression of each image (RADIATE's validation data, Conley et al. 2018, is of this
kind; its file layout is not known to this project, so any per-image CSV or Parquet file is
read through `datasets.<name>.human_agreement: {location, columns}`).

Each row: an image (dataset-relative path, as the image ids are) and the share of raters who
chose the image's intended expression (0..1), optionally the number of raters. The share is
joined into the image's `extra.human_agreement` ({share_intended, n_raters}), so it travels
with `raw.dataset_images` into dbt (int_human_category_baseline). Row problems are quarantined
with the reason and the fix; only problems with the file itself raise.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from inference.datasets.base import ImageRecord, QuarantinedRow
from inference.datasets.manifest import _json_safe, _read_frame, _text
from inference.datasets.ratings import normalize_image_id

FIELDS = ("image", "agreement", "n_raters")
REQUIRED = ("image", "agreement")
EXTRA_KEY = "human_agreement"


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def read_agreement(path: Path, columns: Mapping[str, str] | None = None
                   ) -> tuple[dict[str, dict[str, float | None]], list[QuarantinedRow]]:
    """{image_id: {share_intended, n_raters}} of the file's valid rows, and the quarantined rows."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"human agreement file {path} does not exist; fix the dataset's "
                         f"'human_agreement.location'")
    cols = {f: str((columns or {}).get(f, f)) for f in FIELDS}
    frame = _read_frame(path)
    for name in REQUIRED:
        if cols[name] not in frame.columns:
            raise ValueError(f"human agreement file {path} has no column {cols[name]!r} (field {name!r}); add it, "
                             f"or map it with human_agreement.columns.{name}: <column name>")
    found: dict[str, dict[str, float | None]] = {}
    quarantined: list[QuarantinedRow] = []
    for number, row in enumerate(frame.to_dict("records"), start=1):
        image = _text(row.get(cols["image"]))
        share = _number(row.get(cols["agreement"]))
        raters = _number(row.get(cols["n_raters"])) if cols["n_raters"] in frame.columns else None
        problem = None
        if not image:
            problem = f"no image in column {cols['image']!r}; give the image's path relative to the dataset folder"
        elif share is None or not 0.0 <= share <= 1.0:
            problem = (f"agreement {row.get(cols['agreement'])!r} is not a share in [0, 1]; give the share of raters "
                       f"who chose the intended expression (a percentage divided by 100)")
        elif raters is not None and raters < 1:
            problem = f"n_raters {raters:g} is below 1; give the number of raters behind the share"
        if problem:
            quarantined.append(QuarantinedRow(str(path), number, image or None, problem,
                                              {str(k): _json_safe(v) for k, v in row.items()}))
            continue
        found[normalize_image_id(image)] = {"share_intended": share, "n_raters": raters}
    return found, quarantined


def join_agreement(images: Sequence[ImageRecord], path: Path, columns: Mapping[str, str] | None = None
                   ) -> tuple[list[ImageRecord], list[QuarantinedRow]]:
    """The images with `extra.human_agreement` where the file has them; rows naming no loaded
    image are quarantined (a typo, or an image the kind excluded)."""
    found, quarantined = read_agreement(path, columns)
    loaded = {img.image_id for img in images}
    for image_id in sorted(set(found) - loaded):
        quarantined.append(QuarantinedRow(
            str(path), 0, image_id, f"human agreement for {image_id!r}, which is not a loaded image of the dataset; "
            f"fix the path (relative to the dataset folder) or drop the row", {"image": image_id}))
    joined = [replace(img, extra={**img.extra, EXTRA_KEY: found[img.image_id]}) if img.image_id in found else img
              for img in images]
    return joined, quarantined
