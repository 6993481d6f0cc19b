"""Kind `hsemotion`: the AffectNet models of Savchenko's HSEmotion (face-emotion-recognition),
rebuilt with timm and loaded from the user's weights file (the `hsemotion` package is not
needed).

    models:
      hse_b0_va:
        kind: hsemotion
        version: enet_b0_8_va_mtl
        options:
          path: ~/models/hsemotion/enet_b0_8_va_mtl.pt   # required
          variant: enet_b0_8_va_mtl   # default: the file name's stem
          allow_pickle: false         # the official .pt files are pickled modules, see below
          batch_size: 32
          device: auto

Variants (as in the hsemotion library): `enet_b0_*` = timm `tf_efficientnet_b0` at 224 px,
`enet_b2_*` = `tf_efficientnet_b2` at 260 px; `_7` = 7 classes (Anger Disgust Fear Happiness
Neutral Sadness Surprise), otherwise 8 (with Contempt); `_va_mtl` adds two outputs after the
class logits: valence and arousal in [-1, 1], stored as steps 'valence' / 'arousal' on [1, 9]
(inference.models.fer_baselines). Preprocessing as the library's: the whole image resized to
the square input, ImageNet mean/std.

Weights: a state dict (`.pt`/`.pth` via torch.load(weights_only=True), or `.safetensors`). The
files published in the HSEmotion repository are whole pickled models; unpickling runs code from
the file, so it needs `allow_pickle: true` (only for files you trust); its state dict is then
loaded into the timm architecture here, strictly (every key and shape must match).
The MobileFaceNet / MobileViT variants are not implemented (their file names are refused).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from inference.config import ModelConfig
from inference.datasets.base import ImageRecord
from inference.models.base import (
    BuildContext, Evaluation, EvaluationContext, KindOptions, ModelAdapter, parse_options,
)
from inference.models.fer_baselines import (
    FerModelError, check_labels, classify_batches, forward_batch, read_state_dict, rgb_array, torch_device,
    weights_digest,
)

LABELS_8 = ("Anger", "Contempt", "Disgust", "Fear", "Happiness", "Neutral", "Sadness", "Surprise")
LABELS_7 = ("Anger", "Disgust", "Fear", "Happiness", "Neutral", "Sadness", "Surprise")
ARCHITECTURES = {"b0": ("tf_efficientnet_b0", 224), "b2": ("tf_efficientnet_b2", 260)}
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
VARIANT = re.compile(r"enet_(?P<arch>b0|b2)_(?P<classes>7|8)(?P<rest>.*)")
DOWNLOAD_HINT = ("download it from https://github.com/HSE-asavchenko/face-emotion-recognition/tree/main/"
                 "models/affectnet_emotions (e.g. enet_b0_8_va_mtl.pt)")


@dataclass(frozen=True)
class Variant:
    name: str
    architecture: str  # timm model name
    image_size: int
    labels: tuple[str, ...]
    valence_arousal: bool

    @property
    def outputs(self) -> int:
        return len(self.labels) + (2 if self.valence_arousal else 0)


def parse_variant(name: str, where: str) -> Variant:
    """`enet_b0_8_va_mtl` -> architecture, input size, classes, VA head (hsemotion's naming)."""
    match = VARIANT.fullmatch(name)
    if match is None:
        raise FerModelError(f"{where}.variant: {name!r} is not an HSEmotion EfficientNet variant "
                            f"(enet_b0_7, enet_b0_8, enet_b0_8_va_mtl, enet_b2_7, enet_b2_8, ...); "
                            f"MobileFaceNet / MobileViT variants are not supported")
    architecture, size = ARCHITECTURES[match["arch"]]
    labels = LABELS_7 if match["classes"] == "7" else LABELS_8
    return Variant(name, architecture, size, labels, "_mtl" in match["rest"])


class HSEmotionOptions(KindOptions):
    """`models.<name>.options` of kind hsemotion (see the module docstring)."""

    path: str
    variant: str | None = None
    allow_pickle: bool = False
    label_set: str = "hsemotion"
    batch_size: int = Field(32, ge=1)
    device: str = "auto"


def build_network(variant: Variant) -> Any:
    """The timm architecture with hsemotion's head (a linear layer, outputs = classes [+ 2])."""
    import timm

    return timm.create_model(variant.architecture, pretrained=False, num_classes=variant.outputs)


def hsemotion_state_dict(path: Path, allow_pickle: bool, where: str) -> dict[str, Any]:
    """The file's state dict; the training notebooks wrap the head as nn.Sequential(nn.Linear):
    classifier.0.* -> classifier.*"""
    state = read_state_dict(path, allow_pickle, where)
    return {re.sub(r"^classifier\.0\.", "classifier.", k): v for k, v in state.items()}


class HSEmotion(ModelAdapter):
    """An HSEmotion EfficientNet (classes, optionally valence and arousal) on whole face images."""

    kind = "hsemotion"
    protocol = "classify"

    def __init__(self, path: Path, *, variant: Variant, label_set: str = "hsemotion", allow_pickle: bool = False,
                 batch_size: int = 32, device: str = "auto", where: str = "models.hsemotion.options") -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FerModelError(f"{where}.path: {self.path} does not exist; {DOWNLOAD_HINT} and put it there")
        self.variant = variant
        check_labels(variant.labels, label_set, where)
        self.label_set = label_set
        self.device = torch_device(device)
        net = build_network(variant)
        try:
            net.load_state_dict(hsemotion_state_dict(self.path, allow_pickle, where), strict=True)
        except RuntimeError as exc:
            raise FerModelError(f"{where}.path: {self.path} does not fit {variant.architecture} with "
                                f"{variant.outputs} outputs (variant {variant.name}): {exc}") from None
        self.net = net.to(self.device).eval()
        self.batch_size = int(batch_size)
        self.weights_sha256 = weights_digest([self.path])

    @classmethod
    def build(cls, cfg: ModelConfig, ctx: BuildContext) -> HSEmotion:
        where = f"models.{cfg.name}.options"
        opts = parse_options(HSEmotionOptions, cfg, FerModelError)
        path = Path(ctx.resolve(opts.path))
        variant = parse_variant(opts.variant or path.stem, where)
        return cls(path, variant=variant, label_set=opts.label_set, allow_pickle=opts.allow_pickle,
                   batch_size=opts.batch_size, device=opts.device, where=where)

    def _tensor(self, record: ImageRecord) -> np.ndarray:
        x = (rgb_array(record.path, self.variant.image_size) - IMAGENET_MEAN) / IMAGENET_STD
        return x.transpose(2, 0, 1)

    def _outputs(self, batch: Sequence[ImageRecord]) -> np.ndarray:
        return forward_batch(self.net, [self._tensor(r) for r in batch], self.device)

    def evaluate(self, images: Sequence[ImageRecord], context: EvaluationContext) -> Evaluation:
        preprocessing = {"input": "whole image", "resize": self.variant.image_size, "normalize": "imagenet",
                         "variant": self.variant.name, "batch_size": self.batch_size, "device": self.device.type}
        answers = classify_batches(images, context, self._outputs, self.variant.labels,
                                   valence_arousal=self.variant.valence_arousal, batch_size=self.batch_size,
                                   protocol=self.protocol, preprocessing=preprocessing)
        return Evaluation(answers=answers, label_set=self.label_set, weights_sha256=self.weights_sha256)
