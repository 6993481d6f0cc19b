"""Batch delivery of a VLM model (`options.delivery: batch`): one round per evaluation.

An evaluation of a slice in batch delivery never waits for the provider. Each round:
1. **sync**: every open batch of the slice's ledger (raw.api_batches, `inference.batch_ledger`)
   is polled; a finished one (completed, expired, failed, cancelled) has its answers put in the
   response cache and its per-request errors recorded; a row whose batch id was never recorded
   (the process died while submitting) is matched to the provider's batch by its metadata, or
   marked never_sent;
2. **replay**: the prompt protocol runs for every image against `_Round`: an answer in the cache
   is returned; the first request of a sample without one is collected (unless an open batch
   already holds it) and answered by a placeholder refusal, as is everything after it in that
   sample (a later step or retry depends on the real answer: it goes in a later round);
3. **submit**: the collected requests -- only those that no batch answered or holds -- are
   recorded in the ledger (state 'submitting'), then uploaded and their batch created.
If any image still has a placeholder, the round raises `BatchPending` (the slice is not
evaluated yet; a sensor polls and runs the next round). Otherwise every answer came from the
cache and the rows are those of a standard run with the same answers.

A request a batch failed with a retryable error (429, 5xx, a malformed answer) is sent again
in a later batch up to `max_retries` times; a non-retryable one (4xx, a content filter) is a
transport failure, as in a standard run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from inference.batch_ledger import BatchLedger, BatchRecord
from inference.vlm.batch import BatchClient, BatchResults, batch_client
from inference.vlm.cache import ResponseCache
from inference.vlm.http_common import scrub
from inference.vlm.types import ChatRequest, ChatResponse, TransportError

log = logging.getLogger(__name__)
# What a protocol sees for a request whose answer is not there yet: no text, so no label, no
# retry of a valid answer, no next step built on it. Never stored (rounds with one raise).
_PLACEHOLDER = ChatResponse(text=None, refused=True, finish_reason="batch_pending")


class BatchPending(RuntimeError):
    """The slice waits for batches: not evaluated until every image has its answers."""

    def __init__(self, message: str, *, open_batches: list[str], submitted: list[str],
                 n_waiting: int, n_images_waiting: int) -> None:
        super().__init__(message)
        self.open_batches = open_batches
        self.submitted = submitted
        self.n_waiting = n_waiting
        self.n_images_waiting = n_images_waiting


@dataclass
class _Round:
    """What one replay of the protocols found: answers from the cache, requests to send."""

    cache: ResponseCache
    key: Callable[[ChatRequest], str]
    waiting: set[str]  # keys held by open batches
    errors: dict[str, TransportError]  # keys failed for good
    name: str
    collected: dict[str, ChatRequest] = field(default_factory=dict)
    images_waiting: set[str] = field(default_factory=set)

    def for_image(self, image_id: str) -> _ImageRound:
        return _ImageRound(self, image_id)


class _ImageRound:
    """The ChatBackend a protocol sees for one image during a round."""

    def __init__(self, shared: _Round, image_id: str) -> None:
        self.shared = shared
        self.image_id = image_id
        self.name = shared.name
        self.pending_samples: set[int] = set()

    async def complete(self, request: ChatRequest) -> ChatResponse:
        shared = self.shared
        key = shared.key(request)
        cached = shared.cache.get(key)
        if cached is not None:
            return cached
        sample = request.sample_index or 0
        if sample in self.pending_samples:  # built on a placeholder: asked in a later round
            return _PLACEHOLDER
        error = shared.errors.get(key)
        if error is not None:
            raise error
        self.pending_samples.add(sample)
        shared.images_waiting.add(self.image_id)
        if key not in shared.waiting:
            shared.collected[key] = request
        return _PLACEHOLDER


def sync_batches(ledger: BatchLedger, client: BatchClient, cache: ResponseCache,
                 secret: str | None = None) -> list[BatchRecord]:
    """Poll every open batch of the ledger and ingest the finished ones; returns the records.
    `secret`: the API key, scrubbed from the provider's words stored in the ledger."""
    records = ledger.records()
    for record in records:
        if not record.open:
            if _answers_missing(record, cache):  # another machine's cache holds them: read again
                _ingest(record, client.results(client.status(record.batch_id)), cache)
            continue
        if record.batch_id is None:
            found = client.find(record.ledger_id)
            if found is None:
                record.state = "never_sent"
                ledger.save(record)
                continue
            record.batch_id, record.input_file_id = found.batch_id, found.input_file_id
        status = client.status(record.batch_id)
        record.state = status.state
        if status.state in ("completed", "expired", "failed", "cancelled"):
            _ingest(record, client.results(status), cache)
            if status.state == "failed":  # the provider rejected the batch itself: the same file would fail again
                reason = scrub(status.reason or "no reason given", secret)
                _fail_unanswered(record, cache, f"batch {record.batch_id} failed: {reason}")
            log.info("batch %s (%s): %s, %d answers, %d request errors", record.batch_id,
                     record.ledger_id, record.state, record.n_answered, len(record.request_errors))
        ledger.save(record)
    return records


