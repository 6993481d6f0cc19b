"""A loopback, scripted Gemini REST server (`generativelanguage` v1beta) for tests.

Speaks `POST /v1beta/models/{model}:generateContent` and `GET /v1beta/models`; scripting,
recording and latency work as in `tests/support/openai_server.py` (same actions, plus
`prompt_blocked` -> promptFeedback.blockReason and `finish_safety` -> finishReason SAFETY).

    with GeminiServer() as server:
        server.enqueue(prompt_blocked(), answer("happy"))
        client = genai.Client(api_key=..., http_options=types.HttpOptions(base_url=server.url))
        ...
        assert server.requests[-1].headers["x-goog-api-key"] == ...
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

from .openai_server import (  # noqa: F401  (re-exported for tests)
    Action,
    Provider,
    RecordedRequest,
    ScriptedServer,
    answer,
    client_error,
    finish_safety,
    hang,
    malformed,
    prompt_blocked,
    rate_limited,
    raw,
    server_error,
)

_GENERATE = re.compile(r"^/(v1beta|v1|v1alpha)/models/([^/:]+):generateContent$")
_STATUS_NAMES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
                 404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE",
                 504: "DEADLINE_EXCEEDED"}


class GeminiServer(ScriptedServer):
    """Use `url` as the client's base_url (the client adds /v1beta/...)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("models", ("gemini-test",))
        super().__init__(**kwargs)

    @property
    def base_url(self) -> str:
        return self.url

    def _route(self, method: str, path: str) -> str | None:
        if method == "POST" and _GENERATE.match(path):
            return "generate"
        if method == "GET" and path.rstrip("/") in ("/v1beta/models", "/v1/models"):
            return "models"
        return None

    def _models_body(self) -> bytes:
        return json.dumps({"models": [
            {"name": f"models/{m}", "displayName": m, "supportedGenerationMethods": ["generateContent"]}
            for m in self.models
        ]}).encode()

    def _extract(self, recorded: RecordedRequest) -> None:
        body = recorded.body or {}
        texts: list[str] = []
        system = body.get("systemInstruction") or body.get("system_instruction")
        contents = list(body.get("contents", []))
        if system:
            contents.insert(0, system)
        for content in contents:
            for part in content.get("parts", []):
                if "text" in part:
                    texts.append(part["text"])
                inline = part.get("inlineData") or part.get("inline_data")
                if inline:
                    recorded.image_mimes.append(inline.get("mimeType") or inline.get("mime_type"))
                    # the SDK sends URL-safe base64; the API accepts both alphabets
                    data = inline["data"].replace("-", "+").replace("_", "/")
                    recorded.images.append(base64.b64decode(data, validate=True))
        recorded.prompt = "\n".join(texts)

    def _error(self, status: int, message: str, details: list[dict] | None = None) -> bytes:
        error: dict[str, Any] = {"code": status, "message": message,
                                 "status": _STATUS_NAMES.get(status, "UNKNOWN")}
        if details:
            error["details"] = details
        return json.dumps({"error": error}).encode()

    def _generation(self, recorded: RecordedRequest, action: Action) -> tuple[int, dict[str, str], bytes]:
        json_headers = {"Content-Type": "application/json; charset=UTF-8"}
        match = _GENERATE.match(recorded.path.split("?")[0])
        model = match.group(2) if match else "gemini-test"
        prompt_tokens = max(1, len(recorded.prompt) // 4) + 258 * len(recorded.images)
        usage = {"promptTokenCount": prompt_tokens, "totalTokenCount": prompt_tokens}
        if action.kind == "rate_limited":
            headers = dict(json_headers)
            if action.retry_after is not None:
                headers["Retry-After"] = action.retry_after
            if action.retry_after_ms is not None:
                headers["retry-after-ms"] = action.retry_after_ms
            details = None
            if action.retry_delay is not None:
                details = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": action.retry_delay}]
            return 429, headers, self._error(429, "Resource has been exhausted (e.g. check quota).", details)
        if action.kind == "error":
            return action.status, json_headers, self._error(action.status, action.message)
        if action.kind == "prompt_blocked":
            payload = {"promptFeedback": {"blockReason": action.text, "safetyRatings": [
                {"category": "HARM_CATEGORY_HARASSMENT", "probability": "HIGH", "blocked": True}]},
                "usageMetadata": usage, "modelVersion": model}
            return 200, json_headers, json.dumps(payload).encode()
        if action.kind == "finish_safety":
            payload = {"candidates": [{"finishReason": action.text, "index": 0, "safetyRatings": [
                {"category": "HARM_CATEGORY_HARASSMENT", "probability": "HIGH", "blocked": True}]}],
                "usageMetadata": usage, "modelVersion": model}
            return 200, json_headers, json.dumps(payload).encode()
        if action.kind != "answer":
            raise ValueError(f"GeminiServer cannot perform action {action.kind!r}")
        out_tokens = max(1, len(action.text or "") // 4)
        payload = {
            "candidates": [{"content": {"parts": [{"text": action.text}], "role": "model"},
                            "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": prompt_tokens, "candidatesTokenCount": out_tokens,
                              "totalTokenCount": prompt_tokens + out_tokens},
            "modelVersion": model, "responseId": f"resp-{len(self.requests)}",
        }
        return 200, json_headers, json.dumps(payload).encode()
