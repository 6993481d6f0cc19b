"""CLIP image loading: the default full decode is exactly open_clip's preprocessing of the PIL
image; the opt-in JPEG draft decode is faster, decodes fewer pixels and stays close to it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

open_clip = pytest.importorskip("open_clip")
torch = pytest.importorskip("torch")

from PIL import Image  # noqa: E402

from inference.models.clip import ClipModel, ClipOptionsError, register_model_config  # noqa: E402
from inference.models.clip_images import DRAFT_MARGIN, load_image, preprocess_size  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
LONDON = REPO_ROOT.parent / "shared" / "datasets" / "london_set"
TINY = "fer-test-tiny-clip-images"
TINY_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "head_width": 32, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}

pytestmark = pytest.mark.skipif(not LONDON.is_dir(), reason=f"needs the London Set at {LONDON}")


def _photos(n: int = 12) -> list[Path]:
    neutral = sorted((LONDON / "neutral_front").glob("*.jpg"))
    smiling = sorted((LONDON / "smiling_front").glob("*.jpg"))
    return [p for pair in zip(neutral[: n // 2], smiling[: n // 2]) for p in pair]


@pytest.fixture(scope="module")
def models() -> dict[bool, ClipModel]:
    register_model_config(TINY_CFG, name=TINY)
    return {draft: ClipModel(TINY, "random", device="cpu", seed=5, decode_draft=draft) for draft in (False, True)}


def test_default_decode_is_open_clips_preprocessing_of_the_full_image(models) -> None:
    model = models[False]
    assert model._draft_side is None
    for path in _photos(4):
        with Image.open(path) as im:
            expected = model.preprocess(im.convert("RGB"))
        assert torch.equal(model._load(path), expected)
    answer_info = model._base_info(8)
    assert answer_info["jpeg_decode"] == "full"


def test_draft_decode_reads_fewer_pixels_and_stays_close(models) -> None:
    full, draft = models[False], models[True]
    side = DRAFT_MARGIN * preprocess_size(draft.model)
    assert preprocess_size(draft.model) == 64 and draft._draft_side == side == 128
    seen: list[tuple[int, int]] = []

    def spy(im):
        seen.append(im.size)
        return draft.preprocess(im)

    photos = _photos()
    with Image.open(photos[0]) as im:
        original = im.size
    load_image(photos[0], spy, side)
    # libjpeg's largest reduction (1/2, 1/4, 1/8) keeping both sides >= 128
    scale = max(s for s in (1, 2, 4, 8) if min(original) // s >= side)
    assert seen == [(original[0] // scale, original[1] // scale)] and scale > 1
    a = torch.stack([full._load(p) for p in photos])
    b = torch.stack([draft._load(p) for p in photos])
    assert not torch.equal(a, b)  # it does change pixels: that is why it is opt-in
    # in 0..255 pixel units (open_clip's std is ~0.27): small on average, bounded everywhere
    pixel = (a - b).abs() * 0.27 * 255
    assert pixel.mean() < 1.0 and pixel.max() < 32
    emb_full, emb_draft = full.embed(photos, batch_size=4), draft.embed(photos, batch_size=4)
    cosine = (emb_full * emb_draft).sum(axis=1)
    others = (emb_full[:-1] * emb_full[1:]).sum(axis=1)  # different photos, for scale
    print(f"draft vs full: pixel mean {float(pixel.mean()):.2f}/255, max {float(pixel.max()):.0f}/255; "
          f"cosine min {cosine.min():.6f} (different photos: max {others.max():.6f})")
    assert 1 - cosine.min() < 0.05 * (1 - others.max())
    single = np.concatenate([draft.embed([p], batch_size=1) for p in photos])
    assert np.abs(single - emb_draft).max() < 1e-5
    assert draft._base_info(4)["jpeg_decode"] == "draft, min side 128"


def test_draft_leaves_other_formats_alone(models, tmp_path) -> None:
    png = tmp_path / "photo.png"
    with Image.open(_photos(2)[0]) as im:
        im.convert("RGB").save(png)
    assert torch.equal(models[True]._load(png), models[False]._load(png))


def test_decode_draft_must_be_a_boolean() -> None:
    register_model_config(TINY_CFG, name=TINY)
    with pytest.raises(ClipOptionsError, match="decode_draft"):
        ClipModel(TINY, "random", device="cpu", decode_draft="false")
