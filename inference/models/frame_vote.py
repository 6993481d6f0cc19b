"""Video clips for models that take images: the one place every model kind receives its images
(`evaluate_media`, called by `inference.slice_rows.evaluate_slice`).

A model that takes clips (`ModelAdapter.accepts_video`: gemini) gets them as they are unless
`models.<name>.frames` is set. Every other model gets each clip's sampled frames
(`inference.models.video_frames`) in the same `evaluate` call as the dataset's stills, and each
clip gets one answer per (protocol, step, sample):

- `frames: middle` (k = 1): the middle frame's answers, every try, under the clip's id;
- `frames: {k: 5}`: the majority label over the frames' final answers (each frame's last try);
  a tie goes to the tied label voted by the frame nearest the clip's middle; numeric answers
  (valence, arousal) are the median; probabilities the mean. The frame whose answer stands for
  the clip (middle-most voter of the winner) gives raw_text, prompt hash and face box.

Each clip answer records in `preprocessing.video` the frames used (index, time), each frame's
answer and the vote. A frame with no answer (transport failure) is left out of the vote; only a
clip none of whose frames answered keeps a transport failure row (the first frame's).
"""

from __future__ import annotations

import dataclasses
import statistics
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from inference.config import FrameSampling
from inference.datasets.base import ImageRecord
from inference.models.base import Answer, Evaluation, EvaluationContext, ModelAdapter
from inference.models.video_frames import Frame, sample_frames

VALID = ("ok", "repaired")
_Key = tuple[str, int, str, int]  # protocol, step, step_name, sample_index


@dataclasses.dataclass(frozen=True)
class _Clip:
    record: ImageRecord
    frames: list[Frame]
    n_frames: int

    def middle_first(self, frames: Sequence[Frame]) -> list[Frame]:
        return sorted(frames, key=lambda f: (abs(f.index - (self.n_frames - 1) / 2), f.index))


def evaluate_media(model: ModelAdapter, images: Sequence[ImageRecord], context: EvaluationContext, *,
                   frames: FrameSampling | None, cache_dir: Path,
                   evaluate: Callable[[Sequence[ImageRecord], EvaluationContext], Evaluation] | None = None,
                   ) -> Evaluation:
    """`evaluate(images, context)` (default `model.evaluate`), with clips turned into frames where
    the model needs it."""
    evaluate = evaluate or model.evaluate
    if not any(r.media_type == "video" for r in images) or (model.accepts_video and frames is None):
        return evaluate(images, context)
    spec = frames or FrameSampling()
    expanded: list[ImageRecord] = []
    truth: list[str | None] = []
    clips: dict[str, _Clip] = {}  # frame image_id -> its clip
    for i, record in enumerate(images):
        label = context.true_labels[i] if context.true_labels is not None else None
        if record.media_type != "video":
            expanded.append(record)
            truth.append(label)
            continue
        sampled, n_frames = sample_frames(record, spec.k, cache_dir)
        clip = _Clip(record, sampled, n_frames)
        for frame in sampled:
            clips[frame.record.image_id] = clip
            expanded.append(frame.record)
            truth.append(label)
    inner = dataclasses.replace(context, true_labels=truth if context.true_labels is not None else None)
    evaluation = evaluate(expanded, inner)
    return _fold(evaluation, images, clips, spec)


