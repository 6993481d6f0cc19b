"""Random-initialised checkpoints of the real FER baseline architectures, written to disk the way
users provide them (no download): a tiny transformers ViT folder and HSEmotion timm state dicts."""

from __future__ import annotations

from pathlib import Path

FER_LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


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
