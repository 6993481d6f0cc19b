"""Predictions made elsewhere, imported from a CSV or Parquet file per dataset.

Config (models.<name>):

    kind: imported
    family: vlm                   # required: fer | vlm | clip | other (what produced the answers)
    version: 2024-06-run3
    options:
      files: {my_faces: predictions/my_faces.csv}   # per dataset, relative to the config file
      label_set: canonical        # vocabulary of the label column (seed emotion_label_map)
      columns: {image: path}      # renames {field: column in the file}
      value_scale: [-1, 1]        # scale of the valence / arousal columns (default [1, 9])
      target_scale: [1, 9]        # scale stored in predicted_value (default [1, 9])
      protocol: imported          # protocol recorded with the answers

File columns: image (path relative to the dataset root, i.e. the image_id), label (empty =
no answer), optional valence, arousal, sample_index (default 0), raw_text, parse_status.
Each row gives step 1 'emotion' and, when the file has them, step 2 'valence' and step 3
'arousal' with predicted_value on the target scale (raw_value as in the file, value_mapping
the formula). Rows naming an unknown image or label, a duplicate, or an unusable number are
returned in `.quarantined` (source = the file) instead.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from inference.config import ModelConfig
from inference.datasets.base import ImageRecord, QuarantinedRow
from inference.datasets.labels import LabelMap, load_label_map
from inference.datasets.manifest import _json_safe, _read_frame, _text
from inference.datasets.ratings import normalize_image_id
from inference.models.base import (
    PARSE_STATUSES, Answer, BuildContext, Evaluation, EvaluationContext, KindOptions, ModelAdapter,
    parse_options,
)
from inference.scales import as_scale, in_scale, mapping_formula, rescale

FIELDS = ("image", "label", "valence", "arousal", "sample_index", "raw_text", "parse_status")
DIMENSIONS = (("valence", 2), ("arousal", 3))
DEFAULT_SCALE = (1.0, 9.0)


class ImportedOptionsError(ValueError):
    """A problem in the options of an imported model."""


class ImportedOptions(KindOptions):
    """`models.<name>.options` of kind imported (see the module docstring)."""

    files: dict[str, str] | None = None  # {dataset: predictions file}, relative to the config file
    label_set: str | None = None  # default canonical
    columns: dict[str, str] | None = None  # {field: column in the file}
    value_scale: Any = None  # [low, high] (checked by inference.scales.as_scale)
    target_scale: Any = None
    protocol: str | None = None  # default imported


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class ImportedPredictions(ModelAdapter):
    """Adapter over one imported predictions file (one model version on one dataset)."""

    kind = "imported"
    accepts_video = True  # answers come from a file keyed by image id; no pixels are read
    reads_images = False  # the answers come from a file: no image is sent, so none is preprocessed

    def __init__(
        self,
        path: Path,
        *,
        label_set: str = "canonical",
        columns: dict[str, str] | None = None,
        value_scale: tuple[float, float] = DEFAULT_SCALE,
        target_scale: tuple[float, float] = DEFAULT_SCALE,
        protocol: str = "imported",
        label_map: LabelMap | None = None,
    ) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"imported predictions file {self.path} does not exist")
        self.label_set = label_set
        self.label_map = label_map or load_label_map()
        self.known_labels = set(self.label_map.labels(label_set))  # raises for unknown label_set
        self.columns = {f: str((columns or {}).get(f, f)) for f in FIELDS}
        self.value_scale = value_scale
        self.target_scale = target_scale
        self.value_mapping = mapping_formula(value_scale, target_scale)
        self.protocol = protocol
        self.weights_sha256 = sha256_file(self.path)
        self.quarantined: list[QuarantinedRow] = []

    @property
    def quarantine_sources(self) -> list[str]:
        """Files whose rows in raw.quarantine this adapter owns (replaced on each run)."""
        return [str(self.path)]

    @classmethod
    def from_config(
        cls, cfg: ModelConfig, dataset: str, resolve: Callable[[str], Path],
        label_map: LabelMap | None = None,
    ) -> ImportedPredictions:
        where = f"models.{cfg.name}.options"
        opts = parse_options(ImportedOptions, cfg, ImportedOptionsError)
        files = opts.files
        if not isinstance(files, dict) or not files:
            raise ImportedOptionsError(
                f"{where}.files: an imported model needs a predictions file per dataset, e.g. "
                f"files: {{{dataset}: predictions/{dataset}.csv}}"
            )
        if dataset not in files:
            raise ImportedOptionsError(
                f"model {cfg.name!r} (kind imported) has no predictions file for dataset "
                f"{dataset!r}; add '{dataset}: <file>' under {where}.files (it has: "
                f"{', '.join(sorted(map(str, files)))})"
            )
        columns = opts.columns or {}
        if any(k not in FIELDS for k in columns):
            raise ImportedOptionsError(
                f"{where}.columns must map fields ({', '.join(FIELDS)}) to column names, got {columns!r}"
            )
        try:
            value_scale = as_scale(opts.value_scale, f"{where}.value_scale", DEFAULT_SCALE)
            target_scale = as_scale(opts.target_scale, f"{where}.target_scale", DEFAULT_SCALE)
        except ValueError as exc:
            raise ImportedOptionsError(str(exc)) from None
        path = resolve(str(files[dataset]))
        if not Path(path).is_file():
            raise ImportedOptionsError(
                f"{where}.files.{dataset}: {path} does not exist; fix the path (relative to the config file)"
            )
        return cls(
            path,
            label_set=opts.label_set or "canonical",
            columns=dict(columns),
            value_scale=value_scale,
            target_scale=target_scale,
            protocol=opts.protocol or "imported",
            label_map=label_map,
        )

    @classmethod
    def build(cls, cfg: ModelConfig, ctx: BuildContext) -> ImportedPredictions:
        """The adapter over the file of the dataset about to be answered (built per dataset)."""
        if ctx.dataset is None:
            raise ImportedOptionsError(
                f"models.{cfg.name}: an imported model is built per dataset; pass dataset=<name>"
            )
        return cls.from_config(cfg, ctx.dataset, ctx.resolve)

    def evaluate(self, images: Sequence[ImageRecord], context: EvaluationContext) -> Evaluation:
        """The file's answers about `images`; rows it could not use are quarantined, and this
        file's rows in raw.quarantine are the model's to replace."""
        answers = self.predict(images)
        return Evaluation(answers=answers, label_set=self.label_set, weights_sha256=self.weights_sha256,
                          quarantined=list(self.quarantined), quarantine_sources=self.quarantine_sources)

    def predict(self, images: Sequence[ImageRecord], batch_size: int | None = None) -> list[Answer]:
        """Answers for the file's rows about `images`; other rows land in `.quarantined`."""
        del batch_size  # nothing to batch
        by_id = {img.image_id: img for img in images}
        frame = _read_frame(self.path)
        if self.columns["image"] not in frame.columns or self.columns["label"] not in frame.columns:
            missing = [f for f in ("image", "label") if self.columns[f] not in frame.columns]
            raise ValueError(
                f"imported predictions file {self.path} has no column(s) "
                f"{', '.join(repr(self.columns[f]) for f in missing)} (required); add them, or map "
                f"them with options.columns.<field>: <column name>"
            )
        present = {f for f in FIELDS if self.columns[f] in frame.columns}
        self.quarantined = []
        answers: list[Answer] = []
        seen: dict[tuple[str, int], int] = {}
        for number, raw in enumerate(frame.to_dict(orient="records"), start=1):
            row = {str(k): _json_safe(v) for k, v in raw.items()}
            values = {f: (_text(row.get(self.columns[f])) if f in present else None) for f in FIELDS}
            problem, result = self._row(number, values, present, by_id, seen)
            if problem is not None:
                self.quarantined.append(QuarantinedRow(
                    str(self.path), number, values["image"],
                    f"{self.path.name} row {number}: {problem}", row))
                continue
            answers.extend(result)
        return answers

    def _row(
        self, number: int, values: dict[str, Any], present: set[str],
        by_id: dict[str, ImageRecord], seen: dict[tuple[str, int], int],
    ) -> tuple[str | None, list[Answer]]:
        if values["image"] is None:
            return "missing image; fill it in or drop the row", []
        image_id = normalize_image_id(values["image"])
        image = by_id.get(image_id)
        if image is None:
            return (f"image {values['image']!r} is not a loaded image of this dataset (see "
                    f"raw.dataset_images); write its path relative to the dataset root, or drop the row"), []
        sample = 0
        if values["sample_index"] is not None:
            try:
                sample = int(float(values["sample_index"]))
            except ValueError:
                return f"sample_index {values['sample_index']!r} is not an integer; fix it or leave it empty", []
        key = (image_id, sample)
        if key in seen:
            return (f"duplicate of row {seen[key]} (image {image_id}, sample_index {sample}); "
                    f"the first row is kept, delete this one"), []
        label = values["label"]
        status = values["parse_status"] or ("ok" if label is not None else "unparseable")
        if status not in PARSE_STATUSES:
            return f"parse_status {status!r} is not one of {', '.join(PARSE_STATUSES)}; fix it", []
        valid = status in ("ok", "repaired")
        if valid and label is None:
            return f"parse_status {status!r} but no label; fill in the label or the status", []
        if valid and not self.label_map.knows(self.label_set, label):
            return (f"label {label!r} is not in label_set {self.label_set!r} (known: "
                    f"{', '.join(sorted(self.known_labels))}); fix the label, set options.label_set, "
                    f"or add a row '{self.label_set},{label},<canonical emotion>' to "
                    f"dbt/seeds/emotion_label_map.csv"), []
        numbers: dict[str, float | None] = {}
        for dim, _step in DIMENSIONS:
            if dim not in present or values[dim] is None:
                continue
            try:
                v = float(values[dim])
            except ValueError:
                return f"{dim} {values[dim]!r} is not a number; fix it or leave it empty", []
            if not in_scale(v, self.value_scale):
                return (f"{dim} {v:g} is outside options.value_scale "
                        f"[{self.value_scale[0]:g}, {self.value_scale[1]:g}]; fix the value or the option"), []
            numbers[dim] = v
        seen[key] = number
        common = dict(image_id=image_id, image_hash=image.image_hash, protocol=self.protocol,
                      sample_index=sample, raw_text=values["raw_text"])
        # an invalid answer keeps its label only as 'off_label' (the label it gave)
        out = [Answer(parse_status=status, predicted_label=label if valid or status == "off_label" else None,
                      step=1, step_name="emotion", **common)]
        for dim, step in DIMENSIONS:
            if dim not in present:
                continue
            v = numbers.get(dim)
            out.append(Answer(
                parse_status="ok" if v is not None else "unparseable", predicted_label=None,
                predicted_value=None if v is None else rescale(v, self.value_scale, self.target_scale),
                raw_value=v, value_mapping=self.value_mapping if v is not None else None,
                step=step, step_name=dim, **common,
            ))
        return None, out
