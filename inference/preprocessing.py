"""The dataset's preprocessing step: one function from a dataset image to the image every model
kind receives (VLMs and CLIP included), configured per dataset:

    datasets:
      cfd:
        kind: chicago_face
        preprocessing: {crop: square_center, size: 224, face_detector: none}   # the kind's default

Order: decode (PIL, EXIF orientation applied, RGB) -> face detector (`haar` | `mtcnn` | `none`:
the largest face, grown by `face_margin` x its width / height on each side, clipped) -> crop
(`square_center`: the centre square of the image, or the square around the face region | `none`) -> resize (`size`: a square to size x size, else the
shorter side to size, aspect kept; PIL bicubic) -> PNG. With nothing to apply the JPEG / PNG
file itself is sent. What a model does on top (Xception's grayscale 64x64 in [-1, 1], CLIP's
transform) stays in the model.

Every answer records the step under `preprocessing.input`: what was declared and applied, the
detector and its result, the crop box in the original image, the size sent and the sha256 of
the bytes sent. An image in which the detector finds no face is not sent: its answer is
`no_face` (nothing is guessed). Outputs are cached under
`<cache_dir>/preprocessed/<digest of the settings>/`, so every model gets identical bytes.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from inference.datasets.base import ImageRecord
from inference.models.base import Answer, Evaluation, EvaluationContext, ModelAdapter
from inference.preprocessing_config import HaarSettings, PreprocessingConfig

STEP_VERSION = 1  # bump when the step's output for the same settings changes
JPEG_MAGIC, PNG_MAGIC = b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n"
Box = tuple[int, int, int, int]  # x, y, w, h


class Detector(Protocol):
    params: dict[str, Any]

    def detect(self, rgb: np.ndarray) -> list[Box]: ...


class HaarDetector:
    """inference.models.faces.FaceDetector (grayscale) on an RGB image."""

    def __init__(self, settings: HaarSettings) -> None:
        from inference.models.faces import FaceDetector

        size = (settings.min_size, settings.min_size) if settings.min_size else None
        self.inner = FaceDetector(settings.cascade, settings.scale_factor, settings.min_neighbors, size)
        self.params = self.inner.params

    def detect(self, rgb: np.ndarray) -> list[Box]:
        import cv2

        return self.inner.detect(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))


def build_detector(spec: PreprocessingConfig, cache_dir: Path, resolve: Callable[[str], Path],
                   where: str) -> Detector | None:
    if spec.face_detector == "haar":
        return HaarDetector(spec.haar)
    if spec.face_detector == "mtcnn":
        from inference.models.mtcnn import MtcnnDetector, load_mtcnn

        m = spec.mtcnn
        folder = resolve(m.weights) if m.weights else Path(cache_dir) / "mtcnn"
        return MtcnnDetector(load_mtcnn(folder, f"{where}.mtcnn.weights"), m.min_face_size, m.thresholds, m.factor)
    return None


@dataclass(frozen=True)
class Prepared:
    image: ImageRecord  # the dataset's image
    sent: ImageRecord | None  # what the models get (same id and hash, preprocessed file); None: no face
    record: dict[str, Any]  # -> Answer.preprocessing["input"]


class Preprocessor:
    """The step for one dataset's settings (see the module docstring)."""

    def __init__(self, spec: PreprocessingConfig, cache_dir: Path, detector: Detector | None = None) -> None:
        if (spec.face_detector != "none") != (detector is not None):
            raise ValueError(f"face_detector {spec.face_detector!r} needs a detector object exactly when not 'none'")
        self.spec, self.detector = spec, detector
        self.settings = {**spec.declared(), "detector": detector.params if detector else None}
        self.folder = Path(cache_dir) / "preprocessed" / _digest(self.settings)

    @classmethod
    def build(cls, spec: PreprocessingConfig, cache_dir: Path, resolve: Callable[[str], Path],
              where: str = "preprocessing") -> Preprocessor:
        return cls(spec, cache_dir, build_detector(spec, cache_dir, resolve, where))

    def prepare(self, images: Sequence[ImageRecord]) -> list[Prepared]:
        return [self.prepare_one(image) for image in images]

    def prepare_one(self, image: ImageRecord) -> Prepared:
        if image.media_type != "image":  # clips: frames are the video step's business
            suffix = Path(image.path).suffix.lstrip(".").lower()
            return Prepared(image, image, {**self.settings, "applied": False, "media_type": image.media_type,
                                           **_sent_facts(Path(image.path).read_bytes(), suffix)})
        if not self.spec.changes_pixels:
            data = Path(image.path).read_bytes()
            if data[:3] == JPEG_MAGIC or data[:8] == PNG_MAGIC:
                return Prepared(image, image, {**self.settings, "applied": False,
                                               "size_sent": [image.width, image.height], **_sent_facts(data)})
        record_path = self.folder / image.image_hash[:2] / f"{image.image_hash}.json"
        record = _cached(record_path)
        if record is None:
            record, png = self._transform(image)
            if png is not None:  # the image first, so a record never names a missing file
                _write_atomic(record_path.with_suffix(".png"), png)
            _write_atomic(record_path, json.dumps(record, sort_keys=True).encode())
        if not record.get("sha256"):
            return Prepared(image, None, record)
        width, height = record["size_sent"]
        sent = replace(image, path=record_path.with_suffix(".png"), width=width, height=height)
        return Prepared(image, sent, record)

    def _transform(self, image: ImageRecord) -> tuple[dict[str, Any], bytes | None]:
        from PIL import Image, ImageOps

        with Image.open(image.path) as im:
            orientation = im.getexif().get(0x0112, 1)  # EXIF Orientation; 1 = upright
            rgb = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
        height, width = rgb.shape[:2]
        record: dict[str, Any] = {**self.settings, "applied": True, "source_size": [width, height],
                                  "exif_transposed": orientation not in (1, None)}
        region: Box = (0, 0, width, height)
        if self.detector is not None:
            faces = self.detector.detect(rgb)
            record.update(n_faces_detected=len(faces), face_found=bool(faces),
                          face_box=list(faces[0]) if faces else None)
            if not faces:
                return {**record, "crop_box": None, "sha256": None}, None
            region = grow(faces[0], self.spec.face_margin, width, height)
        if self.spec.crop == "square_center":  # a face box is squared outwards: no part of the face is cut
            region = square_around(region, width, height) if self.detector is not None else centre_square(region)
        x, y, w, h = region
        out = Image.fromarray(rgb[y:y + h, x:x + w])
        if self.spec.size is not None:
            out = out.resize(resized(w, h, self.spec.size), Image.Resampling.BICUBIC)
        buffer = io.BytesIO()
        out.save(buffer, format="PNG")
        png = buffer.getvalue()
        record.update(crop_box=list(region), size_sent=list(out.size), interpolation="PIL bicubic",
                      **_sent_facts(png, "png"))
        return record, png