def _fold(evaluation: Evaluation, images: Sequence[ImageRecord], clips: dict[str, _Clip],
          spec: FrameSampling) -> Evaluation:
    """The frames' answers, failures and embeddings as the clips'."""
    by_image: dict[str, list[Answer]] = {}
    for a in evaluation.answers:
        by_image.setdefault(a.image_id, []).append(a)
    answers: list[Answer] = []
    answered: set[tuple[str, _Key]] = set()
    by_clip = {c.record.image_id: c for c in clips.values()}
    for record in images:
        clip = by_clip.get(record.image_id)
        if clip is None:
            answers.extend(by_image.get(record.image_id, []))
            continue
        frame_answers = {f.index: by_image.get(f.record.image_id, []) for f in clip.frames}
        for answer in _clip_answers(clip, frame_answers, spec):
            answers.append(answer)
            if len(clip.frames) > 1:  # a vote: the frames' failures are not the clip's
                answered.add((record.image_id, _key(answer)))
    return dataclasses.replace(
        evaluation, answers=answers,
        transport_failures=_failures(evaluation.transport_failures, clips, answered),
        embeddings=_embeddings(evaluation.embeddings, clips))


def _key(a: Answer | dict[str, Any]) -> _Key:
    if isinstance(a, Answer):
        return a.protocol, a.step, a.step_name, a.sample_index
    return a["protocol"], int(a["step"]), a.get("step_name") or "", int(a["sample_index"])


def _video_record(clip: _Clip, spec: FrameSampling, used: Sequence[Frame]) -> dict[str, Any]:
    return {"frames": spec.label, "frame_count": clip.n_frames, "frame_indices": [f.index for f in used],
            "times_s": [f.time_s for f in used]}


def _clip_answers(clip: _Clip, frame_answers: dict[int, list[Answer]], spec: FrameSampling) -> list[Answer]:
    if len(clip.frames) == 1:  # the middle frame: its answers, every try, are the clip's
        video = _video_record(clip, spec, clip.frames)
        return [_as_clip(a, clip, {**a.preprocessing, "video": video}) for a in frame_answers[clip.frames[0].index]]
    finals: dict[_Key, dict[int, Answer]] = {}  # each frame's last try per (protocol, step, sample)
    for index, rows in frame_answers.items():
        for a in rows:
            slot = finals.setdefault(_key(a), {})
            if index not in slot or a.attempt > slot[index].attempt:
                slot[index] = a
    return [_vote(clip, spec, per_frame) for per_frame in finals.values()]


def _as_clip(a: Answer, clip: _Clip, preprocessing: dict[str, Any], **changes: Any) -> Answer:
    return dataclasses.replace(a, image_id=clip.record.image_id, image_hash=clip.record.image_hash,
                               preprocessing=preprocessing, **changes)


def _vote(clip: _Clip, spec: FrameSampling, per_frame: dict[int, Answer]) -> Answer:
    """One answer of the clip from its frames' final answers (see the module docstring)."""
    frames = [f for f in clip.frames if f.index in per_frame]
    valid = [f for f in frames if per_frame[f.index].parse_status in VALID]
    votes = Counter(per_frame[f.index].predicted_label for f in valid if per_frame[f.index].predicted_label)
    values = [per_frame[f.index].predicted_value for f in valid if per_frame[f.index].predicted_value is not None]
    label, decision = None, "no valid frame"
    if votes:
        top = max(votes.values())
        tied = {lbl for lbl, n in votes.items() if n == top}
        # the middle-most frame among the tied labels' voters decides (and stands for the clip)
        rep = next(f for f in clip.middle_first(valid) if per_frame[f.index].predicted_label in tied)
        label = per_frame[rep.index].predicted_label
        decision = "majority" if len(tied) == 1 else "tie: the middle-most frame's label"
    elif valid:  # numeric steps (valence, arousal): the median; free text: the middle-most frame's
        rep, decision = clip.middle_first(valid)[0], "median" if values else "the middle-most frame's answer"
    else:
        rep = clip.middle_first(frames)[0]
    chosen = per_frame[rep.index]
    status = chosen.parse_status if valid else Counter(per_frame[f.index].parse_status for f in frames).most_common(1)[0][0]
    video = {**_video_record(clip, spec, frames), "votes": dict(votes), "decision": decision,
             "used_frame": rep.index, "per_frame": [_frame_summary(f, per_frame[f.index]) for f in frames]}
    missing = [f.index for f in clip.frames if f.index not in per_frame]
    if missing:
        video["no_answer_frames"] = missing
    answers = [per_frame[f.index] for f in frames]
    return _as_clip(
        chosen, clip, {**chosen.preprocessing, "video": video}, attempt=1, parse_status=status,
        predicted_label=label, probabilities=_mean_probabilities(answers),
        predicted_value=statistics.median(values) if values else None,
        raw_value=_median([per_frame[f.index].raw_value for f in valid]),
        face_found=_any_face(answers), latency_ms=_sum([a.latency_ms for a in answers]),
        input_tokens=_sum([a.input_tokens for a in answers]), output_tokens=_sum([a.output_tokens for a in answers]),
    )