def _answers_missing(record: BatchRecord, cache: ResponseCache) -> bool:
    if not record.ingested or not record.n_answered or record.batch_id is None:
        return False
    return sum(key in cache for key in record.custom_ids) < record.n_answered


def _ingest(record: BatchRecord, results: BatchResults, cache: ResponseCache) -> None:
    held = set(record.custom_ids)
    answers = {key: response for key, response in results.answers.items() if key in held}
    for key, response in answers.items():
        cache.put(key, response)
    cache.flush()
    record.request_errors = {
        key: {"kind": error.kind, "status": error.status, "message": error.message}
        for key, error in results.errors.items() if key in held}
    record.n_answered = len(answers)
    record.input_tokens = sum(r.input_tokens or 0 for r in answers.values())
    record.output_tokens = sum(r.output_tokens or 0 for r in answers.values())
    record.ingested = True


def _fail_unanswered(record: BatchRecord, cache: ResponseCache, message: str) -> None:
    for key in record.custom_ids:
        if key not in record.request_errors and key not in cache:
            record.request_errors[key] = {"kind": "client_error", "status": None, "message": message}


def failed_for_good(records: list[BatchRecord], max_retries: int) -> dict[str, TransportError]:
    """Requests whose last batch error is not retryable, or that failed more than `max_retries`
    + 1 times: transport failures. The others are sent again."""
    tries: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        for key, error in record.request_errors.items():
            tries.setdefault(key, []).append(error)
    failed = {}
    for key, errors in tries.items():
        last = errors[-1]
        error = TransportError(last["kind"], last["message"], status=last.get("status"))
        if not error.retryable or len(errors) > max_retries:
            error.attempts = len(errors)  # type: ignore[attr-defined]
            failed[key] = error
    return failed


def submit_round(ledger: BatchLedger, client: BatchClient, collected: dict[str, ChatRequest],
                 provider: str) -> list[BatchRecord]:
    """Record, then send, the collected requests (one batch per provider limit's worth). What
    another process's round recorded meanwhile (the sensor's run and one launched by hand) is
    not sent again: the ledger is read once more just before."""
    held = {key for record in ledger.records() if record.open for key in record.custom_ids}
    collected = {key: request for key, request in collected.items() if key not in held}
    submitted = []
    for chunk in (client.chunks(collected) if collected else []):
        record = BatchRecord(**_slice(ledger), provider=provider, custom_ids=list(chunk))
        ledger.save(record)  # before anything is sent: a restart finds it
        status = client.submit(chunk, record.ledger_id)
        record.batch_id, record.input_file_id, record.state = status.batch_id, status.input_file_id, status.state
        ledger.save(record)
        submitted.append(record)
    return submitted


