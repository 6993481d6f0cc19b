"""Turn adapter outputs into rows of the raw tables (pure functions, no I/O)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import pandas as pd

from inference.datasets.base import DatasetLoad, ImageRecord, QuarantinedRow
from inference.datasets.ratings import HumanRating
from inference.models.base import Answer, Evaluation
from inference.warehouse import EvaluationRows

if TYPE_CHECKING:
    from inference.config import ModelConfig


def utc_now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _json(value: Any) -> str | None:
    if value is None:
        return None
    return json.dumps(value, sort_keys=True, default=str)


def dataset_images_frame(dataset: str, label_set: str, load: DatasetLoad) -> pd.DataFrame:
    loaded_at = utc_now()
    rows = [
        {
            "dataset": dataset,
            "image_id": img.image_id,
            "image_hash": img.image_hash,
            "label_set": label_set,
            "source_label": img.source_label,
            "identity": img.identity,
            "race": img.race,
            "gender": img.gender,
            "age": img.age,
            "width": img.width,
            "height": img.height,
            "extra": _json(img.extra or {}),
            "loaded_at": loaded_at,
            "media_type": img.media_type,
        }
        for img in load.images
    ]
    return pd.DataFrame(rows, columns=_IMAGE_COLUMNS)


_IMAGE_COLUMNS = [
    "dataset", "image_id", "image_hash", "label_set", "source_label", "identity", "race",
    "gender", "age", "width", "height", "extra", "loaded_at", "media_type",
]

EXCLUSION_COLUMNS = ["dataset", "image_id", "field", "value", "reason", "excluded_at"]


def exclusions_frame(dataset: str, load: DatasetLoad) -> pd.DataFrame:
    """raw.dataset_exclusions rows: the images the dataset's kind left out on purpose."""
    at = utc_now()
    rows = [{"dataset": dataset, "image_id": e.image_id, "field": e.field, "value": e.value,
             "reason": e.reason, "excluded_at": at} for e in load.excluded]
    return pd.DataFrame(rows, columns=EXCLUSION_COLUMNS)


QUARANTINE_COLUMNS = ["dataset", "source", "row_number", "image_path", "reason", "record", "quarantined_at"]


def quarantine_frame(dataset: str, load: DatasetLoad) -> pd.DataFrame:
    return quarantined_rows_frame(dataset, load.quarantined)


def quarantined_rows_frame(dataset: str, quarantined: Sequence[QuarantinedRow]) -> pd.DataFrame:
    at = utc_now()
    rows = [
        {
            "dataset": dataset,
            "source": q.source,
            "row_number": q.row_number,
            "image_path": q.image_path,
            "reason": q.reason,
            "record": _json(q.record),
            "quarantined_at": at,
        }
        for q in quarantined
    ]
    frame = pd.DataFrame(rows, columns=QUARANTINE_COLUMNS)
    frame["row_number"] = frame["row_number"].astype("int64")
    return frame


HUMAN_RATING_COLUMNS = [
    "dataset", "rater", "image_id", "dimension", "value", "label", "scale_min", "scale_max", "loaded_at",
]


def human_ratings_frame(dataset: str, ratings: Sequence[HumanRating]) -> pd.DataFrame:
    loaded_at = utc_now()
    rows = [
        {
            "dataset": dataset,
            "rater": r.rater,
            "image_id": r.image_id,
            "dimension": r.dimension,
            "value": r.value,
            "label": r.label,
            "scale_min": r.scale_min,
            "scale_max": r.scale_max,
            "loaded_at": loaded_at,
        }
        for r in ratings
    ]
    frame = pd.DataFrame(rows, columns=HUMAN_RATING_COLUMNS)
    for col in ("value", "scale_min", "scale_max"):
        frame[col] = frame[col].astype("float64")
    for col in ("rater", "image_id", "dimension", "label"):
        frame[col] = frame[col].astype("object")
    return frame