def _frame_summary(frame: Frame, a: Answer) -> dict[str, Any]:
    out: dict[str, Any] = {"index": frame.index, "time_s": frame.time_s, "status": a.parse_status,
                           "label": a.predicted_label, "attempt": a.attempt}
    if a.predicted_value is not None:
        out["value"] = a.predicted_value
    if a.raw_text is not None:
        out["raw_text"] = a.raw_text
    if a.face_box is not None:
        out["face_box"] = list(a.face_box)
    return out


def _mean_probabilities(answers: Sequence[Answer]) -> dict[str, float] | None:
    vectors = [a.probabilities for a in answers if a.probabilities]
    if not vectors:
        return None
    labels = list(vectors[0])
    return {lbl: float(np.mean([v.get(lbl, 0.0) for v in vectors])) for lbl in labels}


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return float(statistics.median(present)) if present else None


def _sum(values: Sequence[Any]) -> Any:
    present = [v for v in values if v is not None]
    return sum(present) if present else None


def _any_face(answers: Sequence[Answer]) -> bool | None:
    found = [a.face_found for a in answers if a.face_found is not None]
    return any(found) if found else None


def _failures(failures: list[dict[str, Any]], clips: dict[str, _Clip],
              answered: set[tuple[str, _Key]]) -> list[dict[str, Any]]:
    """Frame failures as the clip's, only where the clip got no answer (one row per try)."""
    out: list[dict[str, Any]] = []
    seen: set[tuple[str, _Key, int]] = set()
    for f in failures:
        clip = clips.get(f["image_id"])
        if clip is None:
            out.append(f)
            continue
        clip_id = clip.record.image_id
        slot = (clip_id, _key(f), int(f["attempt"]))
        if (clip_id, _key(f)) in answered or slot in seen:
            continue
        seen.add(slot)
        index = next(fr.index for fr in clip.frames if fr.record.image_id == f["image_id"])
        out.append({**f, "image_id": clip_id, "image_hash": clip.record.image_hash,
                    "message": f"frame {index}: {f.get('message') or ''}"})
    return out


def _embeddings(embeddings: Any, clips: dict[str, _Clip]) -> Any:
    """A clip's embedding: the mean of its frames' (CLIP)."""
    if embeddings is None or len(embeddings) == 0 or not clips:
        return embeddings
    import pandas as pd

    is_frame = embeddings["image_id"].isin(list(clips))
    per_clip: dict[str, list[np.ndarray]] = {}
    for image_id, vector in zip(embeddings.loc[is_frame, "image_id"], embeddings.loc[is_frame, "embedding"]):
        per_clip.setdefault(clips[image_id].record.image_id, []).append(np.asarray(vector, dtype=np.float64))
    hashes = {c.record.image_id: c.record.image_hash for c in clips.values()}
    rows = [{"image_id": clip_id, "image_hash": hashes[clip_id], "embedding": np.mean(np.stack(vectors), axis=0)}
            for clip_id, vectors in per_clip.items()]
    stills = embeddings.loc[~is_frame, ["image_id", "image_hash", "embedding"]]
    return pd.concat([stills, pd.DataFrame(rows, columns=stills.columns)], ignore_index=True)
