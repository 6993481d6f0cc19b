"""Frames of a video clip for image-only models: which frames (`frame_indices`), decoded by PyAV
(FFmpeg) and written once as PNG files under the cache (`sample_frames`).

`frames: middle` is the frame at the clip's middle; `frames: {k: 5}` the k frames at the centres
of k equal parts of the clip (k = 1 is the middle frame). Frames are counted by demuxing the
clip (no decoding) and decoded in one sequential pass, which is exact for any codec (seeking
lands on key frames only); CAER clips are a few seconds long, so a pass costs milliseconds.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from inference.datasets.base import ImageRecord

FRAMES_DIR = "video_frames"  # under the model's cache_dir: <sha256 of the clip>/<index>.png


class VideoDecodeError(RuntimeError):
    """A clip that passed ingestion no longer decodes (changed or truncated on disk)."""


@dataclass(frozen=True)
class Frame:
    """One sampled frame of a clip, as an image file an image-only model can read."""

    index: int  # 0-based position among the clip's decoded frames
    time_s: float | None  # presentation time, when the container gives one
    record: ImageRecord  # the PNG file, id "<clip id>#frame=<index>", hash of the PNG bytes


def frame_indices(n_frames: int, k: int) -> list[int]:
    """The k frames at the centres of k equal parts of `n_frames` (fewer when the clip is shorter)."""
    if n_frames < 1:
        return []
    k = min(k, n_frames)
    return sorted({min(n_frames - 1, int((i + 0.5) * n_frames / k)) for i in range(k)})


def _count_frames(path: Path) -> int:
    """Video packets in the container: one per frame, read without decoding."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return sum(1 for packet in container.demux(stream) if packet.size)


def _decode(path: Path, wanted: set[int]) -> tuple[dict[int, tuple[float | None, object]], int]:
    """{index: (time_s, PIL image)} of the wanted frames, and how many frames decoded."""
    import av

    found: dict[int, tuple[float | None, object]] = {}
    decoded = 0
    with av.open(str(path)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            decoded = index + 1
            if index in wanted:
                found[index] = (frame.time, frame.to_image())  # RGB
    return found, decoded


def _write_png(image: object, target: Path) -> None:
    """Atomically (another process may write the same frame): a temp file, then a rename."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    image.save(tmp, format="PNG")  # type: ignore[attr-defined]
    os.replace(tmp, target)


def _frame_record(clip: ImageRecord, index: int, path: Path) -> ImageRecord:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    # Frames of one clip share its identity (or the clip itself): folds grouped by identity
    # (the CLIP probe) never split one clip between training and test.
    return ImageRecord(
        image_id=f"{clip.image_id}#frame={index}", path=path, image_hash=digest,
        source_label=clip.source_label, identity=clip.identity or clip.image_id, race=clip.race,
        gender=clip.gender, age=clip.age, width=clip.width, height=clip.height,
        extra={"clip": clip.image_id, "frame_index": index}, media_type="image",
    )


def sample_frames(clip: ImageRecord, k: int, cache_dir: Path) -> tuple[list[Frame], int]:
    """The clip's k sampled frames (PNG files under `cache_dir`) and its frame count."""
    try:
        n_frames = _count_frames(clip.path)
        indices = frame_indices(n_frames, k)
        found, decoded = _decode(clip.path, set(indices))
        if decoded < n_frames:  # fewer frames decode than the container lists: sample those
            n_frames, indices = decoded, frame_indices(decoded, k)
            found, _ = _decode(clip.path, set(indices))
        folder = Path(cache_dir) / FRAMES_DIR / clip.image_hash
        for index, (_, image) in found.items():
            if not (folder / f"{index:06d}.png").is_file():  # PNGs of the same pixels are identical
                _write_png(image, folder / f"{index:06d}.png")
    except (OSError, ValueError) as exc:  # av.error.FFmpegError subclasses both
        raise VideoDecodeError(f"{clip.path}: the clip no longer decodes ({type(exc).__name__}: {exc}); "
                               f"restore the file or re-ingest the dataset") from None
    if not indices:
        raise VideoDecodeError(f"{clip.path}: the clip has no video frames; restore the file or re-ingest "
                               f"the dataset")
    frames = [Frame(i, found[i][0], _frame_record(clip, i, folder / f"{i:06d}.png")) for i in indices]
    return frames, n_frames
