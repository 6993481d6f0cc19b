"""Face detection and crop, as in the reference pipeline of oarriaga/face_classification.

Reference (src/video_emotion_color_demo.py and src/utils/*): OpenCV Haar cascade
`haarcascade_frontalface_default.xml` on the grayscale image, `detectMultiScale(gray, 1.3, 5)`,
emotion offsets (20, 40) added around the box, crop of the grayscale image, resize to 64x64,
then `x / 255`, `(x - 0.5) * 2`.

Two deliberate differences from the reference demo, both recorded in `preprocessing`:
- when several faces are found the largest one is used (the demo classifies every face);
- the offset box is clipped to the image (the demo slices with negative indices, which wraps
  around in numpy and crops garbage near the border).

When no face is found nothing is guessed: `preprocess_face` returns `(None, None, info)`.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cv2
import numpy as np

DEFAULT_CASCADE = "haarcascade_frontalface_default.xml"
DEFAULT_OFFSETS = (20, 40)
NORMALISATION = "x/255*2-1"
FACE_DETECTION_MODES = ("haar", "none")

Box = tuple[int, int, int, int]  # x, y, w, h


def _require_cascade_support() -> None:
    if not hasattr(cv2, "CascadeClassifier"):
        raise RuntimeError(
            f"OpenCV {cv2.__version__} has no CascadeClassifier (OpenCV 5 moved the Haar cascades "
            f"out of the main package); install opencv-python-headless>=4.9,<5, which has it and "
            f"ships haarcascade_frontalface_default.xml"
        )


def _cascade_classifier(path: str) -> "cv2.CascadeClassifier":
    return cv2.CascadeClassifier(path)


def _haarcascades_dir() -> Path:
    data = getattr(cv2, "data", None)
    return Path(getattr(data, "haarcascades", "") or ".")


class FaceDetector:
    """OpenCV Haar-cascade frontal face detector that returns the largest face."""

    name = "opencv_haar_cascade"

    def __init__(
        self,
        cascade: str = DEFAULT_CASCADE,
        scale_factor: float = 1.3,
        min_neighbors: int = 5,
        min_size: tuple[int, int] | None = None,
    ) -> None:
        _require_cascade_support()
        cascade_path = Path(cascade)
        if not cascade_path.is_file():
            cascade_path = _haarcascades_dir() / cascade
        if not cascade_path.is_file():
            raise FileNotFoundError(
                f"Haar cascade {cascade!r} not found (looked in {_haarcascades_dir()}, OpenCV "
                f"{cv2.__version__}); use a file name shipped with opencv-python-headless<5, e.g. "
                f"{DEFAULT_CASCADE!r}, or an absolute path to the XML file"
            )
        self.cascade_path = cascade_path
        self._classifier = _cascade_classifier(str(cascade_path))
        if self._classifier.empty():
            raise ValueError(f"OpenCV could not load the Haar cascade {cascade_path}")
        self.cascade = cascade_path.name
        self.scale_factor = float(scale_factor)
        self.min_neighbors = int(min_neighbors)
        self.min_size = tuple(int(v) for v in min_size) if min_size else None

    def clone(self) -> FaceDetector:
        """A new detector with the same cascade and parameters (its own OpenCV classifier)."""
        return FaceDetector(str(self.cascade_path), self.scale_factor, self.min_neighbors, self.min_size)

    @property
    def params(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "cascade": self.cascade,
            "opencv_version": cv2.__version__,
            "scale_factor": self.scale_factor,
            "min_neighbors": self.min_neighbors,
            "min_size": list(self.min_size) if self.min_size else None,
            "selection": "largest",
        }

    def detect(self, gray: np.ndarray) -> list[Box]:
        """All faces in a grayscale uint8 image, largest first (ties: top-left first)."""
        kwargs: dict[str, Any] = {}
        if self.min_size:
            kwargs["minSize"] = self.min_size
        found = self._classifier.detectMultiScale(gray, self.scale_factor, self.min_neighbors, **kwargs)
        boxes = [tuple(int(v) for v in box) for box in (found if len(found) else [])]
        boxes.sort(key=lambda b: (-b[2] * b[3], b[1], b[0], b[2], b[3]))
        return boxes  # type: ignore[return-value]

    def largest(self, gray: np.ndarray) -> Box | None:
        boxes = self.detect(gray)
        return boxes[0] if boxes else None


def read_gray(image_path: str | Path) -> np.ndarray:
    """Read an image file as 8-bit grayscale (BGR decode then cvtColor, like the reference)."""
    data = np.fromfile(str(image_path), dtype=np.uint8)  # also works for non-ASCII paths
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise ValueError(f"cannot decode image {image_path}; is it a readable JPEG/PNG file?")
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)


def apply_offsets(box: Box, offsets: tuple[int, int], width: int, height: int) -> Box:
    """Grow `box` by offsets (x_off, y_off) on each side and clip to the image; returns x, y, w, h."""
    x, y, w, h = box
    x_off, y_off = offsets
    x1, y1 = max(0, x - x_off), max(0, y - y_off)
    x2, y2 = min(width, x + w + x_off), min(height, y + h + y_off)
    return (x1, y1, x2 - x1, y2 - y1)


def center_square(width: int, height: int) -> Box:
    side = min(width, height)
    return ((width - side) // 2, (height - side) // 2, side, side)


def normalise(gray_crop: np.ndarray, size: int = 64) -> np.ndarray:
    """Resize a grayscale crop to size x size (bilinear) and scale to [-1, 1]: float32 (size, size)."""
    resized = cv2.resize(gray_crop, (size, size), interpolation=cv2.INTER_LINEAR)
    x = resized.astype(np.float32) / 255.0
    return (x - 0.5) * 2.0


def preprocess_gray(
    gray: np.ndarray,
    detector: FaceDetector | None,
    size: int = 64,
    offsets: tuple[int, int] = DEFAULT_OFFSETS,
) -> tuple[np.ndarray | None, Box | None, dict[str, Any]]:
    """`preprocess_face` on an already-decoded grayscale uint8 image."""
    height, width = gray.shape[:2]
    info: dict[str, Any] = {
        "image_size": [int(width), int(height)],
        "colour": "gray",
        "size": [int(size), int(size)],
        "interpolation": "INTER_LINEAR",
        "normalisation": NORMALISATION,
    }
    if detector is None:
        crop = center_square(width, height)
        info.update(
            face_detection="none",
            detector=None,
            face_box=None,
            offsets=None,
            crop="center_square",
            crop_box=list(crop),
        )
        x, y, w, h = crop
        return normalise(gray[y : y + h, x : x + w], size), crop, info

    boxes = detector.detect(gray)
    offsets = (int(offsets[0]), int(offsets[1]))
    info.update(
        face_detection="haar",
        detector=detector.params,
        n_faces_detected=len(boxes),
        offsets=list(offsets),
    )
    if not boxes:
        info.update(face_box=None, crop_box=None)
        return None, None, info
    face = boxes[0]
    crop = apply_offsets(face, offsets, width, height)
    info.update(face_box=list(face), crop="face_with_offsets_clipped", crop_box=list(crop))
    x, y, w, h = crop
    return normalise(gray[y : y + h, x : x + w], size), face, info


def preprocess_face(
    image_path: str | Path,
    detector: FaceDetector | None,
    size: int = 64,
    offsets: tuple[int, int] = DEFAULT_OFFSETS,
) -> tuple[np.ndarray | None, Box | None, dict[str, Any]]:
    """Detect the largest face in an image file and return the model input for it.

    Returns `(array, face_box, preprocessing)`: `array` is float32 (size, size) in [-1, 1],
    `face_box` is the detected face (x, y, w, h) in the original image; both are None when no
    face was found. With `detector=None` (option `face_detection: none`, for pre-cropped
    datasets) the whole image is centre-square-cropped and `face_box` is that square.
    `preprocessing` is a JSON-serialisable record of everything done.
    """
    return preprocess_gray(read_gray(image_path), detector, size=size, offsets=offsets)


# ----------------------------------------------------------------------------- many images


class DetectorPool:
    """Detectors lent to concurrent threads, created on demand from one template.

    One `cv2.CascadeClassifier` must not run `detectMultiScale` from two threads at once (it
    keeps per-call buffers), so each thread borrows its own; the pool keeps them between calls
    because loading the cascade XML costs more than detecting a face in a small image.
    """

    def __init__(self, template: FaceDetector) -> None:
        self.template = template
        self._free: queue.SimpleQueue[FaceDetector] = queue.SimpleQueue()
        self._free.put(template)

    @contextmanager
    def borrow(self) -> Iterator[FaceDetector]:
        try:
            detector = self._free.get_nowait()
        except queue.Empty:
            detector = self.template.clone()
        try:
            yield detector
        finally:
            self._free.put(detector)


Prepared = tuple[np.ndarray | None, Box | None, dict[str, Any], float]  # array, box, info, ms


def timed_preprocess(
    image_path: str | Path,
    detectors: DetectorPool | None,
    size: int = 64,
    offsets: tuple[int, int] = DEFAULT_OFFSETS,
) -> Prepared:
    """`preprocess_face` with a borrowed detector (None: no detection), plus its wall time in ms."""
    start = time.perf_counter()
    if detectors is None:
        array, box, info = preprocess_face(image_path, None, size=size, offsets=offsets)
    else:
        with detectors.borrow() as detector:
            array, box, info = preprocess_face(image_path, detector, size=size, offsets=offsets)
    return array, box, info, (time.perf_counter() - start) * 1000.0


def preprocess_many(
    paths: Sequence[str | Path],
    detectors: DetectorPool | None,
    size: int = 64,
    offsets: tuple[int, int] = DEFAULT_OFFSETS,
    workers: int = 1,
) -> list[Prepared]:
    """`timed_preprocess` of every path, in input order.

    With `workers > 1` the images are decoded, detected and cropped in that many threads (OpenCV
    releases the GIL in imdecode, cvtColor, detectMultiScale and resize). Each image goes through
    exactly the same functions as in the serial path, so the results are identical.
    """
    if workers <= 1 or len(paths) <= 1:
        return [timed_preprocess(path, detectors, size, offsets) for path in paths]
    with ThreadPoolExecutor(workers, thread_name_prefix="face-prep") as pool:
        return list(pool.map(lambda path: timed_preprocess(path, detectors, size, offsets), paths))
