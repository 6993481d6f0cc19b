"""Chat backend for the Gemini API (Google AI Studio `generativelanguage`), via `google-genai`.

    backend = GeminiBackend("gemini-2.0-flash-001")          # key from GEMINI_API_KEY
    response = await backend.complete(request)                # ChatResponse, or TransportError

- Uses the real `google.genai.Client` (`client.aio.models.generate_content`) with
  `HttpOptions(base_url=..., timeout=<ms>, retry_options=HttpRetryOptions(attempts=1))`:
  the SDK's own retries are off; retrying is the engine's job.
- System turns become `system_instruction`, assistant turns role "model"; the image (or clip:
  a video mime type) is a part of the turn marked `with_image`: inline data while the request
  stays under the API's inline request limit (`inline_limit_bytes`, default
  INLINE_REQUEST_LIMIT_BYTES), else a Files API upload (`client.aio.files.upload`, polled with
  `files.get` until ACTIVE) referenced by its URI. Each upload is made once per content hash and
  backend (maj@k samples and retries reuse it).
- The API key comes from the environment variable `api_key_env` only, is read when the client
  is built, is not kept on this object, and is scrubbed from every error message raised here
  (SDK exceptions are not chained: they carry the request).
- Outcome mapping:
    promptFeedback.blockReason set (no candidates)           -> TransportError('safety_block')
    candidate finishReason SAFETY / PROHIBITED_CONTENT / ...  -> TransportError('safety_block')
      (a safety block is not a model answer: it is kept apart from answers and never cached)
    429 (Retry-After header, or RetryInfo.retryDelay)         -> TransportError('rate_limited', retry_after=s)
    408, client-side timeout                                  -> TransportError('timeout')
    5xx, connection failures                                  -> TransportError('server_error')
    body not JSON / no candidates                             -> TransportError('bad_response')
    other 4xx                                                 -> TransportError('client_error')
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time
from typing import Any

from inference.vlm.limiter import provider_key
from inference.vlm.http_common import parse_retry_after, read_api_key, scrub, shared_ssl_context
from inference.vlm.types import ChatRequest, ChatResponse, TransportError

log = logging.getLogger(__name__)

SAFETY_FINISH_REASONS = frozenset({
    "SAFETY", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY", "IMAGE_PROHIBITED_CONTENT",
})
_DURATION = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)s\s*$")
# The Gemini API refuses a generateContent request over 20 MB in total (inline data counted as
# sent: base64, 4/3 of the bytes; prompt and system text included); larger media must go through
# the Files API. Documented at ai.google.dev "Video understanding" / "File input methods".
INLINE_REQUEST_LIMIT_BYTES = 20 * 1024 * 1024


def _enum_name(value: Any) -> str | None:
    if value is None:
        return None
    return str(getattr(value, "value", value))


def _retry_delay_from_details(details: Any) -> float | None:
    """google.rpc.RetryInfo.retryDelay ("17s", "0.5s") from an error body, if any."""
    error = details.get("error", details) if isinstance(details, dict) else None
    items = error.get("details") if isinstance(error, dict) else None
    for item in items or []:
        if isinstance(item, dict) and str(item.get("@type", "")).endswith("google.rpc.RetryInfo"):
            match = _DURATION.match(str(item.get("retryDelay", "")))
            if match:
                return float(match.group(1))
    return None


class GeminiBackend:
    """`ChatBackend` over Gemini `generateContent` (see the module docstring)."""

    def __init__(
        self,
        model: str,
        api_key_env: str = "GEMINI_API_KEY",
        base_url: str | None = None,
        timeout_s: float = 60,
        *,
        name: str | None = None,
        api_version: str | None = "v1beta",
        max_connections: int = 1024,
        extra_config: dict[str, Any] | None = None,
        inline_limit_bytes: int = INLINE_REQUEST_LIMIT_BYTES,
        file_poll_s: float = 2.0,
        file_wait_s: float = 600.0,
    ) -> None:
        """
        model: e.g. "gemini-2.0-flash-001".
        api_key_env: environment variable holding the key.
        base_url: None = the SDK default (generativelanguage.googleapis.com).
        timeout_s: HTTP timeout per request.
        api_version: "v1beta" (default; the API's most complete surface) or "v1"; None = the SDK's default.
        extra_config: more `GenerateContentConfig` fields (e.g. safety_settings, thinking_config).
        inline_limit_bytes: requests whose image/clip would make them larger go through the Files API.
        file_poll_s, file_wait_s: how often, and how long at most, to ask whether an upload is ACTIVE.
        """
        if not model:
            raise ValueError("GeminiBackend: model must be a non-empty model id")
        self.model = model
        self.api_key_env = api_key_env
        self.base_url = base_url
        self.timeout_s = float(timeout_s)
        self.name = name or f"gemini:{model}"
        self.api_version = api_version
        self.max_connections = int(max_connections)
        self.extra_config = dict(extra_config or {})
        self.inline_limit_bytes = int(inline_limit_bytes)
        self.file_poll_s = float(file_poll_s)
        self.file_wait_s = float(file_wait_s)
        self._files: dict[str, Any] = {}  # sha256 of uploaded bytes -> its types.File (name, uri, state)
        self._file_locks: dict[str, asyncio.Lock] = {}
        read_api_key(api_key_env, backend=self.name)  # fail fast, naming the variable
        self._client: Any = None
        self._client_loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        return (f"GeminiBackend(model={self.model!r}, base_url={self.base_url!r}, "
                f"api_key_env={self.api_key_env!r}, timeout_s={self.timeout_s})")

    @property
    def limit_key(self) -> str:
        """Whose quota this backend spends (see `inference.vlm.limiter.provider_key`)."""
        return provider_key("gemini", self.base_url, self.api_key_env, self.model)

    def _secret(self) -> str | None:
        return os.environ.get(self.api_key_env) if self.api_key_env else None

    def _get_client(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            import httpx2
            from google import genai
            from google.genai import types

            key = read_api_key(self.api_key_env, backend=self.name)
            options: dict[str, Any] = {
                "timeout": max(1, int(round(self.timeout_s * 1000))),  # milliseconds
                "retry_options": types.HttpRetryOptions(attempts=1),
                "async_client_args": {"limits": httpx2.Limits(
                    max_connections=self.max_connections, max_keepalive_connections=self.max_connections),
                    "verify": shared_ssl_context()},
            }
            if self.base_url is not None:
                options["base_url"] = self.base_url
            if self.api_version is not None:
                options["api_version"] = self.api_version
            self._client = genai.Client(api_key=key, vertexai=False, http_options=types.HttpOptions(**options))
            self._client_loop = loop
            self._file_locks = {}  # asyncio locks belong to a loop; finished uploads stay valid
        return self._client

    def prepare(self) -> None:
        """Build the client for the running loop now, outside the engine's per-call timeout."""
        self._get_client()

    # ------------------------------------------------------------------ request
    def fits_inline(self, request: ChatRequest) -> bool:
        """Whether the request, with the media base64-encoded inline, stays under the limit."""
        text = sum(len(turn.text.encode("utf-8")) for turn in request.turns)
        return 4 * -(-len(request.image_bytes) // 3) + text < self.inline_limit_bytes

    async def media_part(self, request: ChatRequest) -> Any:
        """The request's image or clip as a Part: inline bytes, or an ACTIVE Files API upload."""
        from google.genai import types

        if self.fits_inline(request):
            return types.Part.from_bytes(data=request.image_bytes, mime_type=request.image_mime)
        file = await self._uploaded(request.image_bytes, request.image_mime)
        return types.Part.from_uri(file_uri=file.uri, mime_type=file.mime_type or request.image_mime)

    async def _uploaded(self, data: bytes, mime: str) -> Any:
        """The ACTIVE upload of `data`: uploaded once per content (a retry after a timeout goes
        on waiting for the same file), then polled until the API has processed it."""
        import hashlib
        import io

        from google.genai import types

        digest = hashlib.sha256(data).hexdigest()
        client = self._get_client()
        async with self._file_locks.setdefault(digest, asyncio.Lock()):
            file = self._files.get(digest)
            if file is None:
                file = await client.aio.files.upload(file=io.BytesIO(data), config=types.UploadFileConfig(
                    mime_type=mime, display_name=f"sha256-{digest[:16]}"))
                self._files[digest] = file
            deadline = time.monotonic() + self.file_wait_s
            while _enum_name(file.state) == "PROCESSING":
                if time.monotonic() > deadline:
                    raise TransportError("timeout", f"{self.name}: uploaded file {file.name} still PROCESSING "
                                         f"after {self.file_wait_s:g} s")
                await asyncio.sleep(self.file_poll_s)
                file = self._files[digest] = await client.aio.files.get(name=file.name)
            if _enum_name(file.state) != "ACTIVE":
                del self._files[digest]  # a failed upload is not reused
                reason = getattr(getattr(file, "error", None), "message", None) or "no reason given"
                raise TransportError("client_error", f"{self.name}: the API could not process uploaded file "
                                     f"{file.name} ({_enum_name(file.state)}: {scrub(str(reason), self._secret())})")
            return file

    def build_contents(self, request: ChatRequest, media: Any = None) -> tuple[list[Any], str | None]:
        """The request's turns as contents; `media`: the image/clip part (default: inline bytes)."""
        from google.genai import types

        system: list[str] = []
        contents: list[Any] = []
        for turn in request.turns:
            if turn.role == "system":
                system.append(turn.text)
                continue
            parts = []
            if turn.text:
                parts.append(types.Part.from_text(text=turn.text))
            if turn.with_image:
                parts.append(media if media is not None else
                             types.Part.from_bytes(data=request.image_bytes, mime_type=request.image_mime))
            contents.append(types.Content(role="model" if turn.role == "assistant" else "user", parts=parts))
        return contents, ("\n\n".join(system) if system else None)

    def build_config(self, request: ChatRequest, system: str | None) -> Any:
        from google.genai import types

        p = request.params
        fields: dict[str, Any] = {"temperature": p.temperature, "max_output_tokens": p.max_tokens}
        if p.top_p is not None:
            fields["top_p"] = p.top_p
        if p.seed is not None:
            fields["seed"] = p.seed
        if system is not None:
            fields["system_instruction"] = system
        fields.update(self.extra_config)
        return types.GenerateContentConfig(**fields)

    async def complete(self, request: ChatRequest) -> ChatResponse:
        import aiohttp
        import httpx2
        import pydantic
        from google.genai import errors

        client = self._get_client()
        started = time.perf_counter()
        try:
            contents, system = self.build_contents(request, await self.media_part(request))
            config = self.build_config(request, system)
            response = await client.aio.models.generate_content(model=self.model, contents=contents, config=config)
        except errors.APIError as exc:
            raise self._status_error(exc) from None
        except (httpx2.TimeoutException, asyncio.TimeoutError):  # google-genai's httpx2 or aiohttp transport
            raise TransportError("timeout", f"{self.name}: no answer within {self.timeout_s:g} s") from None
        except (httpx2.TransportError, aiohttp.ClientError) as exc:
            raise TransportError("server_error", f"{self.name}: connection failed ({type(exc).__name__})") from None
        except (errors.UnknownApiResponseError, json.JSONDecodeError, UnicodeDecodeError):
            raise TransportError("bad_response", f"{self.name}: response body is not valid JSON", status=200) from None
        except pydantic.ValidationError as exc:
            raise TransportError("bad_response", f"{self.name}: response does not match the API schema "
                                 f"({exc.error_count()} errors)", status=200) from None
        latency_ms = (time.perf_counter() - started) * 1000.0
        return self._to_response(response, latency_ms)

    # ------------------------------------------------------------------ mapping
    def _status_error(self, exc: Any) -> TransportError:
        status = int(getattr(exc, "code", 0) or 0)
        detail = scrub(str(getattr(exc, "message", None) or getattr(exc, "status", None) or ""), self._secret())
        where = f"{self.name}: HTTP {status}"
        headers = getattr(getattr(exc, "response", None), "headers", None)
        if status == 429:
            retry_after = parse_retry_after(headers)
            if retry_after is None:
                retry_after = _retry_delay_from_details(getattr(exc, "details", None))
            hint = f" (retry after {retry_after:g} s)" if retry_after is not None else ""
            return TransportError("rate_limited", f"{where}{hint}: {detail}", retry_after=retry_after, status=status)
        if status == 408:
            return TransportError("timeout", f"{where}: {detail}", status=status)
        if status >= 500:
            return TransportError("server_error", f"{where}: {detail}", retry_after=parse_retry_after(headers),
                                  status=status)
        if status in (401, 403) or (status == 400 and "api key" in detail.lower()):
            detail = f"{detail} (check the key in {self.api_key_env})"
        elif status == 404:
            detail = f"{detail} (is model {self.model!r} available at {self.base_url or 'the default URL'}?)"
        return TransportError("client_error", f"{where}: {detail}", status=status)

    def _to_response(self, response: Any, latency_ms: float) -> ChatResponse:
        feedback = getattr(response, "prompt_feedback", None)
        block_reason = _enum_name(getattr(feedback, "block_reason", None)) if feedback is not None else None
        if block_reason and block_reason != "BLOCKED_REASON_UNSPECIFIED":
            message = getattr(feedback, "block_reason_message", None)
            raise TransportError("safety_block", f"{self.name}: prompt blocked ({block_reason})"
                                 + (f": {scrub(str(message), self._secret())}" if message else ""), status=200)
        candidates = getattr(response, "candidates", None)
        if not candidates:
            raise TransportError("bad_response", f"{self.name}: response has no candidates", status=200)
        candidate = candidates[0]
        finish_reason = _enum_name(getattr(candidate, "finish_reason", None))
        if finish_reason in SAFETY_FINISH_REASONS:
            raise TransportError("safety_block", f"{self.name}: answer blocked (finishReason {finish_reason})",
                                 status=200)
        content = getattr(candidate, "content", None)
        texts = [part.text for part in (getattr(content, "parts", None) or [])
                 if getattr(part, "text", None) is not None and not getattr(part, "thought", False)]
        usage = getattr(response, "usage_metadata", None)
        input_tokens = getattr(usage, "prompt_token_count", None) if usage is not None else None
        output_tokens = getattr(usage, "candidates_token_count", None) if usage is not None else None
        return ChatResponse(
            text="".join(texts) if texts else None,
            refused=False,
            finish_reason=finish_reason,
            input_tokens=input_tokens if isinstance(input_tokens, int) else None,
            output_tokens=output_tokens if isinstance(output_tokens, int) else None,
            latency_ms=latency_ms,
        )