def predictions_frame(
    answers: Sequence[Answer],
    *,
    run_id: str,
    model: str,
    model_version: str,
    model_kind: str,
    label_set: str,
    dataset: str,
) -> pd.DataFrame:
    created_at = utc_now()
    rows = [
        {
            "run_id": run_id,
            "model": model,
            "model_version": model_version,
            "model_kind": model_kind,
            "label_set": label_set,
            "dataset": dataset,
            "image_id": a.image_id,
            "image_hash": a.image_hash,
            "protocol": a.protocol,
            "step": a.step,
            "step_name": a.step_name,
            "sample_index": a.sample_index,
            "attempt": a.attempt,
            "prompt_hash": a.prompt_hash,
            "raw_text": a.raw_text,
            "parse_status": a.parse_status,
            "predicted_label": a.predicted_label,
            "predicted_value": a.predicted_value,
            "probabilities": _json(a.probabilities),
            "face_found": a.face_found,
            "face_box": _json(list(a.face_box) if a.face_box else None),
            "preprocessing": _json(a.preprocessing),
            "latency_ms": a.latency_ms,
            "input_tokens": a.input_tokens,
            "output_tokens": a.output_tokens,
            "created_at": created_at,
            "raw_value": a.raw_value,
            "value_mapping": a.value_mapping,
        }
        for a in answers
    ]
    frame = pd.DataFrame(rows)
    # pandas infers object/float for all-null columns; pin the nullable integer ones.
    for col in ("input_tokens", "output_tokens"):
        if col in frame:
            frame[col] = frame[col].astype("Int64")
    for col in ("predicted_value", "raw_value"):
        if col in frame:
            frame[col] = frame[col].astype("float64")
    return frame


TRANSPORT_FAILURE_COLUMNS = [
    "run_id", "model", "model_version", "dataset", "image_id", "image_hash", "protocol", "step",
    "step_name", "sample_index", "attempt", "kind", "status", "message", "created_at",
]


def transport_failures_frame(
    failures: Sequence[dict[str, Any]], *, run_id: str, model: str, model_version: str, dataset: str
) -> pd.DataFrame:
    """Rows of raw.transport_failures from a VLM adapter's `.transport_failures`."""
    created_at = utc_now()
    rows = [
        {
            "run_id": run_id, "model": model, "model_version": model_version, "dataset": dataset,
            "image_id": f["image_id"], "image_hash": f["image_hash"], "protocol": f["protocol"],
            "step": int(f["step"]), "step_name": f.get("step_name") or "",
            "sample_index": int(f["sample_index"]), "attempt": int(f["attempt"]),
            "kind": f["kind"], "status": f.get("status"), "message": f.get("message"),
            "created_at": created_at,
        }
        for f in failures
    ]
    frame = pd.DataFrame(rows, columns=TRANSPORT_FAILURE_COLUMNS)
    for col in ("step", "sample_index", "attempt"):
        frame[col] = frame[col].astype("int64")
    frame["status"] = frame["status"].astype("Int64")
    for col in ("message", "step_name", "kind", "image_id", "image_hash", "protocol"):
        frame[col] = frame[col].astype("object")
    return frame


def records_from_rows(rows: pd.DataFrame, root) -> list[ImageRecord]:
    """Rebuild ImageRecords of a dataset from raw.dataset_images rows and the dataset root."""
    records = []
    for row in rows.itertuples(index=False):
        records.append(
            ImageRecord(
                image_id=row.image_id,
                path=root / row.image_id,
                image_hash=row.image_hash,
                source_label=row.source_label,
                identity=row.identity,
                race=row.race,
                gender=row.gender,
                age=None if pd.isna(row.age) else float(row.age),
                width=int(row.width),
                height=int(row.height),
                media_type=_media_type(getattr(row, "media_type", None)),
            )
        )
    return records


