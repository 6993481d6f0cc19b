"""Prompt protocols: how one image is put to a chat backend, and every answer recorded.

`run_protocol(backend, protocol, image, image_bytes, mime, label_set)` returns a
`ProtocolResult` with one `inference.models.base.Answer` per model reply (every step, sample
and try is kept, so the warehouse can count refusals, repairs and retries) and one
`TransportFailure` per reply that never came.

Protocols (`ProtocolConfig.name`):

- ``single``                   one call (per sample; k defaults to 1).
- ``cot``                      the same with a chain-of-thought template (chhua_cot).
- ``maj_at_k``                 k samples (sample_index 0..k-1) at `temperature` (Chhua: k=5, T=1).
                               The vote is not an Answer: the marts take the mode of the valid
                               samples (`ProtocolResult.vote()` computes the same).
- ``retry_until_valid``        per sample, tries attempt 1..max_tries while the parse status is not
                               ok/repaired; every try is an Answer (Chhua: up to ten tries). Any
                               other protocol retries the same way with `retry_invalid=True`
                               (Chhua combined maj@5 with retries).
- ``n_class_without_neutral``  a single call with a template that offers no 'neutral'
                               (asanuma_6class); a 'neutral' answer is off_label.
- ``context_carry``            Tae et al.: one conversation of three user turns -- emotion (step 1),
                               valence given it (step 2), arousal given both (step 3); each turn
                               carries the earlier prompts and the model's replies, and the
                               template's {emotion}/{valence} are filled with the parsed answers
                               (the prompt's own word for the label: 'angry'; the clamped number).
                               The image is attached to the first user turn (every user turn with
                               `image_on_every_step=True`). A step without a valid answer ends the
                               sample (later steps cannot be asked without it).
- ``two_stage``                Asanuma: step 1 'neutral_gate' (neutral vs non-neutral), step 2
                               'emotion' -- a fresh one-turn 6-class question -- only for
                               non-neutral. See "two-stage rows" below.
- ``free_description``         one call, stored as raw_text, parse_status 'ok' (or 'refused' /
                               'unparseable' for a provider refusal / empty text), no label,
                               step_name 'description'.

Two-stage rows. The marts read, per sample, the 'emotion' row with the highest step (then
attempt). So every two-stage sample whose gate got a model reply ends with exactly one row
step=2, step_name='emotion':
- gate non-neutral: the 6-class model reply(ies), as usual;
- gate neutral: a derived row, predicted_label 'neutral', parse_status = the gate's status
  (ok/repaired), raw_text None, tokens/latency None (they are on the gate row),
  preprocessing.derived_from = 'neutral_gate' -- no second call is made;
- gate without a valid answer after its tries: a derived row with the gate's status
  (refused/unparseable/off_label) and no label, so the image counts as unanswered with that reason.
The gate rows themselves carry predicted_label 'neutral' / 'non_neutral'.

Transport errors. `backend.complete` raising `TransportError` means the engine gave up on that
request (it retries transport errors itself). The protocol records a `TransportFailure` and
stops that sample; no Answer is written for it (nothing is guessed) and later steps of the
sample are not asked. Other samples go on.

Labels. Predicted labels are canonical labels (label_set 'canonical', see
`inference.vlm.prompts.LABEL_SET`). `label_set` may narrow the labels an emotion step accepts
(a subset of the template's); answers outside it are off_label.

Requests. Each request carries its `sample_index` and `attempt` so a response cache keeps the
k samples and the tries apart; when `params.seed` is set, sample i / attempt n is sent with
seed + i * max_tries + (n - 1), so samples differ at temperature > 0 and re-runs repeat.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from inference.datasets.base import ImageRecord
from inference.models.base import Answer
from inference.scales import mapping_formula
from inference.vlm.parsing import ParsedLabel, ParsedValue, parse_label, parse_scale
from inference.vlm.prompts import LABEL_SET, PromptStep, PromptTemplate, load_template
from inference.vlm.types import (
    IMAGE_MIMES, VIDEO_MIMES, ChatBackend, ChatRequest, ChatResponse, GenerationParams, TransportError, Turn,
)

PROTOCOL_NAMES = (
    "single", "cot", "maj_at_k", "retry_until_valid", "context_carry", "two_stage",
    "n_class_without_neutral", "free_description",
)
VALID_STATUSES = ("ok", "repaired")
_SHAPES = {  # step kinds the template must have, per protocol
    "single": ("label",), "cot": ("label",), "maj_at_k": ("label",),
    "retry_until_valid": ("label",), "n_class_without_neutral": ("label",),
    "context_carry": ("label", "scale", "scale"), "two_stage": ("gate", "label"),
    "free_description": ("free_text",),
}


@dataclass(frozen=True)
class ProtocolConfig:
    name: str  # one of PROTOCOL_NAMES
    template: str  # prompt template id (inference/vlm/prompts/<id>.yaml)
    k: int = 1  # samples (maj@k); sample_index 0..k-1
    temperature: float | None = None  # overrides params.temperature when set
    max_tries: int = 10  # tries per step when retrying invalid answers
    params: GenerationParams = field(default_factory=GenerationParams)
    retry_invalid: bool | None = None  # default: True for retry_until_valid only
    image_on_every_step: bool = False  # context_carry: attach the image to every user turn
    stored_as: str | None = None  # Answer.protocol; default `name`

    def __post_init__(self) -> None:
        if self.name not in PROTOCOL_NAMES:
            raise ValueError(f"protocol name {self.name!r} is not one of {', '.join(PROTOCOL_NAMES)}")
        if not isinstance(self.k, int) or self.k < 1:
            raise ValueError(f"protocol {self.name}: k must be an integer >= 1; got {self.k!r}")
        if not isinstance(self.max_tries, int) or self.max_tries < 1:
            raise ValueError(f"protocol {self.name}: max_tries must be an integer >= 1; "
                             f"got {self.max_tries!r}")

    @property
    def retries(self) -> bool:
        return self.name == "retry_until_valid" if self.retry_invalid is None else self.retry_invalid

    @property
    def tries(self) -> int:
        return self.max_tries if self.retries else 1

    @property
    def label(self) -> str:
        return self.stored_as or self.name

    @property
    def generation_params(self) -> GenerationParams:
        if self.temperature is None:
            return self.params
        return replace(self.params, temperature=float(self.temperature))


@dataclass(frozen=True)
class TransportFailure:
    step: int
    sample_index: int
    attempt: int
    kind: str
    message: str
    status: int | None = None
    step_name: str | None = None
    retry_after: float | None = None


@dataclass(frozen=True)
class Vote:
    label: str | None  # the mode of the valid samples; ties -> alphabetically first (as the marts)
    n_votes: int
    is_tie: bool
    n_samples: int
    n_valid: int
    counts: dict[str, int]


@dataclass
class ProtocolResult:
    answers: list[Answer] = field(default_factory=list)
    failures: list[TransportFailure] = field(default_factory=list)

    def final_answers(self, step_name: str = "emotion") -> list[Answer]:
        """Per sample, the row the marts use: highest step, then highest attempt."""
        best: dict[int, Answer] = {}
        for a in self.answers:
            if a.step_name != step_name:
                continue
            cur = best.get(a.sample_index)
            if cur is None or (a.step, a.attempt) > (cur.step, cur.attempt):
                best[a.sample_index] = a
        return [best[i] for i in sorted(best)]

    def vote(self, step_name: str = "emotion") -> Vote:
        finals = self.final_answers(step_name)
        valid = [a.predicted_label for a in finals
                 if a.parse_status in VALID_STATUSES and a.predicted_label is not None]
        counts = Counter(valid)
        if not counts:
            return Vote(None, 0, False, len(finals), 0, {})
        top = max(counts.values())
        leaders = sorted(lbl for lbl, n in counts.items() if n == top)
        return Vote(leaders[0], top, len(leaders) > 1, len(finals), len(valid), dict(counts))


class _Run:
    """State of one protocol run on one image."""

    def __init__(self, backend: ChatBackend, protocol: ProtocolConfig, template: PromptTemplate,
                 image: ImageRecord, image_bytes: bytes, mime: str,
                 labels: tuple[str, ...] | None) -> None:
        self.backend, self.protocol, self.template = backend, protocol, template
        self.image, self.image_bytes, self.mime = image, image_bytes, mime
        self.labels = labels
        self.result = ProtocolResult()

    def params(self, sample_index: int, attempt: int) -> GenerationParams:
        params = self.protocol.generation_params
        if params.seed is not None:
            params = replace(params, seed=params.seed + sample_index * self.protocol.max_tries
                             + attempt - 1)
        return params

    def base_turns(self) -> tuple[Turn, ...]:
        return (Turn("system", self.template.system),) if self.template.system else ()

    def answer(self, *, step_no: int, step: PromptStep, sample_index: int, attempt: int,
               status: str, label: str | None = None, value: float | None = None,
               raw_value: float | None = None, value_mapping: str | None = None,
               response: ChatResponse | None = None, latency_ms: float | None = None,
               extra: dict[str, Any] | None = None) -> Answer:
        params = self.params(sample_index, attempt)
        meta: dict[str, Any] = {
            # with offered_labels: what dbt int_protocol_settings classifies by (never the stored name)
            "protocol_name": self.protocol.name,
            "template": self.template.id, "template_version": self.template.version,
            "temperature": params.temperature, "max_tokens": params.max_tokens,
            "top_p": params.top_p, "seed": params.seed, "backend": getattr(self.backend, "name", None),
        }
        if step.kind == "label":
            meta["offered_labels"] = list(self.offered(step))
        if response is not None:
            meta["finish_reason"] = response.finish_reason
            if response.service_tier is not None:  # priced per tier in marts.answer_costs
                meta["service_tier"] = response.service_tier
        meta.update(extra or {})
        ans = Answer(
            image_id=self.image.image_id, image_hash=self.image.image_hash,
            parse_status=status, predicted_label=label if status in VALID_STATUSES else None,
            predicted_value=value if status in VALID_STATUSES else None,
            preprocessing=meta, latency_ms=latency_ms, protocol=self.protocol.label,
            step=step_no, step_name=step.name, sample_index=sample_index, attempt=attempt,
            prompt_hash=self.template.hash, raw_text=response.text if response else None,
            input_tokens=response.input_tokens if response else None,
            output_tokens=response.output_tokens if response else None,
            raw_value=raw_value, value_mapping=value_mapping,
        )
        self.result.answers.append(ans)
        return ans

    def offered(self, step: PromptStep) -> tuple[str, ...]:
        """The labels a step accepts: its own, narrowed by `label_set` for an emotion step."""
        if step.kind == "label" and self.labels is not None:
            return tuple(lbl for lbl in step.labels if lbl in self.labels)
        return step.labels

    def parse(self, step: PromptStep, text: str | None) -> tuple[str, Any, dict[str, Any]]:
        """(status, label-or-ParsedValue, extra metadata) for a reply text."""
        if step.kind in ("label", "gate"):
            labels = self.offered(step)
            parsed: ParsedLabel = parse_label(text, labels, words=dict(step.label_words),
                                              synonyms=dict(step.synonyms),
                                              answer_line=step.answer_line)
            extra = {"parse_rule": parsed.how}
            if parsed.word is not None:
                extra["off_label_word"] = parsed.word
            return parsed.status, parsed.label, extra
        if step.kind == "scale":
            lo, hi = step.scale or (1.0, 9.0)
            value: ParsedValue = parse_scale(text, lo, hi)
            return value.status, value, {"parse_rule": value.how}
        # free text: stored as given
        if text is None or not text.strip():
            return "unparseable", None, {"parse_rule": "empty"}
        return "ok", None, {"parse_rule": "free_text"}

    async def ask(self, *, step_no: int, step: PromptStep, sample_index: int,
                  history: tuple[Turn, ...], prompt: str, with_image: bool
                  ) -> tuple[Answer | None, ChatResponse | None, bool]:
        """Ask one step, retrying invalid answers when the protocol does.
        Returns (last answer, its response, transport_failed)."""
        last: tuple[Answer | None, ChatResponse | None] = (None, None)
        for attempt in range(1, self.protocol.tries + 1):
            request = ChatRequest(
                turns=history + (Turn("user", prompt, with_image=with_image),),
                image_bytes=self.image_bytes, image_mime=self.mime,
                params=self.params(sample_index, attempt),
                sample_index=sample_index, attempt=attempt,
            )
            started = time.perf_counter()
            try:
                response = await self.backend.complete(request)
            except TransportError as exc:
                self.result.failures.append(TransportFailure(
                    step=step_no, sample_index=sample_index, attempt=attempt, kind=exc.kind,
                    message=exc.message, status=exc.status, step_name=step.name,
                    retry_after=exc.retry_after))
                return last[0], last[1], True
            latency = response.latency_ms
            if latency is None:
                latency = (time.perf_counter() - started) * 1000.0
            if response.refused or response.text is None:
                status, parsed, extra = "refused", None, {"parse_rule": "provider_refusal"}
            else:
                status, parsed, extra = self.parse(step, response.text)
            kwargs: dict[str, Any] = {}
            if isinstance(parsed, ParsedValue):
                lo, hi = step.scale or (1.0, 9.0)
                mapping = mapping_formula((lo, hi), (lo, hi))
                if parsed.clamped:
                    mapping += f" (clamped from {parsed.raw_value:g})"
                kwargs = {"value": parsed.value, "raw_value": parsed.raw_value,
                          "value_mapping": mapping if parsed.raw_value is not None else None}
            elif isinstance(parsed, str):
                kwargs = {"label": parsed}
            answer = self.answer(step_no=step_no, step=step, sample_index=sample_index,
                                 attempt=attempt, status=status, response=response,
                                 latency_ms=latency, extra=extra, **kwargs)
            last = (answer, response)
            if status in VALID_STATUSES:
                break
        return last[0], last[1], False

    # -- protocols ---------------------------------------------------------------------

    async def one_step(self, sample_index: int) -> None:
        step = self.template.steps[0]
        await self.ask(step_no=1, step=step, sample_index=sample_index,
                       history=self.base_turns(), prompt=step.render(), with_image=True)

    async def context_carry(self, sample_index: int) -> None:
        history = self.base_turns()
        carried: dict[str, Any] = {}
        for step_no, step in enumerate(self.template.steps, start=1):
            prompt = step.render(**carried)
            with_image = step_no == 1 or self.protocol.image_on_every_step
            answer, response, failed = await self.ask(
                step_no=step_no, step=step, sample_index=sample_index, history=history,
                prompt=prompt, with_image=with_image)
            if failed or answer is None or answer.parse_status not in VALID_STATUSES:
                return
            history = history + (Turn("user", prompt, with_image=with_image),
                                 Turn("assistant", response.text or ""))
            if step.kind == "label":
                carried["emotion"] = step.word(answer.predicted_label)
            elif "valence" not in carried:
                carried["valence"] = answer.predicted_value

    async def two_stage(self, sample_index: int) -> None:
        gate, emotion = self.template.steps
        answer, _, failed = await self.ask(step_no=1, step=gate, sample_index=sample_index,
                                           history=self.base_turns(), prompt=gate.render(),
                                           with_image=True)
        if failed or answer is None:
            return
        derived = {"derived_from": gate.name, "gate_attempt": answer.attempt}
        if answer.parse_status not in VALID_STATUSES:
            self.answer(step_no=2, step=emotion, sample_index=sample_index, attempt=1,
                        status=answer.parse_status, extra=derived)
        elif answer.predicted_label == "neutral":
            self.answer(step_no=2, step=emotion, sample_index=sample_index, attempt=1,
                        status=answer.parse_status, label="neutral", extra=derived)
        else:
            await self.ask(step_no=2, step=emotion, sample_index=sample_index,
                           history=self.base_turns(), prompt=emotion.render(), with_image=True)


def check_template(protocol: ProtocolConfig, template: PromptTemplate) -> None:
    shape = tuple(s.kind for s in template.steps)
    if shape != _SHAPES[protocol.name]:
        raise ValueError(f"protocol {protocol.name!r} needs a template with steps of kinds "
                         f"{list(_SHAPES[protocol.name])}; template {template.id!r} has {list(shape)}")
    if protocol.name == "n_class_without_neutral" and "neutral" in template.steps[0].labels:
        raise ValueError(f"protocol 'n_class_without_neutral' needs a template without 'neutral'; "
                         f"template {template.id!r} offers it")
    if protocol.name == "context_carry":
        if template.steps[0].placeholders or template.steps[1].placeholders not in ((), ("emotion",)):
            raise ValueError(f"template {template.id!r}: step 1 takes no placeholders and step 2 "
                             f"at most {{emotion}}")


async def run_protocol(
    backend: ChatBackend,
    protocol: ProtocolConfig,
    image: ImageRecord,
    image_bytes: bytes,
    mime: str,
    label_set: Sequence[str] | str | None = None,
    *,
    template: PromptTemplate | None = None,
) -> ProtocolResult:
    """Run `protocol` for one image. `label_set`: None or 'canonical' = the template's labels;
    a sequence of canonical labels narrows what an emotion step accepts. `template` overrides
    loading `protocol.template` from `inference/vlm/prompts/` (its id must match)."""
    if template is None:
        template = load_template(protocol.template)
    elif template.id != protocol.template:
        raise ValueError(f"template {template.id!r} given for protocol template {protocol.template!r}")
    check_template(protocol, template)
    labels: tuple[str, ...] | None
    if label_set is None or label_set == LABEL_SET:
        labels = None
    elif isinstance(label_set, str):
        raise ValueError(f"label_set {label_set!r}: give {LABEL_SET!r}, None or a list of "
                         f"canonical labels")
    else:
        labels = tuple(label_set)
        offered = {lbl for s in template.steps if s.kind == "label" for lbl in s.labels}
        unknown = sorted(set(labels) - offered)
        if unknown:
            raise ValueError(f"label_set has {unknown}, which template {template.id!r} does not "
                             f"offer ({sorted(offered)})")
    if mime not in IMAGE_MIMES and mime not in VIDEO_MIMES.values():
        raise ValueError(f"image mime must be image/jpeg or image/png (or a video type of "
                         f"inference.vlm.types.VIDEO_MIMES); got {mime!r}")
    run = _Run(backend, protocol, template, image, image_bytes, mime, labels)
    for sample_index in range(protocol.k):
        if protocol.name == "context_carry":
            await run.context_carry(sample_index)
        elif protocol.name == "two_stage":
            await run.two_stage(sample_index)
        else:
            await run.one_step(sample_index)
    return run.result
