"""Gemini batch mode through the official `google-genai` client: inline requests.

    client = GeminiBatchClient(GeminiBackend("gemini-2.0-flash", base_url=...))
    status = client.submit({custom_id: request, ...}, ledger_id)   # display_name names the ledger row
    status = client.status(status.batch_id)                         # JOB_STATE_* mapped to the ledger's states
    results = client.results(status)                                # answers and per-request errors

Each inline request is what the chat backend would send (`GeminiBackend.build_contents` /
`build_config`, the image inline) and carries its custom_id as metadata, which the answer
carries back. Inline requests travel in the creation call itself: a batch is kept under the
API's 20 MB limit for inline requests (several batches per round when needed). A job that
expired or was cancelled leaves its requests unanswered (sent again); a per-request error
(google.rpc.Status) maps like an HTTP error of the chat endpoint.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from inference.vlm.batch import BatchResults, BatchStatus, chunks
from inference.vlm.http_common import read_api_key
from inference.vlm.types import ChatRequest, TransportError

MAX_INLINE_BYTES = 18 * 1024 * 1024  # under the API's 20 MB for a batch of inline requests
MAX_INLINE_REQUESTS = 10_000
KEY_METADATA = "fer_custom_id"
# JOB_STATE_* -> the ledger's (OpenAI's) names, so FINAL_STATES means the same for both
_STATES = {"JOB_STATE_QUEUED": "validating", "JOB_STATE_PENDING": "validating", "JOB_STATE_RUNNING": "in_progress",
           "JOB_STATE_UPDATING": "in_progress", "JOB_STATE_PAUSED": "in_progress",
           "JOB_STATE_CANCELLING": "in_progress", "JOB_STATE_SUCCEEDED": "completed",
           "JOB_STATE_PARTIALLY_SUCCEEDED": "completed", "JOB_STATE_FAILED": "failed",
           "JOB_STATE_CANCELLED": "cancelled", "JOB_STATE_EXPIRED": "expired"}
# google.rpc.Code -> the HTTP status the chat endpoint would have answered
_RPC_TO_HTTP = {3: 400, 4: 504, 5: 404, 7: 403, 8: 429, 9: 400, 13: 500, 14: 503, 16: 401}


class GeminiBatchClient:
    """Batches of the chat requests of `chat` (a `GeminiBackend`)."""

    def __init__(self, chat: Any, *, timeout_s: float = 120.0) -> None:
        self.chat = chat
        self.timeout_s = timeout_s
        self._client: Any = None

    def client(self) -> Any:
        if self._client is None:
            from google import genai
            from google.genai import types

            options: dict[str, Any] = {"timeout": int(self.timeout_s * 1000),
                                       "retry_options": types.HttpRetryOptions(attempts=3)}
            if self.chat.base_url is not None:
                options["base_url"] = self.chat.base_url
            if self.chat.api_version is not None:
                options["api_version"] = self.chat.api_version
            self._client = genai.Client(api_key=read_api_key(self.chat.api_key_env, backend=self.chat.name),
                                        vertexai=False, http_options=types.HttpOptions(**options))
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    # ------------------------------------------------------------------ submit
    def inline_request(self, custom_id: str, request: ChatRequest) -> Any:
        from google.genai import types

        contents, system = self.chat.build_contents(request)
        return types.InlinedRequest(contents=contents, config=self.chat.build_config(request, system),
                                    metadata={KEY_METADATA: custom_id})

    def chunks(self, requests: dict[str, ChatRequest]) -> list[dict[str, ChatRequest]]:
        def size(_key: str, request: ChatRequest) -> int:  # base64 of the image, the text, some JSON
            return 4 * -(-len(request.image_bytes) // 3) + sum(len(t.text) for t in request.turns) + 512
        return chunks(requests, size, MAX_INLINE_REQUESTS, MAX_INLINE_BYTES)

    def submit(self, requests: dict[str, ChatRequest], ledger_id: str) -> BatchStatus:
        job = self.client().batches.create(
            model=self.chat.model, src=[self.inline_request(key, r) for key, r in requests.items()],
            config={"display_name": ledger_id})
        return self._status(job)

    def find(self, ledger_id: str) -> BatchStatus | None:
        for job in self.client().batches.list(config={"page_size": 100}):
            if job.display_name == ledger_id:
                return self._status(job)
        return None

    # ------------------------------------------------------------------ poll and read
    def status(self, batch_id: str) -> BatchStatus:
        return self._status(self.client().batches.get(name=batch_id))

    def _status(self, job: Any) -> BatchStatus:
        state = getattr(job.state, "value", job.state)
        error = getattr(job, "error", None)
        return BatchStatus(batch_id=job.name, state=_STATES.get(str(state), str(state).lower()), job=job,
                           reason=getattr(error, "message", None) if error is not None else None)

    def results(self, status: BatchStatus) -> BatchResults:
        results = BatchResults()
        dest = getattr(status.job, "dest", None)
        for number, item in enumerate(getattr(dest, "inlined_responses", None) or [], start=1):
            key = (item.metadata or {}).get(KEY_METADATA)
            if key is None:
                raise TransportError("bad_response", f"{self.chat.name}: answer {number} of batch "
                                     f"{status.batch_id} carries no {KEY_METADATA} metadata")
            if item.error is not None:
                code = int(item.error.code or 13)
                results.errors[key] = self._error(_RPC_TO_HTTP.get(code, code if code >= 400 else 500),
                                                  item.error.message or "")
                continue
            try:
                answer = self.chat._to_response(item.response, None)
            except TransportError as exc:
                results.errors[key] = exc
                continue
            results.answers[key] = dataclasses.replace(answer, service_tier="batch")
        return results

    def _error(self, status: int, message: str) -> TransportError:
        from google.genai import errors

        return self.chat._status_error(errors.APIError(status, {"error": {"code": status, "message": message}}))


__all__ = ["GeminiBatchClient"]
