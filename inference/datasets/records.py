"""What every folder-layout dataset kind shares: its options (exclusions, code maps, derived
attributes, preprocessing), the named-kind presets (`presets.yaml`, data) and the one path from
a found file (`Candidate`) to an image record, an exclusion or a quarantined row.

Order per file: code maps, then exclusions (before label checks, so an excluded class such as
AffectNet's 'no face' needs no seed row), then the seeds (emotion; race/gender where the kind
requires seeded codes), then the file itself (decoded fully for images, one frame for clips).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from inference.config import ConfigError, explain_errors
from inference.datasets.base import DatasetAdapter, DatasetLoad, ExcludedImage, ImageRecord, QuarantinedRow
from inference.datasets.labels import GroupMaps, LabelMap, label_key, load_group_maps
from inference.datasets.manifest import ImageProblem, inspect_image

if TYPE_CHECKING:
    from inference.config import DatasetConfig
    from inference.datasets.base import DatasetContext

PRESETS_FILE = Path(__file__).resolve().parent / "presets.yaml"
CORE_FIELDS = ("emotion", "race", "gender", "identity", "age")


class Derived(BaseModel):
    """An extra attribute computed from a field's code, e.g. CFD's mouth from HC / HO."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    source: str = Field(alias="from")
    map: dict[str, str]


class KindOptions(BaseModel):
    """Options every folder-layout kind accepts (a named kind's preset fills the defaults)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    # {field: [values]}: images whose field has one of the values (as written, or its canonical
    # value) are left out and recorded in raw.dataset_exclusions with the reason.
    exclude: dict[str, list[str]] = Field(default_factory=dict)
    # {field: {code: value}}: rewrite a field's codes before anything else looks at them.
    codes: dict[str, dict[str, str]] = Field(default_factory=dict)
    # {attribute: {from: field, map: {code: value}}}: extra attributes derived from codes.
    derive: dict[str, Derived] = Field(default_factory=dict)
    # race / gender values must have a row of the dataset's label_set in race_map / gender_map.
    require_seeded: list[Literal["race", "gender"]] = Field(default_factory=list)
    # {field: [low, high]}: numeric attributes (AffectNet valence / arousal) must lie in range.
    ranges: dict[str, tuple[float, float]] = Field(default_factory=dict)
    # Declared for the preprocessing step (not applied here), e.g. {crop: square_center, size: 224}.
    preprocessing: dict[str, Any] | None = None


@functools.cache
def presets() -> dict[str, dict[str, Any]]:
    """The named kinds' default options, from presets.yaml (package data)."""
    body = yaml.safe_load(PRESETS_FILE.read_text(encoding="utf-8")) or {}
    return {kind: dict(options or {}) for kind, options in body.items()}


def kind_options(adapter: DatasetAdapter, model: type[KindOptions]) -> tuple[KindOptions, bool]:
    """The kind's preset overlaid by `datasets.<name>.options` (a key given replaces the
    preset's value whole); also whether `exclude` came from the config."""
    cfg = adapter.cfg
    merged = {**presets().get(cfg.kind, {}), **cfg.options}
    try:
        return model(**merged), "exclude" in cfg.options
    except ValidationError as exc:
        where = str(adapter.ctx.config_path or "benchmark.yaml")
        raise ConfigError(explain_errors(exc, Path(where), f"datasets.{cfg.name}.options", fixes={})) from None


def folder_location(adapter: DatasetAdapter, what: str) -> Path:
    """The configured dataset folder, which must exist; errors name the key and the fix."""
    cfg, where = adapter.cfg, f"{adapter.ctx.config_path}: " if adapter.ctx.config_path else ""
    if not cfg.location:
        raise ConfigError(f"{where}datasets.{cfg.name}.location: kind {cfg.kind} needs the folder {what}")
    path = adapter.ctx.resolve(cfg.location)
    if not path.is_dir():
        raise ConfigError(f"{where}datasets.{cfg.name}.location: {path} is not a folder; point it at "
                          f"the folder {what}")
    return path