def _media_type(value: Any) -> str:
    """Rows written before raw.dataset_images had media_type are images."""
    return "image" if value is None or pd.isna(value) else str(value)


def embeddings_frame(
    embeddings: pd.DataFrame | None, *, run_id: str, model: str, model_version: str, dataset: str
) -> pd.DataFrame | None:
    """raw.image_embeddings rows from an embedding model's `.embeddings` (None when it has none)."""
    if embeddings is None or len(embeddings) == 0:
        return None
    frame = embeddings[["image_id", "image_hash", "embedding"]].copy()
    frame["embedding"] = frame["embedding"].map(lambda v: [float(x) for x in v])
    frame["dim"] = frame["embedding"].map(len).astype("int32")
    frame.insert(0, "run_id", run_id)
    frame.insert(1, "model", model)
    frame.insert(2, "model_version", model_version)
    frame.insert(3, "dataset", dataset)
    frame["created_at"] = utc_now()
    return frame


_SECRET_KEY_WORDS = ("key", "token", "secret", "password")


def redacted_options(options: dict[str, Any]) -> str:
    """Model options as JSON for raw.model_runs, with credentials removed.

    Keys themselves never belong in options (api_key_env names a variable), but a base_url can
    carry `user:password@`, and a free-form backend option might hold a token."""
    def clean(key: str, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: clean(str(k), v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(key, v) for v in value]
        if isinstance(value, str):
            if key.endswith("_env"):
                return value  # the NAME of an environment variable
            if any(word in key.lower() for word in _SECRET_KEY_WORDS):
                return "***"
            parts = urlsplit(value)
            if parts.scheme and parts.password:
                host = parts.hostname + (f":{parts.port}" if parts.port else "")
                return urlunsplit((parts.scheme, f"***@{host}", parts.path, parts.query, parts.fragment))
        return value

    return json.dumps(clean("", dict(options)), sort_keys=True, default=str)


@dataclass(frozen=True)
class Discovery:
    """How and when a model version was first seen (raw.model_versions; the watch sensor's run tags)."""

    by: str = "config"
    at: datetime | None = None  # default: when this run started
    source: str | None = None


def evaluation_rows(
    evaluation: Evaluation, *, run_id: str, model: ModelConfig, dataset: str, n_images: int,
    started: datetime, discovery: Discovery,
) -> EvaluationRows:
    """Every raw row of one evaluation of `model` on `dataset` (for warehouse.write_evaluation)."""
    ids = {"run_id": run_id, "model": model.name, "model_version": model.version, "dataset": dataset}
    rows = EvaluationRows(
        transport_failures=transport_failures_frame(evaluation.transport_failures, **ids),
        quarantined=quarantined_rows_frame(dataset, evaluation.quarantined),
        quarantine_sources=list(evaluation.quarantine_sources),
    )
    if not evaluation.answers:
        return rows
    rows.predictions = predictions_frame(evaluation.answers, model_kind=model.kind,
                                         label_set=evaluation.label_set, **ids)
    rows.embeddings = embeddings_frame(evaluation.embeddings, **ids)
    rows.model_run = pd.DataFrame([{
        **{k: ids[k] for k in ("run_id", "model", "model_version")}, "model_kind": model.kind,
        "dataset": dataset, "started_at": started, "finished_at": utc_now(), "n_images": n_images,
        "n_answers": len(rows.predictions),
        "n_no_face": int((rows.predictions["parse_status"] == "no_face").sum()),
        "weights_sha256": evaluation.weights_sha256, "options": redacted_options(dict(model.options)),
        "prices": (json.dumps(evaluation.usage.prices, sort_keys=True)
                   if evaluation.usage is not None and evaluation.usage.prices else None),
    }])
    rows.model_version = {
        "model": model.name, "model_version": model.version, "model_kind": model.kind,
        "discovered_by": discovery.by, "discovered_at": discovery.at or started,
        "discovered_from": discovery.source, "run_id": run_id,
    }
    return rows
