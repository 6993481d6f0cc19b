"""Generic dataset adapter: a CSV or Parquet manifest listing images and their labels.

Every row problem is quarantined with a reason naming the row and the fix; only problems
with the file itself (missing file, missing required column, bad options) raise.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd
from PIL import Image, UnidentifiedImageError

from inference.config import ConfigError
from inference.datasets.base import DatasetAdapter, DatasetLoad, ImageRecord, QuarantinedRow
from inference.datasets.labels import LabelMap

FIELDS = ("image", "emotion", "race", "gender", "age", "identity")
ALWAYS_REQUIRED = ("image", "emotion")  # no record can be built without these
MISSING_TEXT = ["", "NA", "N/A", "NaN", "nan", "null", "None"]
PARQUET_SUFFIXES = {".parquet", ".pq"}


class ImageProblem(Exception):
    """An image file that cannot be used; the message says why."""


def inspect_image(path: Path) -> tuple[int, int, str]:
    """Return (width, height, sha256) of a fully decodable image, else raise ImageProblem."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ImageProblem(f"file {path} does not exist; restore it or drop its row") from None
    except OSError as exc:
        raise ImageProblem(f"file {path} cannot be read ({exc}); fix its permissions") from None
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.verify()  # structural checks (e.g. PNG CRCs)
        with Image.open(io.BytesIO(data)) as img:
            img.load()  # a full decode catches truncated JPEGs that verify() lets through
            width, height = img.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageProblem(
            f"file {path} is not a readable image ({type(exc).__name__}: {exc}); "
            f"replace it with an intact copy or drop its row"
        ) from None
    return width, height, hashlib.sha256(data).hexdigest()


class ManifestAdapter(DatasetAdapter):
    """Kind manifest: `location` is the manifest file; image paths are relative to its folder."""

    kind = "manifest"

    def locate(self) -> Path:
        if not self.cfg.location:
            where = f"{self.ctx.config_path}: " if self.ctx.config_path else ""
            raise ConfigError(
                f"{where}datasets.{self.cfg.name}.location: a manifest dataset needs the path of its "
                f"manifest file (CSV or Parquet)"
            )
        return self.ctx.resolve(self.cfg.location)

    def image_root(self, location: Path) -> Path:
        return location.parent

    def load_images(self, location: Path, label_map: LabelMap) -> DatasetLoad:
        return load_manifest(location, self.cfg.effective_label_set, label_map, self.cfg.options)


def load_manifest(
    manifest: Path, label_set: str, label_map: LabelMap, options: dict[str, Any]
) -> DatasetLoad:
    manifest = Path(manifest)
    if not manifest.is_file():
        raise ValueError(f"manifest {manifest} does not exist; fix the dataset's 'location'")
    known_labels = set(label_map.labels(label_set))  # raises for an unknown label_set
    columns, required = _column_options(options, manifest)
    frame = _read_frame(manifest)
    for field in required:
        if columns[field] not in frame.columns:
            raise ValueError(
                f"manifest {manifest} has no column {columns[field]!r} (field {field!r}, required); "
                f"add it, or map it with options.columns.{field}: <column name>"
            )
    mapped = {columns[f] for f in FIELDS}
    extras = [c for c in frame.columns if c not in mapped]
    root = manifest.parent.resolve()
    ctx = _Context(manifest, root, label_set, known_labels, label_map, required)
    for number, raw in enumerate(frame.to_dict(orient="records"), start=1):
        row = {str(k): _json_safe(v) for k, v in raw.items()}
        values = {f: row.get(columns[f]) for f in FIELDS}
        extra = {c: row[c] for c in extras}
        ctx.add(number, values, extra, row)
    return DatasetLoad(images=ctx.images, quarantined=ctx.quarantined)


def _column_options(options: dict[str, Any], manifest: Path) -> tuple[dict[str, str], list[str]]:
    renames = options.get("columns") or {}
    if not isinstance(renames, dict) or any(k not in FIELDS for k in renames):
        raise ValueError(
            f"options.columns for {manifest} must map fields ({', '.join(FIELDS)}) to column "
            f"names, got {renames!r}"
        )
    extra_required = options.get("required") or []
    if isinstance(extra_required, str) or any(f not in FIELDS for f in extra_required):
        raise ValueError(
            f"options.required for {manifest} must be a list of fields ({', '.join(FIELDS)}), "
            f"got {extra_required!r}"
        )
    columns = {f: str(renames.get(f, f)) for f in FIELDS}
    required = list(dict.fromkeys([*ALWAYS_REQUIRED, *extra_required]))
    return columns, required