def grow(box: Box, margin: float, width: int, height: int) -> Box:
    """`box` grown by margin x its width / height on each side, clipped to the image."""
    x, y, w, h = box
    dx, dy = round(w * margin), round(h * margin)
    x1, y1 = max(0, x - dx), max(0, y - dy)
    x2, y2 = min(width, x + w + dx), min(height, y + h + dy)
    return (x1, y1, x2 - x1, y2 - y1)


def centre_square(region: Box) -> Box:
    x, y, w, h = region
    side = min(w, h)
    return (x + (w - side) // 2, y + (h - side) // 2, side, side)


def square_around(region: Box, width: int, height: int) -> Box:
    """The square of side max(w, h) (at most the image's shorter side) centred on `region`,
    shifted to lie inside the image."""
    x, y, w, h = region
    side = min(max(w, h), width, height)
    left = min(max(0, x + (w - side) // 2), width - side)
    top = min(max(0, y + (h - side) // 2), height - side)
    return (left, top, side, side)


def resized(width: int, height: int, size: int) -> tuple[int, int]:
    """A square goes to size x size; otherwise the shorter side goes to size, aspect kept."""
    if width == height:
        return size, size
    scale = size / min(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def to_source_box(box: Sequence[int], record: dict[str, Any]) -> tuple[int, int, int, int]:
    """A box in the sent image (e.g. a model's own face box) in the original image's pixels."""
    crop, sent = record.get("crop_box"), record.get("size_sent")
    if not record.get("applied") or not crop or not sent:
        return tuple(int(v) for v in box)  # type: ignore[return-value]
    sx, sy = crop[2] / sent[0], crop[3] / sent[1]
    x, y, w, h = box
    return (round(crop[0] + x * sx), round(crop[1] + y * sy), round(w * sx), round(h * sy))


def _sent_facts(data: bytes, fmt: str | None = None) -> dict[str, Any]:
    if fmt is None:
        fmt = "jpeg" if data[:3] == JPEG_MAGIC else "png"
    return {"format": fmt, "n_bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _cached(record_path: Path) -> dict[str, Any] | None:
    """The cached record of an image, if it (and its PNG, when one was sent) is there."""
    if not record_path.is_file():
        return None
    record = json.loads(record_path.read_text(encoding="utf-8"))
    return None if record.get("sha256") and not record_path.with_suffix(".png").is_file() else record


def _digest(settings: dict[str, Any]) -> str:
    import cv2
    import PIL

    body = {"settings": settings, "step_version": STEP_VERSION, "pillow": PIL.__version__, "opencv": cv2.__version__}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _write_atomic(path: Path, data: bytes) -> None:
    """Write via a temporary file and rename, so a concurrent worker never reads half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ----------------------------------------------------------------------------- models


def evaluate_preprocessed(model: ModelAdapter, images: Sequence[ImageRecord], context: EvaluationContext,
                          step: Preprocessor) -> Evaluation:
    """`model.evaluate` on the preprocessed images; answers in image order, each recording the
    step under `preprocessing.input`; an image without a face gets the model's `no_face` answer."""
    prepared = step.prepare(images)
    asked = [i for i, p in enumerate(prepared) if p.sent is not None]
    labels = context.true_labels
    sub = replace(context, true_labels=None if labels is None else [labels[i] for i in asked])
    sent = [prepared[i].sent for i in asked]
    evaluation = (model.evaluate(sent, sub) if sent  # type: ignore[arg-type]
                  else Evaluation(answers=[], label_set=model.label_set, weights_sha256=model.weights_sha256))
    order = {p.image.image_id: i for i, p in enumerate(prepared)}
    answers = [_with_input(a, prepared[order[a.image_id]].record) for a in evaluation.answers]
    answers += [model.no_face_answer(p.image, {"input": p.record}) for p in prepared if p.sent is None]
    answers.sort(key=lambda a: order[a.image_id])  # stable: an image's own answers keep their order
    evaluation.answers = answers
    return evaluation


def _with_input(answer: Answer, record: dict[str, Any]) -> Answer:
    """The answer with the step's record; a model's own face box moved to original pixels."""
    box = to_source_box(answer.face_box, record) if answer.face_box else record.get("face_box")
    found = answer.face_found if answer.face_found is not None else record.get("face_found")
    return replace(answer, preprocessing={**answer.preprocessing, "input": record},
                   face_box=tuple(box) if box else None, face_found=found)
