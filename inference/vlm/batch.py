"""The OpenAI Batch API through the official `openai` client: JSONL request files through the
Files API, `/v1/batches` to create, poll and find batches, output and error files read back.

    client = OpenAIBatchClient(OpenAIChatBackend("gpt-4o", base_url=...))
    batch = client.submit({custom_id: request, ...}, ledger_id="ledger-...")   # metadata names the ledger row
    status = client.status(batch.id)          # validating / in_progress / finalizing / completed / expired / ...
    results = client.results(status)          # answers and per-request errors by custom_id

Each request line is the body the chat backend would POST (`OpenAIChatBackend.build_messages` /
`build_params`), so a batch asks exactly what a standard run asks. Answers map like the chat
backend's (`_to_response`, tier 'batch'); a per-request error line maps like an HTTP error
(`_status_error`); requests a batch never ran (expired, cancelled) are neither: they are simply
unanswered, and the caller sends them again.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Protocol

from inference.vlm.http_common import read_api_key, scrub
from inference.vlm.types import ChatRequest, ChatResponse, TransportError

# OpenAI's limits per batch: 50,000 requests, a 200 MB input file (kept below it).
MAX_REQUESTS_PER_BATCH = 50_000
MAX_FILE_BYTES = 190 * 1024 * 1024
COMPLETION_WINDOW = "24h"
LEDGER_METADATA_KEY = "fer_ledger_id"
# error codes of requests a batch never ran: unanswered, not failed
_NOT_RUN_CODES = frozenset({"batch_expired", "batch_cancelled"})


@dataclass(frozen=True)
class BatchStatus:
    batch_id: str
    state: str
    input_file_id: str | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    reason: str | None = None  # why a failed batch failed (its validation errors), as the provider says
    job: Any = field(default=None, compare=False, repr=False)  # the provider's object (Gemini: its answers)


@dataclass
class BatchResults:
    answers: dict[str, ChatResponse] = field(default_factory=dict)
    errors: dict[str, TransportError] = field(default_factory=dict)


class BatchClient(Protocol):
    """What a round needs of a provider's batch API (OpenAIBatchClient, GeminiBatchClient)."""

    def chunks(self, requests: dict[str, ChatRequest]) -> list[dict[str, ChatRequest]]: ...

    def submit(self, requests: dict[str, ChatRequest], ledger_id: str) -> BatchStatus: ...

    def find(self, ledger_id: str) -> BatchStatus | None: ...

    def status(self, batch_id: str) -> BatchStatus: ...

    def results(self, status: BatchStatus) -> BatchResults: ...

    def close(self) -> None: ...