def _read_frame(manifest: Path) -> pd.DataFrame:
    try:
        if manifest.suffix.lower() in PARQUET_SUFFIXES:
            return pd.read_parquet(manifest)
        # Everything as text: ids like '001' must keep their zeros; age is parsed per row.
        return pd.read_csv(manifest, dtype=str, keep_default_na=False, na_values=MISSING_TEXT)
    except Exception as exc:  # pandas/pyarrow raise many types; all mean "unreadable file"
        raise ValueError(f"manifest {manifest} cannot be read as "
                         f"{'Parquet' if manifest.suffix.lower() in PARQUET_SUFFIXES else 'CSV'}: {exc}") from exc


def _json_safe(value: Any) -> Any:
    """Turn pandas/numpy cell values into plain JSON types (None for missing)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        try:
            value = value.item()  # numpy scalar -> Python scalar
        except (ValueError, AttributeError):
            value = value.tolist() if hasattr(value, "tolist") else str(value)
    if isinstance(value, float) and math.isnan(value):
        return None
    if pd.api.types.is_scalar(value) and pd.isna(value):
        return None
    if hasattr(value, "isoformat"):
        return value.isoformat()
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return str(value)
    return value


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return None if text in MISSING_TEXT else text


class _Context:
    """Per-manifest state for turning rows into records or quarantined rows."""

    def __init__(self, manifest: Path, root: Path, label_set: str, known: set[str],
                 label_map: LabelMap, required: list[str]) -> None:
        self.manifest, self.root, self.label_set = manifest, root, label_set
        self.known, self.seed, self.required = known, label_map.seed_path, required
        self.label_map = label_map
        self.seen: dict[str, int] = {}
        self.images: list[ImageRecord] = []
        self.quarantined: list[QuarantinedRow] = []

    def add(self, number: int, values: dict[str, Any], extra: dict[str, Any], row: dict) -> None:
        image = _text(values["image"])
        problem = self._problem(number, values, image)
        if problem is None:
            try:
                width, height, digest = inspect_image(self.root / image)
            except ImageProblem as exc:
                problem = str(exc)
        if problem is not None:
            self.quarantined.append(QuarantinedRow(
                str(self.manifest), number, image,
                f"{self.manifest.name} row {number}: {problem}", row))
            return
        age = _text(values["age"])
        self.images.append(ImageRecord(
            image_id=self._image_id(image), path=self.root / image, image_hash=digest,
            source_label=_text(values["emotion"]), identity=_text(values["identity"]),
            race=_text(values["race"]), gender=_text(values["gender"]),
            age=None if age is None else float(age), width=width, height=height, extra=extra,
        ))

    @staticmethod
    def _image_id(image: str) -> str:
        return PurePosixPath(os.path.normpath(image.replace("\\", "/"))).as_posix()

    def _problem(self, number: int, values: dict[str, Any], image: str | None) -> str | None:
        empty = [f for f in self.required if _text(values[f]) is None]
        if empty:
            return f"missing value for required field(s) {', '.join(empty)}; fill them in or drop the row"
        if os.path.isabs(image) or PurePosixPath(image.replace("\\", "/")).is_absolute():
            return (f"image path {image!r} is absolute; write it relative to the manifest's "
                    f"folder {self.root}")
        try:
            resolved = (self.root / image).resolve()
        except (OSError, ValueError) as exc:  # e.g. NUL bytes, symlink loops
            return f"image path {image!r} is not a usable path ({exc}); fix it"
        if not resolved.is_relative_to(self.root):
            return (f"image path {image!r} points outside the dataset root {self.root} (via '..' "
                    f"or a symlink); move the file under that folder and fix the path")
        image_id = self._image_id(image)
        if image_id in self.seen:
            return f"duplicate of row {self.seen[image_id]} (image {image_id}); the first row is kept, delete this one"
        self.seen[image_id] = number
        label = _text(values["emotion"])
        if not self.label_map.knows(self.label_set, label):
            return (f"label {label!r} is not in label_set {self.label_set!r} (known: "
                    f"{', '.join(sorted(self.known))}); fix the label, or add a row "
                    f"'{self.label_set},{label},<canonical emotion>' to dbt/seeds/emotion_label_map.csv")
        age = _text(values["age"])
        if age is not None:
            try:
                float(age)
            except ValueError:
                return f"age {age!r} is not a number; write a number or leave it empty"
        return None