class LayoutAdapter(DatasetAdapter):
    """A kind read from a dataset folder as unpacked, with KindOptions over its preset."""

    options_model: type[KindOptions] = KindOptions
    folder_hint = "the dataset unpacks to"

    def __init__(self, cfg: DatasetConfig, ctx: DatasetContext | None = None) -> None:
        super().__init__(cfg, ctx)
        self.kind = cfg.kind  # a preset (chicago_face, caer, ...) answers with its own name
        self.options, self.exclude_configured = kind_options(self, self.options_model)

    def locate(self) -> Path:
        return folder_location(self, self.folder_hint)

    def empty_load_hint(self, location: Path, load: DatasetLoad) -> str:
        """A folder below `location` that does load (a copy unpacked one level deeper), else
        which folder the location must be."""
        where = f"datasets.{self.cfg.name}.location"
        loads = self._subfolder_that_loads(location)
        if loads is not None:
            return f"{loads} holds the {self.kind} layout: point {where} at it"
        return f"point {where} at the folder {self.folder_hint} (it is {location} now)"

    def _subfolder_that_loads(self, location: Path, depth: int = 2, limit: int = 20) -> Path | None:
        """The first folder under `location` (breadth first, `depth` levels, `limit` folders)
        from which this kind loads an image; only asked after a load found none."""
        from inference.datasets.labels import load_label_map

        frontier, tried = [Path(location)], 0
        for _ in range(depth):
            frontier = [sub for folder in frontier for sub in sorted(folder.iterdir()) if sub.is_dir()]
            for folder in frontier:
                if tried >= limit:
                    return None
                tried += 1
                try:
                    if self.load_images(folder, load_label_map()).images:
                        return folder
                except Exception:  # noqa: BLE001 - a folder that is not the layout: try the next
                    continue
        return None

    def preprocessing(self) -> dict[str, Any] | None:
        return self.options.preprocessing

    def rules(self, label_map: LabelMap, media_type: str = "image") -> Rules:
        origin = (f"datasets.{self.cfg.name}.options" if self.exclude_configured
                  else f"the {self.cfg.kind} kind's default")
        label_map.labels(self.cfg.effective_label_set)  # an unknown label_set fails here, naming the seed
        return Rules(name=self.cfg.name, label_set=self.cfg.effective_label_set, labels=label_map,
                     options=self.options, exclude_origin=origin, media_type=media_type)


@dataclass(frozen=True)
class Candidate:
    """A file a kind found, with the values its layout gives (emotion, race, gender, identity,
    age, and any other attribute, which goes to `extra`)."""

    image_id: str  # posix path relative to the dataset root
    path: Path
    source: str  # the file that named it (a list file), else the image file itself
    row_number: int  # 1-based row in `source`; 0 when the file itself is the source
    values: dict[str, Any]


@dataclass(frozen=True)
class Rules:
    name: str  # datasets.<name>, named in fixes
    label_set: str
    labels: LabelMap
    options: KindOptions
    exclude_origin: str  # where the exclusions come from, for the recorded reason
    media_type: str = "image"
    groups: GroupMaps | None = None


def build_load(candidates: Iterable[Candidate], rules: Rules, quarantined: list[QuarantinedRow] | None = None) -> DatasetLoad:
    groups = rules.groups or load_group_maps()
    load = DatasetLoad(images=[], quarantined=list(quarantined or []))
    seen: dict[str, str] = {}  # image_id -> where it was first listed
    for cand in candidates:
        where = f"{Path(cand.source).name} row {cand.row_number}" if cand.row_number else cand.source
        if cand.image_id in seen:  # a list file naming an image twice
            load.quarantined.append(QuarantinedRow(cand.source, cand.row_number, cand.image_id, (
                f"{cand.image_id}: listed again ({seen[cand.image_id]} lists it first); the first is "
                f"kept, delete this one"), _plain(cand.values)))
            continue
        seen[cand.image_id] = where
        values = _coded(dict(cand.values), rules.options)
        excluded = _exclusion(cand.image_id, values, rules, groups)
        if excluded is not None:
            load.excluded.append(excluded)
            continue
        problem = _label_problem(values, rules, groups)
        if problem is None:
            try:
                width, height, digest, info = inspect_media(cand.path, rules.media_type)
            except ImageProblem as exc:
                problem = str(exc)
        if problem is not None:
            load.quarantined.append(QuarantinedRow(cand.source, cand.row_number, cand.image_id,
                                                   f"{cand.image_id}: {problem}", _plain(values)))
            continue
        extra = {k: (float(v) if k in rules.options.ranges else v) for k, v in values.items()
                 if k not in CORE_FIELDS and v is not None}
        load.images.append(ImageRecord(
            image_id=cand.image_id, path=cand.path, image_hash=digest, source_label=str(values["emotion"]),
            identity=_text(values.get("identity")), race=_text(values.get("race")),
            gender=_text(values.get("gender")), age=_number(values.get("age")), width=width, height=height,
            extra={**extra, **info}, media_type=rules.media_type,
        ))
    return load