class OpenAIBatchClient:
    """Batches of the chat requests of `chat` (an `OpenAIChatBackend`: model, endpoint, key
    variable, request building and answer mapping)."""

    def __init__(self, chat: Any, *, poll_timeout_s: float = 60.0) -> None:
        self.chat = chat
        self.timeout_s = poll_timeout_s
        self._client: Any = None

    def client(self) -> Any:
        if self._client is None:
            import openai

            key = read_api_key(self.chat.api_key_env, backend=self.chat.name) or "no-key"
            self._client = openai.OpenAI(api_key=key, base_url=self.chat.base_url, max_retries=3,
                                         timeout=self.timeout_s)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    # ------------------------------------------------------------------ submit
    def request_line(self, custom_id: str, request: ChatRequest) -> bytes:
        body = {"model": self.chat.model, "messages": self.chat.build_messages(request),
                **self.chat.build_params(request), **self.chat.extra_body}
        body.pop("service_tier", None)  # a batch is its own tier
        return json.dumps({"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions",
                           "body": body}, separators=(",", ":")).encode() + b"\n"

    def chunks(self, requests: dict[str, ChatRequest]) -> list[dict[str, ChatRequest]]:
        """`requests` split within the provider's limits per batch."""
        return chunks(requests, lambda k, r: len(self.request_line(k, r)), MAX_REQUESTS_PER_BATCH, MAX_FILE_BYTES)

    def submit(self, requests: dict[str, ChatRequest], ledger_id: str) -> BatchStatus:
        """Upload one JSONL file and create its batch; the batch's metadata names `ledger_id`."""
        data = b"".join(self.request_line(key, request) for key, request in requests.items())
        uploaded = self.client().files.create(file=(f"{ledger_id}.jsonl", data), purpose="batch")
        batch = self.client().batches.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions",
            completion_window=COMPLETION_WINDOW, metadata={LEDGER_METADATA_KEY: ledger_id})
        return _status(batch)

    def find(self, ledger_id: str) -> BatchStatus | None:
        """The batch created for `ledger_id`, if any (a process killed after creating it but
        before recording its id): the provider's batch list, newest first."""
        for batch in self.client().batches.list(limit=100):
            if (batch.metadata or {}).get(LEDGER_METADATA_KEY) == ledger_id:
                return _status(batch)
        return None

    # ------------------------------------------------------------------ poll and read
    def status(self, batch_id: str) -> BatchStatus:
        return _status(self.client().batches.retrieve(batch_id))

    def results(self, status: BatchStatus) -> BatchResults:
        """The answers (tier 'batch') and per-request errors of a finished batch."""
        results = BatchResults()
        for file_id in (status.output_file_id, status.error_file_id):
            if not file_id:
                continue
            content = self.client().files.content(file_id).content
            for number, line in enumerate(content.splitlines(), start=1):
                if line.strip():
                    self._read_line(line, results, f"{file_id} line {number}")
        return results

    def _read_line(self, line: bytes, results: BatchResults, where: str) -> None:
        try:
            item = json.loads(line)
            custom_id = item["custom_id"]
        except (ValueError, KeyError, TypeError):
            raise TransportError("bad_response", f"{self.chat.name}: batch result {where} is not a "
                                 f"result line with a custom_id") from None
        response, error = item.get("response") or {}, item.get("error")
        code = int(response.get("status_code") or 0)
        if 200 <= code < 300:
            try:
                answer = self.chat._to_response(response.get("body"), None)
            except TransportError as exc:
                results.errors[custom_id] = exc
                return
            results.answers[custom_id] = dataclasses.replace(answer, service_tier="batch")
        elif code:
            results.errors[custom_id] = self.chat._status_error(code, response.get("body"), {}, f"HTTP {code}")
        elif isinstance(error, dict) and error.get("code") not in _NOT_RUN_CODES:
            detail = scrub(str(error.get("message") or error), self.chat._secret())
            results.errors[custom_id] = TransportError("server_error", f"{self.chat.name}: batch request failed: {detail}")


def _status(batch: Any) -> BatchStatus:
    counts = batch.request_counts
    errors = [e.message or e.code for e in (getattr(batch.errors, "data", None) or [])] if batch.errors else []
    return BatchStatus(
        batch_id=batch.id, state=batch.status, input_file_id=batch.input_file_id,
        output_file_id=batch.output_file_id, error_file_id=batch.error_file_id,
        counts={"total": counts.total, "completed": counts.completed, "failed": counts.failed} if counts else {},
        reason="; ".join(str(e) for e in errors) or None)


def chunks(requests: dict[str, ChatRequest], line_size: Any, max_requests: int,
           max_bytes: int) -> list[dict[str, ChatRequest]]:
    """`requests` split into batches of at most `max_requests` and `max_bytes` (by `line_size`)."""
    out: list[dict[str, ChatRequest]] = [{}]
    size = 0
    for key, request in requests.items():
        n = line_size(key, request)
        if out[-1] and (len(out[-1]) >= max_requests or size + n > max_bytes):
            out.append({})
            size = 0
        out[-1][key] = request
        size += n
    return [chunk for chunk in out if chunk]


def batch_client(kind: str, chat: Any) -> Any:
    """The batch client of a kind's chat backend (`TieredBackend` unwrapped)."""
    chat = getattr(chat, "inner", chat)
    if kind == "gemini":
        from inference.vlm.gemini_batch import GeminiBatchClient

        return GeminiBatchClient(chat)
    return OpenAIBatchClient(chat)


__all__ = ["BatchClient", "BatchResults", "BatchStatus", "OpenAIBatchClient", "batch_client", "chunks"]
