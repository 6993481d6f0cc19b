"""Kind `image_classifier`: any Hugging Face image-classification checkpoint (ViT, BEiT,
MobileViT, ConvNeXt, ... fine-tuned for FER), from a local folder or the hub cache.

    models:
      vit_fer:
        kind: image_classifier
        version: main
        options:
          model: trpakov/vit-face-expression   # hub repo id, or a folder (config.json + weights)
          revision: main          # hub revision (default main)
          label_set: hf_fer       # seed vocabulary of the model's id2label (dbt/seeds/emotion_label_map.csv)
          allow_download: false   # default: offline, read the hub cache only
          batch_size: 32
          device: auto

Offline by default: nothing is downloaded unless `allow_download: true`; a checkpoint that is
neither a folder nor in the hub cache fails with the command that fetches it and where it
lands. Every `id2label` value must map through the seed (checked when the model is built).
The whole image goes through the checkpoint's own image processor; each answer carries the
full softmax vector in the model's own labels (dbt maps them to canonical emotions).
"""

from __future__ import annotations

from collections.abc import Sequence
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
    FerModelError, batches, check_labels, emotion_answer, load_rgb, softmax, timed, torch_device,
    weights_digest,
)

WEIGHT_PATTERNS = ("*.safetensors", "*.bin")
CHECKPOINT_FILES = ["*.json", "*.safetensors", "*.bin", "*.txt"]  # what a download fetches


class ImageClassifierOptions(KindOptions):
    """`models.<name>.options` of kind image_classifier (see the module docstring)."""

    model: str
    revision: str = "main"
    label_set: str = "hf_fer"
    allow_download: bool = False
    batch_size: int = Field(32, ge=1)
    device: str = "auto"


def missing_checkpoint_message(where: str, model: str, revision: str) -> str:
    """What to download and where to put it, for a checkpoint found neither on disk nor in the cache."""
    from huggingface_hub import constants

    return (
        f"{where}.model: {model!r} is not a folder and revision {revision!r} is not in the Hugging "
        f"Face hub cache ({constants.HF_HUB_CACHE}), and downloads are off. Either run "
        f"`hf download {model} --revision {revision}` on a machine with internet access (it lands in "
        f"{constants.HF_HUB_CACHE}/models--{model.replace('/', '--')}; copy that folder to the same "
        f"place here, or set HF_HUB_CACHE), or save the checkpoint to a folder holding config.json, "
        f"preprocessor_config.json and model.safetensors (or pytorch_model.bin) and set "
        f"{where}.model to that folder; or set {where}.allow_download: true"
    )


def resolve_checkpoint(opts: ImageClassifierOptions, where: str, resolve: Any) -> Path:
    """The folder of the checkpoint: a local folder, else its snapshot in the hub cache."""
    local = resolve(opts.model)
    if Path(local).is_dir():
        return Path(local)
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(opts.model, revision=opts.revision, allow_patterns=CHECKPOINT_FILES,
                                      local_files_only=not opts.allow_download))
    except LocalEntryNotFoundError:
        raise FerModelError(missing_checkpoint_message(where, opts.model, opts.revision)) from None


class ImageClassifier(ModelAdapter):
    """A transformers `AutoModelForImageClassification` checkpoint as a FER model."""

    kind = "image_classifier"
    protocol = "classify"

    def __init__(self, folder: Path, *, label_set: str = "hf_fer", batch_size: int = 32,
                 device: str = "auto", where: str = "models.image_classifier") -> None:
        from transformers import AutoImageProcessor, AutoModelForImageClassification

        self.folder = Path(folder)
        weights = [p for pattern in WEIGHT_PATTERNS for p in self.folder.glob(pattern)]
        if not (self.folder / "config.json").is_file() or not weights:
            raise FerModelError(f"{where}: {self.folder} needs config.json and model.safetensors (or "
                                f"pytorch_model.bin); it has {sorted(p.name for p in self.folder.iterdir())}")
        if not (self.folder / "preprocessor_config.json").is_file():
            raise FerModelError(f"{where}: {self.folder} has no preprocessor_config.json (the image "
                                f"processor); save it with processor.save_pretrained(<folder>)")
        self.device = torch_device(device)
        self.model = AutoModelForImageClassification.from_pretrained(self.folder).to(self.device).eval()
        self.processor = AutoImageProcessor.from_pretrained(self.folder)
        id2label = self.model.config.id2label
        self.labels = tuple(str(id2label[i]) for i in range(len(id2label)))
        check_labels(self.labels, label_set, where)
        self.label_set = label_set
        self.batch_size = int(batch_size)
        self.weights_sha256 = weights_digest(weights)

    @classmethod
    def build(cls, cfg: ModelConfig, ctx: BuildContext) -> ImageClassifier:
        where = f"models.{cfg.name}.options"
        opts = parse_options(ImageClassifierOptions, cfg, FerModelError)
        folder = resolve_checkpoint(opts, where, ctx.resolve)
        return cls(folder, label_set=opts.label_set, batch_size=opts.batch_size, device=opts.device,
                   where=where)

    def _probabilities(self, batch: Sequence[ImageRecord]) -> np.ndarray:
        import torch

        inputs = self.processor(images=[load_rgb(r.path) for r in batch], return_tensors="pt").to(self.device)
        with torch.inference_mode():
            logits = self.model(**inputs).logits
        return softmax(logits.float().cpu().numpy())

    def evaluate(self, images: Sequence[ImageRecord], context: EvaluationContext) -> Evaluation:
        preprocessing = {"input": "whole image", "processor": type(self.processor).__name__,
                         "batch_size": self.batch_size, "device": self.device.type}
        answers = []
        for batch in batches(images, self.batch_size):
            probs, ms = timed(self._probabilities, batch)
            answers.extend(emotion_answer(r, self.labels, p, protocol=self.protocol, preprocessing=preprocessing,
                                          latency_ms=ms / len(batch)) for r, p in zip(batch, probs))
            if context.progress is not None:
                context.progress(len(answers), len(images))
        return Evaluation(answers=answers, label_set=self.label_set, weights_sha256=self.weights_sha256)
