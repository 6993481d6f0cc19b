"""What a model adapter returns for an image."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PARSE_STATUSES = ("ok", "repaired", "refused", "unparseable", "off_label", "no_face")


@dataclass(frozen=True)
class Answer:
    """One answer of a model about one image (one protocol step, sample and attempt)."""

    image_id: str
    image_hash: str
    parse_status: str  # one of PARSE_STATUSES
    predicted_label: str | None  # in the model's own label_set; None unless status ok/repaired
    probabilities: dict[str, float] | None = None  # full vector, model's own labels
    predicted_value: float | None = None  # on the target scale (see value_mapping)
    face_found: bool | None = None
    face_box: tuple[int, int, int, int] | None = None  # x, y, w, h in the original image
    preprocessing: dict[str, Any] = field(default_factory=dict)
    latency_ms: float | None = None
    protocol: str = "classify"
    step: int = 1
    step_name: str = "emotion"
    sample_index: int = 0
    attempt: int = 1
    prompt_hash: str | None = None
    raw_text: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    raw_value: float | None = None  # the numeric answer as given, before any rescaling
    value_mapping: str | None = None  # how raw_value became predicted_value (inference.scales)