def run_round(adapter: Any, backend: Any, images: list[Any], ledger: BatchLedger
              ) -> tuple[list[Any], list[BatchRecord]]:
    """One round for `adapter` (a VLMAdapter) on `images`: (each image's ProtocolResult, the
    ledger's ingested records); raises BatchPending while answers are missing."""
    from inference.models.vlm import _run_sync, image_payload
    from inference.vlm.engine import run_all
    from inference.vlm.prompts import LABEL_SET
    from inference.vlm.protocols import run_protocol

    client = batch_client(adapter.kind, backend)
    cache = ResponseCache(adapter.cache_path)
    try:
        records = sync_batches(ledger, client, cache, adapter._secret())
        round_ = _Round(cache, adapter.request_key,
                        waiting={key for r in records if r.open for key in r.custom_ids},
                        errors=failed_for_good(records, adapter.options.max_retries),
                        name=getattr(backend, "name", "vlm"))

        async def replay() -> list[Any]:
            async def one(image: Any) -> Any:
                data, mime = image_payload(image)
                return await run_protocol(round_.for_image(image.image_id), adapter.protocol, image, data,
                                          mime, LABEL_SET, template=adapter.template)
            return await run_all([one(image) for image in images])

        results = _run_sync(replay())
        spent = billed_usd(records, adapter.options.price_per_million_tokens)
        budget = adapter.options.budget_usd
        if round_.collected and budget is not None and spent >= budget:
            # stop submitting: what is not yet sent is stored unanswered (kind 'budget')
            log.warning("%s: billed $%.4f reached budget_usd %g: %d requests not submitted",
                        adapter.cfg.partition_key, spent, budget, len(round_.collected))
            stopped = TransportError("budget", f"not submitted: the batches' billed cost ${spent:.4f} "
                                     f"reached budget_usd {budget:g}")
            round_ = _Round(cache, adapter.request_key, round_.waiting,
                            {**round_.errors, **{key: stopped for key in round_.collected}}, round_.name)
            results = _run_sync(replay())
        submitted = submit_round(ledger, client, round_.collected, adapter.kind) if round_.collected else []
    finally:
        cache.close()
        client.close()
    if round_.images_waiting:
        open_ids = [r.batch_id or r.ledger_id for r in records if r.open] + [r.batch_id for r in submitted]
        raise BatchPending(
            f"{adapter.cfg.partition_key}: {len(round_.images_waiting)} of {len(images)} images wait for "
            f"batch answers ({len(round_.collected)} requests submitted now in {len(submitted)} batches; "
            f"{len(open_ids)} batches open); the slice is evaluated once they are in",
            open_batches=open_ids, submitted=[r.batch_id for r in submitted],
            n_waiting=len(round_.collected), n_images_waiting=len(round_.images_waiting))
    return results, [r for r in records if r.ingested]


def uses_batches(model: Any) -> bool:
    """Whether a configured model (ModelConfig) may deliver through batches (batch or auto)."""
    from inference.vlm.delivery import BATCH_KINDS

    return model.kind in BATCH_KINDS and (model.options or {}).get("delivery") in ("batch", "auto")


@dataclass(frozen=True)
class FinishedSlice:
    """A slice whose open batches are all finished: its next round ingests them."""

    model_key: str  # model@version, the partition's model dimension
    dataset: str
    run_key: str  # changes with the set of batches and their states: one run per change


def finished_slices(bench: Any) -> list[FinishedSlice]:
    """Poll the provider for every slice's open batches (raw.api_batches); the slices whose open
    batches have all finished (or were never sent) are ready for their next round."""
    from inference.batch_ledger import FINAL_STATES, open_records
    from inference.models.vlm import build_backend
    from inference.models.vlm_options import vlm_options

    by_slice: dict[tuple[str, str, str], list[BatchRecord]] = {}
    for record in open_records(bench.warehouse, bench.raw_slices):
        by_slice.setdefault((record.model, record.model_version, record.dataset), []).append(record)
    ready = []
    for (model, version, dataset), records in sorted(by_slice.items()):
        cfg = bench.model_for_partition(f"{model}@{version}")
        client = batch_client(cfg.kind, build_backend(cfg, vlm_options(cfg)))
        try:
            states = [client.status(r.batch_id).state if r.batch_id else "submitting" for r in records]
        finally:
            client.close()
        if all(state in FINAL_STATES or state == "submitting" for state in states):
            ready.append(FinishedSlice(f"{model}@{version}", dataset, "|".join(
                [f"{model}@{version}", dataset] + [f"{r.batch_id or r.ledger_id}:{s}" for r, s in zip(records, states)])))
    return ready


def billed_usd(records: list[BatchRecord], price: Any) -> float:
    """What the ingested batches' answers cost at the batch price (0 without prices)."""
    if price is None:
        return 0.0
    batch = price.tier("batch")
    return sum((r.input_tokens or 0) * batch.input + (r.output_tokens or 0) * batch.output
               for r in records if r.ingested) / 1e6


def _slice(ledger: BatchLedger) -> dict[str, str]:
    key = ledger.slice_key
    return {"model": key["model"], "model_version": key["model_version"], "dataset": key["dataset"]}


__all__ = ["BatchPending", "FinishedSlice", "finished_slices", "uses_batches", "failed_for_good", "run_round", "submit_round", "sync_batches"]