def _coded(values: dict[str, Any], options: KindOptions) -> dict[str, Any]:
    for field, codes in options.codes.items():
        value = values.get(field)
        if value is not None:
            keyed = {label_key(k): v for k, v in codes.items()}
            values[field] = keyed.get(label_key(str(value)), value)
    for attribute, rule in options.derive.items():
        value = values.get(rule.source)
        keyed = {label_key(k): v for k, v in rule.map.items()}
        if value is not None and label_key(str(value)) in keyed:
            values[attribute] = keyed[label_key(str(value))]
    return values


def _exclusion(image_id: str, values: dict[str, Any], rules: Rules, groups: GroupMaps) -> ExcludedImage | None:
    for field, listed in rules.options.exclude.items():
        value = values.get(field)
        if value is None:
            continue
        spellings = {label_key(str(value))}
        if field == "emotion":
            spellings.add(label_key(rules.labels.canonical(rules.label_set, str(value)) or ""))
        elif field in ("race", "gender"):
            spellings.add(groups.canonical(field, rules.label_set, str(value)) or "")
        if spellings & {label_key(v) for v in listed}:
            return ExcludedImage(image_id, field, str(value), (
                f"{field} {value!r} is excluded by {rules.exclude_origin} (exclude.{field}: {listed}); "
                f"set datasets.{rules.name}.options.exclude to change which images are left out"))
    return None


def _label_problem(values: dict[str, Any], rules: Rules, groups: GroupMaps) -> str | None:
    label = _text(values.get("emotion"))
    if not rules.labels.knows(rules.label_set, label):
        return (f"label {label!r} is not in label_set {rules.label_set!r} (known: "
                f"{', '.join(rules.labels.labels(rules.label_set))}); add a row '{rules.label_set},{label},"
                f"<canonical emotion>' to dbt/seeds/emotion_label_map.csv, or exclude it with "
                f"datasets.{rules.name}.options.exclude.emotion")
    for field in rules.options.require_seeded:
        value = _text(values.get(field))
        if value is not None and not groups.knows(field, rules.label_set, value):
            return (f"{field} code {value!r} has no row for label_set {rules.label_set!r} in "
                    f"dbt/seeds/{field}_map.csv; add '{rules.label_set},{value},<canonical {field}>' there")
    age = values.get("age")
    if age is not None and _number(age) is None and _text(age) is not None:
        return f"age {age!r} is not a number; fix it in the dataset's files"
    for field, (low, high) in rules.options.ranges.items():
        value = _number(values.get(field))  # a number or None
        if value is None or not low <= value <= high:
            return (f"{field} {values.get(field)!r} is not a number in [{low}, {high}]; fix the row, or "
                    f"exclude its class with datasets.{rules.name}.options.exclude")
    return None


def inspect_media(path: Path, media_type: str) -> tuple[int, int, str, dict[str, Any]]:
    """(width, height, sha256, extra facts) of a usable file, else ImageProblem."""
    if media_type == "video":
        return inspect_video(path)
    width, height, digest = inspect_image(path)
    return width, height, digest, {}


def inspect_video(path: Path) -> tuple[int, int, str, dict[str, Any]]:
    """A clip is usable when OpenCV (FFmpeg) opens it and decodes its first frame; its frame
    count and rate go to `extra`. Decoding for models is the video step's job, not this one."""
    import cv2  # lazy: only video kinds need it

    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        raise ImageProblem(f"file {path} cannot be read ({exc}); restore it or delete it") from None
    capture = cv2.VideoCapture(str(path))
    try:
        ok, frame = capture.read() if capture.isOpened() else (False, None)
        frames, fps = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), float(capture.get(cv2.CAP_PROP_FPS))
    finally:
        capture.release()
    if not ok or frame is None:
        raise ImageProblem(f"file {path} is not a readable video clip (no frame decodes); replace it "
                           f"with an intact copy or delete it")
    height, width = frame.shape[:2]
    return int(width), int(height), digest, {"frame_count": frames, "fps": fps}


def _text(value: Any) -> str | None:
    text = None if value is None else str(value).strip()
    return text or None


def _number(value: Any) -> float | None:
    try:
        return None if _text(value) is None else float(value)
    except (TypeError, ValueError):
        return None


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    return {k: (v if isinstance(v, (int, float, bool)) or v is None else str(v)) for k, v in values.items()}
