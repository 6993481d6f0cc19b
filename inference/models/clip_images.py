"""Image files -> open_clip input tensors for the CLIP adapter, optionally with JPEG draft decoding.

Preprocessing is always open_clip's own transform (`create_model_and_transforms`: resize,
centre crop, to tensor, normalise). What `decode_draft` changes is only the decoded image handed
to it: libjpeg can decode a JPEG directly at 1/2, 1/4 or 1/8 scale (PIL `Image.draft`), which is
several times faster than decoding full size and then resizing, because the bicubic antialiased
resize of a large image dominates the per-image cost. The downscale then happens partly in the
DCT domain instead of entirely in the bicubic filter, so pixels (and embeddings) change slightly;
hence it is an explicit option, off by default. `draft_size` is the smallest side the draft may
produce: the preprocess resize size times `DRAFT_MARGIN`, so the bicubic resize still does the
last reduction (at most 2x) and the DCT scaling never goes below twice the model's input size.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

DRAFT_MARGIN = 2  # draft decodes to >= 2x the model input side; bicubic does the rest


def preprocess_size(model: Any) -> int:
    """The side the open_clip preprocessing resizes to (the model's image size)."""
    cfg = getattr(getattr(model, "visual", None), "preprocess_cfg", None) or {}
    size = cfg.get("size") or getattr(model.visual, "image_size", 224)
    return int(max(size) if isinstance(size, (tuple, list)) else size)


def draft_size(model: Any, enabled: bool) -> int | None:
    """Minimum decoded side for `load_image`, or None (full decode) when drafting is off."""
    return DRAFT_MARGIN * preprocess_size(model) if enabled else None


def load_image(path: str | Path, preprocess: Callable[[Any], Any], min_side: int | None = None) -> Any:
    """Decode one image file to RGB and run open_clip's preprocessing on it.

    With `min_side`, a JPEG is decoded at the largest libjpeg reduction (1/2, 1/4, 1/8) that
    keeps both sides >= min_side; other formats are always decoded in full.
    """
    from PIL import Image

    with Image.open(path) as im:
        if min_side and im.format == "JPEG":
            im.draft("RGB", (min_side, min_side))  # must come before the pixels are loaded
        return preprocess(im.convert("RGB"))
