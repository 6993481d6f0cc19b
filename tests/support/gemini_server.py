"""A loopback, scripted Gemini REST server (`generativelanguage` v1beta) for tests.

Speaks `POST /v1beta/models/{model}:generateContent` and `GET /v1beta/models`; scripting,
recording and latency work as in `tests/support/openai_server.py` (same actions, plus
`prompt_blocked` -> promptFeedback.blockReason and `finish_safety` -> finishReason SAFETY).
Each generation request's parts are recorded in order (`RecordedRequest.parts`: text, inline
data with its mime type and size, file references).

The Files API as google-genai's `files.upload` / `files.get` call it: a resumable upload
(`POST /upload/v1beta/files` with `X-Goog-Upload-Command: start` answers `X-Goog-Upload-URL`;
chunks POSTed there with `upload` / `upload, finalize` and `X-Goog-Upload-Offset`; the last
answers `X-Goog-Upload-Status: final` and the File), then `GET /v1beta/files/{id}`. As the
provider does with video, a new file is PROCESSING for its first `processing_polls` gets, then
ACTIVE; a generation request naming a file that is not ACTIVE gets 400 FAILED_PRECONDITION, an
unknown one 403 PERMISSION_DENIED. `files` holds every upload (name -> `StoredFile`).

    with GeminiServer() as server:
        server.enqueue(prompt_blocked(), answer("happy"))
        client = genai.Client(api_key=..., http_options=types.HttpOptions(base_url=server.url))
        ...
        assert server.requests[-1].headers["x-goog-api-key"] == ...
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import re
import urllib.parse
from dataclasses import dataclass, field
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
_FILE = re.compile(r"^/(v1beta|v1|v1alpha)/files/([^/:]+)$")
_UPLOAD = re.compile(r"^/upload/(v1beta|v1|v1alpha)/files$")
_STATUS_NAMES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
                 404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE",
                 504: "DEADLINE_EXCEEDED"}


@dataclass
class StoredFile:
    """One Files API upload: what was declared at the start, what arrived, and its state."""

    name: str  # files/<id>
    mime_type: str
    declared_size: int
    display_name: str | None
    data: bytearray = field(default_factory=bytearray)
    finalized: bool = False
    polls: int = 0  # files.get calls so far

    def resource(self, base_url: str, processing_polls: int) -> dict[str, Any]:
        state = "ACTIVE" if self.finalized and self.polls >= processing_polls else "PROCESSING"
        body: dict[str, Any] = {
            "name": self.name, "mimeType": self.mime_type, "sizeBytes": str(len(self.data)),
            "createTime": "2026-01-01T00:00:00.000000Z", "updateTime": "2026-01-01T00:00:00.000000Z",
            "expirationTime": "2026-01-03T00:00:00.000000Z",
            "sha256Hash": base64.b64encode(hashlib.sha256(self.data).hexdigest().encode()).decode(),
            "uri": f"{base_url}/v1beta/{self.name}", "state": state, "source": "UPLOADED",
        }
        if self.display_name:
            body["displayName"] = self.display_name
        return body


class GeminiServer(ScriptedServer):
    """Use `url` as the client's base_url (the client adds /v1beta/...)."""

    def __init__(self, *, processing_polls: int = 1, **kwargs: Any) -> None:
        kwargs.setdefault("models", ("gemini-test",))
        super().__init__(**kwargs)
        self.processing_polls = processing_polls
        self.files: dict[str, StoredFile] = {}
        self._uploads: dict[str, StoredFile] = {}  # upload_id -> file being uploaded
        self._ids = itertools.count(1)

    @property
    def base_url(self) -> str:
        return self.url

    def _route(self, method: str, path: str) -> str | None:
        if method == "POST" and _GENERATE.match(path):
            return "generate"
        if method == "GET" and path.rstrip("/") in ("/v1beta/models", "/v1/models"):
            return "models"
        if (method == "POST" and _UPLOAD.match(path)) or (method == "GET" and _FILE.match(path)):
            return "files"
        return None

    # -- Files API
    def _serve(self, route: str, recorded: RecordedRequest) -> tuple[int, dict[str, str], bytes] | None:
        json_headers = {"Content-Type": "application/json; charset=UTF-8"}
        split = urllib.parse.urlsplit(recorded.path)
        with self._lock:
            if recorded.method == "GET":
                file = self.files.get(f"files/{_FILE.match(split.path).group(2)}")
                if file is None:
                    return 403, json_headers, self._error(403, "You do not have permission to access the File "
                                                              "or it may not exist.")
                file.polls += 1
                return 200, json_headers, json.dumps(file.resource(self.url, self.processing_polls)).encode()
            command = recorded.headers.get("x-goog-upload-command", "")
            if command == "start":
                return self._start_upload(recorded)
            upload_id = urllib.parse.parse_qs(split.query).get("upload_id", [""])[0]
            return self._upload_chunk(recorded, command, upload_id)

    def _start_upload(self, recorded: RecordedRequest) -> tuple[int, dict[str, str], bytes]:
        declared = (recorded.body or {}).get("file") or {}
        upload_id = f"upload-{next(self._ids)}"
        file = StoredFile(
            name=declared.get("name") or f"files/{upload_id.removeprefix('upload-')}abc",
            mime_type=recorded.headers.get("x-goog-upload-header-content-type") or declared.get("mimeType", ""),
            declared_size=int(recorded.headers.get("x-goog-upload-header-content-length") or 0),
            display_name=declared.get("displayName") or declared.get("display_name"))
        self._uploads[upload_id] = file
        url = f"{self.url}/upload/v1beta/files?upload_id={upload_id}&upload_protocol=resumable"
        return 200, {"X-Goog-Upload-URL": url, "X-Goog-Upload-Status": "active",
                     "Content-Type": "text/plain; charset=utf-8"}, b""

    def _upload_chunk(self, recorded: RecordedRequest, command: str,
                      upload_id: str) -> tuple[int, dict[str, str], bytes]:
        file = self._uploads.get(upload_id)
        offset = int(recorded.headers.get("x-goog-upload-offset") or -1)
        if file is None or offset != len(file.data):
            return 400, {"X-Goog-Upload-Status": "final", "Content-Type": "application/json"}, self._error(
                400, f"upload {upload_id!r}: unknown upload or offset {offset} != {len(file.data) if file else 0}")
        file.data.extend(recorded.raw_body)
        if "finalize" not in command:
            return 200, {"X-Goog-Upload-Status": "active", "Content-Type": "text/plain"}, b""
        del self._uploads[upload_id]
        if len(file.data) != file.declared_size:
            return 400, {"X-Goog-Upload-Status": "final", "Content-Type": "application/json"}, self._error(
                400, f"received {len(file.data)} bytes, declared {file.declared_size}")
        file.finalized = True
        self.files[file.name] = file
        body = {"file": file.resource(self.url, self.processing_polls)}
        return 200, {"X-Goog-Upload-Status": "final", "Content-Type": "application/json"}, json.dumps(body).encode()

    def _file_problem(self, recorded: RecordedRequest) -> tuple[int, str] | None:
        """A referenced file that is unknown or not ACTIVE, as the API answers it."""
        for part in recorded.parts:
            if part["kind"] != "file":
                continue
            name = part["uri"].split("/v1beta/", 1)[-1]
            with self._lock:
                file = self.files.get(name)
                state = file.resource(self.url, self.processing_polls)["state"] if file else None
            if file is None:
                return 403, f"You do not have permission to access the File {name} or it may not exist."
            if state != "ACTIVE":
                return 400, f"The File {name} is not in an ACTIVE state and usage is not allowed."
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
                    recorded.parts.append({"kind": "text", "text": part["text"]})
                inline = part.get("inlineData") or part.get("inline_data")
                if inline:
                    mime = inline.get("mimeType") or inline.get("mime_type")
                    recorded.image_mimes.append(mime)
                    # the SDK sends URL-safe base64; the API accepts both alphabets
                    data = inline["data"].replace("-", "+").replace("_", "/")
                    recorded.images.append(base64.b64decode(data, validate=True))
                    recorded.parts.append({"kind": "inline", "mime": mime, "size": len(recorded.images[-1])})
                file_data = part.get("fileData") or part.get("file_data")
                if file_data:
                    recorded.parts.append({"kind": "file", "uri": file_data.get("fileUri") or file_data.get("file_uri"),
                                           "mime": file_data.get("mimeType") or file_data.get("mime_type")})
        recorded.prompt = "\n".join(texts)

    def _error(self, status: int, message: str, details: list[dict] | None = None) -> bytes:
        error: dict[str, Any] = {"code": status, "message": message,
                                 "status": _STATUS_NAMES.get(status, "UNKNOWN")}
        if details:
            error["details"] = details
        return json.dumps({"error": error}).encode()

    def _generation(self, recorded: RecordedRequest, action: Action) -> tuple[int, dict[str, str], bytes]:
        json_headers = {"Content-Type": "application/json; charset=UTF-8"}
        problem = self._file_problem(recorded)
        if problem is not None:
            status, message = problem
            name = "FAILED_PRECONDITION" if status == 400 else _STATUS_NAMES[status]
            return status, json_headers, json.dumps({"error": {"code": status, "message": message,
                                                              "status": name}}).encode()
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
