"""What the local FER baselines (`image_classifier`, `hsemotion`, `emonet`) share: checking a
model's labels against the label-map seed, reading a weights file, batching images, turning a
probability vector into an `Answer`, and valence/arousal outputs in [-1, 1] into `Answer`s on
the [1, 9] rating scale.

Valence and arousal are stored like VLM ratings and imported predictions (steps 2 'valence'
and 3 'arousal' of the same protocol): `raw_value` is the network's output, `predicted_value`
the value on [1, 9] and `value_mapping` the formula (inference.scales). A regression head is
not bounded, so an output outside [-1, 1] is clamped to the nearest end first and the mapping
says so ("(clamped from 1.07)"), never silently.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from inference.datasets.base import ImageRecord
from inference.datasets.labels import LabelMap, load_label_map
from inference.download import sha256_file
from inference.models.base import Answer, EvaluationContext
from inference.scales import mapping_formula, rescale

VA_SOURCE_SCALE = (-1.0, 1.0)  # AffectNet's valence / arousal range, what the VA heads predict
VA_TARGET_SCALE = (1.0, 9.0)  # the rating scale of VLMs and human raters (SAM, 1..9)
VA_MAPPING = mapping_formula(VA_SOURCE_SCALE, VA_TARGET_SCALE)
DIMENSIONS = (("valence", 2), ("arousal", 3))


class FerModelError(ValueError):
    """A FER baseline cannot be built: bad option, missing weights, labels the seed lacks."""


def check_labels(labels: Sequence[str], label_set: str, where: str,
                 label_map: LabelMap | None = None) -> None:
    """Every output label of a model must map to a canonical emotion through the seed."""
    label_map = label_map or load_label_map()
    try:
        unknown = [label for label in labels if not label_map.knows(label_set, label)]
    except KeyError as exc:  # UnknownLabelSetError
        raise FerModelError(f"{where}.label_set: {exc}") from None
    if unknown:
        rows = "; ".join(f"'{label_set},{label},<canonical emotion>'" for label in unknown)
        raise FerModelError(
            f"{where}: the model's output label(s) {', '.join(map(repr, unknown))} are not in "
            f"label_set {label_set!r} of {label_map.seed_path}; add row(s) {rows} to that seed, "
            f"or set options.label_set to a vocabulary that has them"
        )


def weights_digest(files: Sequence[Path]) -> str:
    """One sha256 for a checkpoint: of a single file, or of the 'name sha256' lines of several."""
    if len(files) == 1:
        return sha256_file(files[0])
    import hashlib

    lines = "".join(f"{f.name} {sha256_file(f)}\n" for f in sorted(files, key=lambda p: p.name))
    return hashlib.sha256(lines.encode()).hexdigest()


def batches(images: Sequence[ImageRecord], size: int) -> Iterator[Sequence[ImageRecord]]:
    for lo in range(0, len(images), size):
        yield images[lo : lo + size]


def load_rgb(path: Path) -> Any:
    """The decoded image as an RGB PIL image (the whole image: the dataset's own crop)."""
    from PIL import Image

    with Image.open(path) as im:
        return im.convert("RGB")


def rgb_array(path: Path, size: int) -> np.ndarray:
    """The whole image resized (bilinear) to size x size, RGB, float32 in [0, 1], HWC."""
    from PIL import Image

    rgb = load_rgb(path).resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(rgb, dtype=np.float32) / 255.0


def read_state_dict(path: Path, allow_pickle: bool | None, where: str) -> dict[str, Any]:
    """A state dict from a safetensors / torch file; a pickled module only with allow_pickle
    (None: the kind has no such option and never unpickles)."""
    import pickle

    import torch

    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        if allow_pickle is None:
            raise FerModelError(
                f"{where}.path: {path} is a pickled model, not a state dict; this kind loads state dicts only "
                f"(save one with torch.save(model.state_dict(), path))"
            ) from None
        if not allow_pickle:
            raise FerModelError(
                f"{where}.path: {path} is a pickled model, not a state dict; loading it runs code from the "
                f"file. If you trust it (the HSEmotion repository's .pt files are such), set "
                f"{where}.allow_pickle: true"
            ) from None
        obj = torch.load(path, map_location="cpu", weights_only=False)
    if hasattr(obj, "state_dict"):
        obj = obj.state_dict()
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise FerModelError(f"{where}.path: {path} holds a {type(obj).__name__}, not a state dict")
    return obj


def softmax(logits: np.ndarray) -> np.ndarray:
    from scipy.special import softmax as _softmax

    return _softmax(np.asarray(logits, dtype=np.float64), axis=-1)


def timed(fn: Any, *args: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn(*args)
    return out, (time.perf_counter() - start) * 1000.0


def emotion_answer(record: ImageRecord, labels: Sequence[str], probs: np.ndarray, *,
                   protocol: str, preprocessing: dict[str, Any], latency_ms: float) -> Answer:
    """Step 1: the argmax label (the model's own spelling) with the full probability vector."""
    return Answer(
        image_id=record.image_id, image_hash=record.image_hash, parse_status="ok",
        predicted_label=labels[int(np.argmax(probs))],
        probabilities={label: float(p) for label, p in zip(labels, probs)},
        preprocessing=preprocessing, latency_ms=latency_ms, protocol=protocol, step=1, step_name="emotion",
    )


def va_value(raw: float) -> tuple[float, str]:
    """A [-1, 1] output on [1, 9] and the mapping text (saying when it was clamped)."""
    clamped = min(max(float(raw), VA_SOURCE_SCALE[0]), VA_SOURCE_SCALE[1])
    mapping = VA_MAPPING if clamped == raw else f"{VA_MAPPING} (clamped from {float(raw):g})"
    return rescale(clamped, VA_SOURCE_SCALE, VA_TARGET_SCALE), mapping


def va_answers(record: ImageRecord, valence: float, arousal: float, *, protocol: str,
               preprocessing: dict[str, Any]) -> list[Answer]:
    """Steps 2 'valence' and 3 'arousal' of the same protocol, as VLM ratings are stored."""
    out = []
    for (dim, step), raw in zip(DIMENSIONS, (valence, arousal)):
        value, mapping = va_value(raw)
        out.append(Answer(
            image_id=record.image_id, image_hash=record.image_hash, parse_status="ok",
            predicted_label=None, predicted_value=value, raw_value=float(raw), value_mapping=mapping,
            preprocessing=preprocessing, protocol=protocol, step=step, step_name=dim,
        ))
    return out


def classify_batches(images: Sequence[ImageRecord], context: EvaluationContext,
                     outputs: Callable[[Sequence[ImageRecord]], np.ndarray], labels: Sequence[str], *,
                     valence_arousal: bool, batch_size: int, protocol: str,
                     preprocessing: dict[str, Any]) -> list[Answer]:
    """`outputs(batch)` gives one row per image: the class logits (in `labels` order), then, with
    `valence_arousal`, valence and arousal in [-1, 1]. Step 1 is the softmax of the logits."""
    n = len(labels)
    answers: list[Answer] = []
    done = 0
    for batch in batches(images, batch_size):
        out, ms = timed(outputs, batch)
        done += len(batch)
        for record, row in zip(batch, out):
            answers.append(emotion_answer(record, labels, softmax(row[:n]), protocol=protocol,
                                          preprocessing=preprocessing, latency_ms=ms / len(batch)))
            if valence_arousal:
                answers.extend(va_answers(record, row[n], row[n + 1], protocol=protocol,
                                          preprocessing=preprocessing))
        if context.progress is not None:
            context.progress(done, len(images))
    return answers


def forward_batch(net: Any, arrays: Sequence[np.ndarray], device: Any) -> np.ndarray:
    """A torch network's outputs for a batch of CHW float32 arrays, as float64 rows."""
    import torch

    x = torch.from_numpy(np.stack(arrays)).to(device)
    with torch.inference_mode():
        return net(x).float().cpu().numpy().astype(np.float64)


def torch_device(name: str | None) -> Any:
    import torch

    if name in (None, "auto"):
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)
