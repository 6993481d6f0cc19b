"""Random-initialised checkpoints of the real FER baseline architectures, written to disk the way
users provide them (no download): a tiny transformers ViT folder and HSEmotion timm state dicts."""

from __future__ import annotations

import hashlib
from pathlib import Path

from inference.datasets.base import ImageRecord

FER_LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


def face_records(root: Path, n: int = 3) -> list[ImageRecord]:
    """`n` small RGB images as a dataset adapter would hand them to a model."""
    from PIL import Image

    out = []
    for i in range(n):
        path = root / f"{i}.png"
        Image.new("RGB", (40, 52), (70 * i, 90, 200)).save(path)
        out.append(ImageRecord(image_id=path.name, path=path, image_hash=hashlib.sha256(path.read_bytes()).hexdigest(),
                               source_label="happy", identity=None, race=None, gender=None, age=None,
                               width=40, height=52))
    return out


def tiny_vit(folder: Path, labels: tuple[str, ...] = FER_LABELS, seed: int = 0) -> Path:
    """A 2-layer ViT (32 px, patch 8) with `labels` as id2label, saved with its image processor."""
    import torch
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    torch.manual_seed(seed)
    cfg = ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                    intermediate_size=64, id2label=dict(enumerate(labels)),
                    label2id={label: i for i, label in enumerate(labels)})
    ViTForImageClassification(cfg).save_pretrained(folder)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def hsemotion_weights(path: Path, variant: str | None = None, seed: int = 0, whole_module: bool = False) -> Path:
    """Random weights of the timm network of `variant` (default: the file's stem), as a state dict
    or, like the files HSEmotion publishes, the whole pickled module."""
    import torch

    from inference.models.hsemotion import build_network, parse_variant

    torch.manual_seed(seed)
    net = build_network(parse_variant(variant or path.stem, "test"))
    torch.save(net if whole_module else net.state_dict(), path)
    return path


def emonet_weights(path: Path, classes: int = 8, seed: int = 0, prefix: str = "module.") -> Path:
    """Random weights of our EmoNet saved like the published files: a plain state dict whose keys
    carry nn.DataParallel's 'module.' prefix."""
    import torch

    from inference.models.emonet_net import EmoNet

    torch.manual_seed(seed)
    torch.save({prefix + k: v for k, v in EmoNet(n_classes=classes).state_dict().items()}, path)
    return path
