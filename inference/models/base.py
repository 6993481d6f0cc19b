"""The model-adapter interface: what an adapter returns for an image (`Answer`) and for a run
(`Evaluation`), and the one method every model kind implements (`ModelAdapter.evaluate`)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from inference.datasets.base import ImageRecord, QuarantinedRow

if TYPE_CHECKING:
    import pandas as pd

    from inference.config import DatasetConfig, ModelConfig

_O = TypeVar("_O", bound="KindOptions")

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


# ----------------------------------------------------------------------------- the interface


@dataclass(frozen=True)
class BuildContext:
    """What building an adapter may need besides the model config."""

    cache_dir: Path  # downloads (weights) land here; VLM response cache: <cache_dir>/responses.sqlite
    resolve: Callable[[str], Path]  # a path written in the config -> absolute path
    dataset: str | None  # the dataset the model is about to answer on
    dataset_config: DatasetConfig | None = None  # its config (external-API consent)


@dataclass(frozen=True)
class EvaluationContext:
    """What some kinds need besides the images; every kind gets all of it and uses what it needs."""

    # The images' canonical true emotions, in image order (None: no mapping). A CLIP linear
    # probe is trained on them out-of-fold; other kinds ignore them.
    true_labels: Sequence[str | None] | None = None
    # progress(done, total) in images, for long runs (remote APIs).
    progress: Callable[[int, int], Any] | None = None
    show_progress_bar: bool = False  # a tqdm bar on stderr
    # The slice's raw.api_batches (inference.batch_ledger.BatchLedger), for batch delivery.
    batch_ledger: Any = None


@dataclass(frozen=True)
class Usage:
    """What a run through an API cost: calls made, answers from the response cache, tokens, USD."""

    calls: int = 0
    cache_hits: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None  # None: no price configured
    rate_limited_calls: int = 0  # calls the provider throttled (429 / RESOURCE_EXHAUSTED), each waited out
    # The adaptive concurrency window over the run (inference.vlm.limiter report), or None.
    concurrency: dict[str, Any] | None = None
    # USD per million tokens per delivery tier ({"standard": {"input", "output"}, "flex", "batch"}),
    # stored in raw.model_runs.prices: marts.answer_costs prices each answer by its tier
    prices: dict[str, dict[str, float]] | None = None
    # The run's billed cost reached the model's budget_usd: it sent nothing more (kind 'budget' failures).
    stopped_at_budget: bool = False


@dataclass
class Evaluation:
    """Everything one evaluation of a model on a dataset's images produced."""

    answers: list[Answer]
    label_set: str  # vocabulary of the answers' labels (mapped by the emotion_label_map seed)
    weights_sha256: str | None  # what exactly was evaluated
    # Requests that never got a model answer (rows for raw.transport_failures).
    transport_failures: list[dict[str, Any]] = field(default_factory=list)
    # Rows the model could not use, and the files whose raw.quarantine rows it owns (replaced
    # with these on each run; an imported model's predictions file).
    quarantined: list[QuarantinedRow] = field(default_factory=list)
    quarantine_sources: list[str] = field(default_factory=list)
    embeddings: pd.DataFrame | None = None  # image_id, image_hash, embedding (CLIP)
    usage: Usage | None = None  # None: no API calls involved


class ModelAdapter(ABC):
    """A model kind. Built by `inference.models.build_model` from its registry entry
    (`inference.kinds.MODEL_ADAPTERS`); the orchestration calls only `evaluate`."""

    kind: ClassVar[str]
    label_set: str
    weights_sha256: str | None
    # Whether `evaluate` takes video clips (ImageRecord.media_type 'video') as they are. Kinds
    # that take images get sampled frames instead (inference.models.frame_vote.evaluate_media).
    accepts_video: bool = False
    # Whether `evaluate` reads the images (False: answers made elsewhere, kind `imported`). Only
    # such adapters get the dataset's preprocessing step (inference.preprocessing).
    reads_images: ClassVar[bool] = True

    @classmethod
    def build(cls, cfg: ModelConfig, ctx: BuildContext) -> ModelAdapter:
        """The adapter for a `models:` entry of this kind (each kind defines it)."""
        raise NotImplementedError(f"{cls.__name__} does not define build(cfg, ctx)")

    @abstractmethod
    def evaluate(self, images: Sequence[ImageRecord], context: EvaluationContext) -> Evaluation:
        """Answer about every image (in image order) and report what else the run produced."""

    def answer_protocol(self) -> str:
        """The protocol label of its answers (kinds whose `protocol` is not that label override)."""
        return str(self.protocol)  # type: ignore[attr-defined]

    def no_face_answer(self, image: ImageRecord, preprocessing: dict[str, Any]) -> Answer:
        """The answer recorded, without asking the model, for an image in which the dataset's face
        detector found no face: `no_face` on the protocol's first (emotion) step; nothing guessed."""
        return Answer(image_id=image.image_id, image_hash=image.image_hash, parse_status="no_face",
                      predicted_label=None, face_found=False, preprocessing=preprocessing,
                      protocol=self.answer_protocol(), step=1, step_name="emotion")


class KindOptions(BaseModel):
    """Base of a kind's `models.<name>.options` schema (declared in the kind's own module)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def parse_options(schema: type[_O], cfg: ModelConfig, error: type[Exception],
                  options: dict[str, Any] | None = None) -> _O:
    """`cfg.options` (or `options`) validated by `schema`; errors (of type `error`) name
    models.<name>.options.<key> and, for an unknown key, the allowed ones."""
    where = f"models.{cfg.name}.options"
    opts = dict(cfg.options if options is None else options)
    allowed = sorted(field.alias or name for name, field in schema.model_fields.items())
    unknown = sorted(set(opts) - set(allowed))
    if unknown:
        raise error(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}")
    try:
        return schema(**opts)
    except ValidationError as exc:
        raise error("\n".join(f"{where}.{'.'.join(map(str, e['loc']))}: {e['msg']}"
                              for e in exc.errors())) from None
