"""Kind `emonet`: EmoNet (Toisoul et al., Nature Machine Intelligence 2021), 5 or 8 AffectNet
classes plus valence and arousal, loaded from the user's copy of the published weights.

    models:
      emonet8:
        kind: emonet
        version: emonet_8
        options:
          path: ~/models/emonet/emonet_8.pth   # required: the published state dict
          classes: 8          # default: from the file name (emonet_5 / emonet_8), else 8
          batch_size: 16
          device: auto

The network is ours (inference.models.emonet_net, written from the paper); the weights are not
shipped: the official repository (https://github.com/face-analysis/emonet, files
`pretrained/emonet_5.pth` and `pretrained/emonet_8.pth`) and its weights are licensed CC BY-NC-ND
4.0 (non-commercial). Classes in the published order: 0 Neutral, 1 Happy, 2 Sad, 3 Surprise,
4 Fear (the 5-class model stops here), 5 Disgust, 6 Anger, 7 Contempt -- label_set 'emonet'
in the label-map seed. Valence and arousal in [-1, 1] are stored as steps 'valence' /
'arousal' on [1, 9] (inference.models.fer_baselines, the mapping recorded per answer).

Preprocessing as the official demo: the whole image (the dataset's face crop) resized to
256 x 256, RGB scaled to [0, 1], no mean/std normalisation. The paper's models were trained on
AffectNet faces cropped to the bounding box of their landmarks, so give it tight face crops.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

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
from inference.models.emonet_net import INPUT_SIZE, EmoNet

LABELS_8 = ("Neutral", "Happy", "Sad", "Surprise", "Fear", "Disgust", "Anger", "Contempt")
LABELS = {5: LABELS_8[:5], 8: LABELS_8}
DOWNLOAD_HINT = ("download emonet_8.pth (or emonet_5.pth) from https://github.com/face-analysis/emonet/tree/"
                 "master/pretrained (licence CC BY-NC-ND 4.0: non-commercial use only)")
# The official scripts save the weights from nn.DataParallel: every key starts with 'module.'.
_WRAPPER_PREFIX = re.compile(r"^module\.")


class EmoNetOptions(KindOptions):
    """`models.<name>.options` of kind emonet (see the module docstring)."""

    path: str
    classes: Literal[5, 8] | None = None
    label_set: str = "emonet"
    batch_size: int = Field(16, ge=1)
    device: str = "auto"


def classes_of(path: Path, classes: int | None) -> int:
    """The option, else the published file name's (emonet_5.pth -> 5), else 8."""
    if classes is not None:
        return classes
    match = re.search(r"emonet_([58])\b", path.stem)
    return int(match[1]) if match else 8


def emonet_state_dict(path: Path, where: str) -> dict[str, Any]:
    """The file's state dict with the DataParallel prefix removed (never unpickles code)."""
    return {_WRAPPER_PREFIX.sub("", k): v for k, v in read_state_dict(path, allow_pickle=None, where=where).items()}


def load_emonet(path: Path, classes: int, where: str) -> Any:
    """EmoNet with `classes` outputs and the file's weights, strictly: first the key names (a file
    of another network is named as such), then the shapes (load_state_dict raises RuntimeError).
    An older file without BatchNorm's `num_batches_tracked` counters is also accepted: inference
    never reads them."""
    net = EmoNet(n_classes=classes)
    state = emonet_state_dict(path, where)
    expected = list(net.state_dict())
    missing = [k for k in expected if k not in state and not k.endswith(".num_batches_tracked")]
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise FerModelError(
            f"{where}.path: {path} is not an EmoNet state dict: missing {missing[:5]}"
            f"{' ...' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}"
            f"{' ...' if len(unexpected) > 5 else ''}; {DOWNLOAD_HINT}")
    net.load_state_dict(state, strict=False)
    return net


class EmoNetModel(ModelAdapter):
    """EmoNet on whole face images: the class probabilities, valence and arousal."""

    kind = "emonet"
    protocol = "classify"

    def __init__(self, path: Path, *, classes: int = 8, label_set: str = "emonet", batch_size: int = 16,
                 device: str = "auto", where: str = "models.emonet.options") -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FerModelError(f"{where}.path: {self.path} does not exist; {DOWNLOAD_HINT}, and put it there "
                                f"(or point {where}.path at it)")
        self.labels = LABELS[classes]
        check_labels(self.labels, label_set, where)
        self.label_set = label_set
        self.device = torch_device(device)
        try:
            net = load_emonet(self.path, classes, where)
        except RuntimeError as exc:  # a shape mismatch: e.g. the 5-class file with classes: 8
            raise FerModelError(f"{where}.path: {self.path} does not fit EmoNet with {classes} classes "
                                f"(set {where}.classes to the file's): {exc}") from None
        self.net = net.to(self.device).eval()
        self.batch_size = int(batch_size)
        self.weights_sha256 = weights_digest([self.path])

    @classmethod
    def build(cls, cfg: ModelConfig, ctx: BuildContext) -> EmoNetModel:
        where = f"models.{cfg.name}.options"
        opts = parse_options(EmoNetOptions, cfg, FerModelError)
        path = Path(ctx.resolve(opts.path))
        return cls(path, classes=classes_of(path, opts.classes), label_set=opts.label_set,
                   batch_size=opts.batch_size, device=opts.device, where=where)

    def _outputs(self, batch: Sequence[ImageRecord]) -> np.ndarray:
        # the official demo's input: RGB / 255, no mean / std
        return forward_batch(self.net, [rgb_array(r.path, INPUT_SIZE).transpose(2, 0, 1) for r in batch], self.device)

    def evaluate(self, images: Sequence[ImageRecord], context: EvaluationContext) -> Evaluation:
        preprocessing = {"input": "whole image", "resize": INPUT_SIZE, "normalize": "[0, 1]",
                         "classes": len(self.labels), "batch_size": self.batch_size, "device": self.device.type}
        answers = classify_batches(images, context, self._outputs, self.labels, valence_arousal=True,
                                   batch_size=self.batch_size, protocol=self.protocol, preprocessing=preprocessing)
        return Evaluation(answers=answers, label_set=self.label_set, weights_sha256=self.weights_sha256)
