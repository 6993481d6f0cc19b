"""Chat backend for the OpenAI chat-completions API and any OpenAI-compatible server.

    backend = OpenAIChatBackend("gpt-4o-2024-08-06")                       # api.openai.com
    backend = OpenAIChatBackend("qwen2.5-vl", base_url="http://localhost:8000/v1",
                                api_key_env=None)                         # vLLM, no key
    response = await backend.complete(request)   # ChatResponse, or raises TransportError

Works with vLLM, Ollama (`http://localhost:11434/v1`), LM Studio (`http://localhost:1234/v1`)
and llama.cpp's server (`http://localhost:8080/v1`) through `base_url`.

- Uses the real `openai.AsyncOpenAI` client with `max_retries=0`: retrying is the engine's job
  (`inference.vlm.engine.Engine`). By default (`transport="direct"`) the call itself is one
  aiohttp POST to the endpoint, with the headers, of that client (`inference.vlm.openai_direct`:
  the SDK's per-request machinery was two thirds of the client's CPU at 256 in flight); its
  statuses and failures map exactly as the SDK path's (`transport="sdk"` / `"sdk-httpx"`).
- The image is sent inline as a base64 data URL in the turn marked `with_image`.
- The API key is read from the environment variable `api_key_env` only (never an argument),
  when the client is built; it is not kept on this object, and never appears in its repr, in
  the messages of the errors it raises (those are rebuilt from the HTTP status and the
  provider's error message, scrubbed of the key, without chaining the SDK exception, which
  holds the request and its headers) or in logs written here.
- Outcome mapping:
    200, `message.refusal` set or finish_reason 'content_filter'  -> ChatResponse(refused=True)
    200, body not JSON / not a chat completion                     -> TransportError('bad_response')
    429 (Retry-After / retry-after-ms: seconds or an HTTP date)    -> TransportError('rate_limited', retry_after=s)
  and the x-ratelimit-* budget headers, when sent, ride along (`ChatResponse.budget`, the
  error's `.budget`; "direct" answers and every transport's errors) for the limiter's pacing
    408, client-side timeout                                       -> TransportError('timeout')
    5xx, connection refused/reset                                  -> TransportError('server_error')
    400 with code content_filter / content_policy_violation        -> TransportError('safety_block')
    other 4xx (bad request, 401 wrong key, 404 unknown model, ...) -> TransportError('client_error')
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import functools
import json
import logging
import os
import time
from collections.abc import Mapping
from typing import Any

import orjson

from inference.vlm.budget import parse_budget
from inference.vlm.http_common import parse_retry_after, read_api_key, scrub, shared_ssl_context
from inference.vlm.limiter import provider_key
from inference.vlm.openai_direct import DirectPost
from inference.vlm.types import ChatRequest, ChatResponse, TransportError

log = logging.getLogger(__name__)

# Error codes some OpenAI-compatible providers (Azure OpenAI, OpenAI moderation) use when the
# *prompt* (here: the image) is filtered before any answer is generated.
_PROMPT_FILTER_CODES = frozenset({"content_filter", "content_policy_violation", "responsibleaipolicyviolation"})
_REFUSAL_FINISH_REASONS = frozenset({"content_filter"})
# A placeholder for servers that need no key (vLLM, Ollama, llama.cpp): the SDK insists on one.
NO_KEY_PLACEHOLDER = "no-key"


@functools.lru_cache(maxsize=512)
def data_url(image_bytes: bytes, mime: str) -> str:
    """The image as a base64 data URL, encoded once per image: the k samples, steps and retries
    of one image reuse it (bytes hash once per object, and a hit on the same object compares by
    identity, so a lookup is cheap)."""
    return f"data:{mime};base64,{base64.b64encode(image_bytes).decode('ascii')}"


def _provider_message(body: object) -> tuple[str, str | None]:
    """(message, code) from an OpenAI-style error body."""
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict):
            message = error.get("message") or ""
            code = error.get("code") or error.get("type")
            return str(message), (str(code) if code is not None else None)
        if isinstance(error, str):
            return error, None
    if isinstance(body, str):
        return body, None
    return "", None


class OpenAIChatBackend:
    """`ChatBackend` over the chat-completions API (see the module docstring)."""

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key_env: str | None = "OPENAI_API_KEY",
        timeout_s: float = 60,
        *,
        name: str | None = None,
        max_tokens_field: str = "max_tokens",
        image_detail: str | None = None,
        image_first: bool = False,
        extra_body: Mapping[str, Any] | None = None,
        max_connections: int = 1024,
        pool_shards: int | None = None,
        sdk_typed_call: bool = False,
        transport: str | None = None,
    ) -> None:
        """
        model: the model id sent to the server.
        base_url: e.g. "http://localhost:8000/v1"; None = the SDK default (api.openai.com, or
            OPENAI_BASE_URL).
        api_key_env: environment variable holding the key; None for servers needing none.
        timeout_s: the HTTP client's timeout per request.
        name: backend name (default "openai:<model>").
        max_tokens_field: "max_tokens" (widest support) or "max_completion_tokens" (required by
            OpenAI's reasoning models).
        image_detail: "low" | "high" | "auto" for the image part; None sends no detail field.
        image_first: put the image part before the text part of its turn.
        extra_body: extra JSON fields merged into each request (e.g. vLLM's `top_k`).
        max_connections: connection limit per pool (keep >= the engine's max_in_flight).
        pool_shards: (transport "sdk-httpx") AsyncOpenAI clients used round-robin, each with its own connection pool:
            httpx's pool does work linear in its connection count on every request, which
            dominates CPU at hundreds of requests in flight; shards keep each pool small.
            None = one per 16 connections, 8 to 64 (measured at 256 in flight: 8 shards 3.3,
            32 shards 2.4 CPU ms per request; the TLS context is shared, so shards are cheap).
        sdk_typed_call: True = `client.chat.completions.create` (the SDK's typed-dict transform
            of the messages costs ~2 ms CPU per request); False (default) = the same request
            through the same client's documented `client.post("/chat/completions", ...)`, with
            the JSON body built here and the answer parsed here.
        transport: how a request travels (CPU per request measured in DEVELOPERS.md, "API
            runner: client CPU per request"):
            "direct" (default unless sdk_typed_call): one aiohttp POST per call, with the
                endpoint and headers taken from an official AsyncOpenAI client and its answers
                classified as the SDK path's (`inference.vlm.openai_direct`: the SDK's
                per-request machinery was two thirds of client CPU);
            "sdk": the official AsyncOpenAI end to end, over its own aiohttp transport
                (`openai.DefaultAioHttpClient`, the `openai[aiohttp]` extra);
            "sdk-httpx": the official AsyncOpenAI over its default httpx2 transport, in
                `pool_shards` pools.
        """
        if not model:
            raise ValueError("OpenAIChatBackend: model must be a non-empty model id")
        if max_tokens_field not in ("max_tokens", "max_completion_tokens"):
            raise ValueError("OpenAIChatBackend: max_tokens_field must be 'max_tokens' or 'max_completion_tokens'")
        self.model = model
        self.base_url = base_url
        self.api_key_env = api_key_env
        self.timeout_s = float(timeout_s)
        self.name = name or f"openai:{model}"
        self.max_tokens_field = max_tokens_field
        self.image_detail = image_detail
        self.image_first = image_first
        self.extra_body = dict(extra_body or {})
        self.max_connections = int(max_connections)
        if pool_shards is None:
            pool_shards = min(64, max(8, self.max_connections // 16))
        if pool_shards < 1:
            raise ValueError("OpenAIChatBackend: pool_shards must be >= 1")
        self.pool_shards = int(pool_shards)
        self.sdk_typed_call = bool(sdk_typed_call)
        transport = transport or ("sdk" if self.sdk_typed_call else "direct")
        if transport not in ("direct", "sdk", "sdk-httpx"):
            raise ValueError(f"OpenAIChatBackend: transport must be 'direct', 'sdk' or 'sdk-httpx', got {transport!r}")
        if transport == "direct" and self.sdk_typed_call:
            raise ValueError("OpenAIChatBackend: sdk_typed_call needs transport 'sdk' or 'sdk-httpx'")
        self.transport = transport
        read_api_key(api_key_env, backend=self.name)  # fail fast, naming the variable
        self._clients: list[Any] = []
        self._client_loop: asyncio.AbstractEventLoop | None = None
        self._next_shard = 0
        self._direct: DirectPost | None = None

    def __repr__(self) -> str:
        return (f"OpenAIChatBackend(model={self.model!r}, base_url={self.base_url!r}, "
                f"api_key_env={self.api_key_env!r}, timeout_s={self.timeout_s})")

    @property
    def limit_key(self) -> str:
        """Whose quota this backend spends (see `inference.vlm.limiter.provider_key`)."""
        return provider_key("openai", self.base_url, self.api_key_env, self.model)

    # ------------------------------------------------------------------ client
    def _get_client(self) -> Any:
        """The next AsyncOpenAI (round-robin over `pool_shards`), built for the running event
        loop (an httpx pool cannot outlive its loop)."""
        loop = asyncio.get_running_loop()
        if not self._clients or self._client_loop is not loop:
            import httpx2
            import openai

            key = read_api_key(self.api_key_env, backend=self.name) or NO_KEY_PLACEHOLDER
            self._clients = []
            sharded = self.transport == "sdk-httpx"
            for _ in range(self.pool_shards if sharded else 1):
                # "direct" only reads the endpoint and headers of its client: the httpx2 one is
                # never used, but the SDK builds one anyway, so it gets the shared TLS context
                client_class = openai.DefaultAioHttpClient if self.transport == "sdk" else openai.DefaultAsyncHttpxClient
                http_client = client_class(
                    limits=httpx2.Limits(max_connections=self.max_connections,
                                         max_keepalive_connections=self.max_connections),
                    timeout=httpx2.Timeout(self.timeout_s, connect=min(10.0, self.timeout_s)),
                    verify=shared_ssl_context(),
                )
                self._clients.append(openai.AsyncOpenAI(
                    api_key=key, base_url=self.base_url, timeout=self.timeout_s, max_retries=0,
                    http_client=http_client,
                ))
            self._client_loop = loop
            if self.transport == "direct":
                self._direct = DirectPost(self._clients[0], "chat/completions", timeout_s=self.timeout_s,
                                          max_connections=self.max_connections,
                                          ssl_context=shared_ssl_context(), name=self.name)
        self._next_shard = (self._next_shard + 1) % len(self._clients)
        return self._clients[self._next_shard]

    def prepare(self) -> None:
        """Build the clients for the running loop now (imports, TLS context, pools: a few
        hundred ms once), so the engine's per-call timeout does not count them."""
        if not self._clients or self._client_loop is not asyncio.get_running_loop():
            self._get_client()

    async def aclose(self) -> None:
        if self._direct is not None:
            await self._direct.aclose()
            self._direct = None
        for client in self._clients:
            try:
                await client.close()
            except RuntimeError:  # its loop is gone
                pass
        self._clients = []

    def _secret(self) -> str | None:
        return os.environ.get(self.api_key_env) if self.api_key_env else None

    # ------------------------------------------------------------------ request
    def build_messages(self, request: ChatRequest) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        for turn in request.turns:
            if not turn.with_image:
                messages.append({"role": turn.role, "content": turn.text})
                continue
            image: dict[str, Any] = {"url": data_url(request.image_bytes, request.image_mime)}
            if self.image_detail is not None:
                image["detail"] = self.image_detail
            parts: list[dict[str, Any]] = [{"type": "image_url", "image_url": image}]
            if turn.text:
                text_part = {"type": "text", "text": turn.text}
                parts = parts + [text_part] if self.image_first else [text_part] + parts
            messages.append({"role": turn.role, "content": parts})
        return messages

    def build_params(self, request: ChatRequest) -> dict[str, Any]:
        p = request.params
        params: dict[str, Any] = {"temperature": p.temperature, self.max_tokens_field: p.max_tokens}
        if p.top_p is not None:
            params["top_p"] = p.top_p
        if p.seed is not None:
            params["seed"] = p.seed
        return params

    async def complete(self, request: ChatRequest) -> ChatResponse:
        import openai

        client = self._get_client()
        started = time.perf_counter()
        if self._direct is not None:
            return await self._complete_direct(self._direct, request, started)
        try:
            if self.sdk_typed_call:
                completion = await client.chat.completions.create(
                    model=self.model,
                    messages=self.build_messages(request),
                    extra_body=self.extra_body or None,
                    **self.build_params(request),
                )
            else:
                body = {"model": self.model, "messages": self.build_messages(request),
                        **self.build_params(request), **self.extra_body}
                completion = await client.post("/chat/completions", cast_to=object, body=body)
        except openai.APIStatusError as exc:
            error = self._status_error(exc.status_code, exc.body, exc.response.headers, exc.message)
            error.budget = parse_budget(exc.response.headers)
            raise error from None
        except openai.APITimeoutError:
            raise TransportError("timeout", f"{self.name}: no answer within {self.timeout_s:g} s") from None
        except openai.APIConnectionError as exc:
            cause = type(exc.__cause__).__name__ if exc.__cause__ is not None else "connection error"
            raise TransportError("server_error", f"{self.name}: connection failed ({cause})") from None
        except openai.APIResponseValidationError as exc:
            raise TransportError("bad_response", f"{self.name}: response failed validation: "
                                 f"{scrub(str(exc), self._secret())}", status=exc.status_code) from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise TransportError("bad_response", f"{self.name}: response body is not valid JSON "
                                 f"({type(exc).__name__})", status=200) from None
        latency_ms = (time.perf_counter() - started) * 1000.0
        return self._to_response(completion, latency_ms)

    async def _complete_direct(self, direct: DirectPost, request: ChatRequest, started: float) -> ChatResponse:
        """The "direct" transport: the same body, one aiohttp POST, the SDK path's mapping."""
        body = {"model": self.model, "messages": self.build_messages(request),
                **self.build_params(request), **self.extra_body}
        status, headers, raw = await direct.post(orjson.dumps(body))
        budget = parse_budget(headers)  # the x-ratelimit-* headers: the limiter paces to them
        if not 200 <= status < 300:
            text = raw.decode("utf-8", "replace").strip()
            try:
                error_body: object = orjson.loads(raw)
            except orjson.JSONDecodeError:
                error_body = text
            error = self._status_error(status, error_body, headers, f"Error code: {status} - {text}")
            error.budget = budget
            raise error
        try:
            completion = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise TransportError("bad_response", f"{self.name}: response body is not valid JSON",
                                 status=status) from None
        response = self._to_response(completion, (time.perf_counter() - started) * 1000.0)
        return response if budget is None else dataclasses.replace(response, budget=budget)

    # ------------------------------------------------------------------ mapping
    def _status_error(self, status: int, body: object, headers: Mapping[str, str],
                      fallback: str) -> TransportError:
        """An HTTP error status as a TransportError (both transports): `body` is the parsed
        error body (or its text), `fallback` the message when it names none."""
        status = int(status)
        message, code = _provider_message(body)
        detail = scrub(message or fallback or "", self._secret())
        where = f"{self.name}: HTTP {status}"
        if status == 429:
            retry_after = parse_retry_after(headers)
            hint = f" (retry after {retry_after:g} s)" if retry_after is not None else ""
            return TransportError("rate_limited", f"{where}{hint}: {detail}", retry_after=retry_after, status=status)
        if status == 408:
            return TransportError("timeout", f"{where}: {detail}", status=status)
        if status >= 500:
            return TransportError("server_error", f"{where}: {detail}",
                                  retry_after=parse_retry_after(headers), status=status)
        if code is not None and code.lower() in _PROMPT_FILTER_CODES:
            return TransportError("safety_block", f"{where}: prompt rejected by the content filter ({code})",
                                  status=status)
        if status in (401, 403) and self.api_key_env:
            detail = f"{detail} (check the key in {self.api_key_env})"
        elif status == 404:
            detail = f"{detail} (is model {self.model!r} served at {self.base_url or 'the default URL'}?)"
        return TransportError("client_error", f"{where}: {detail}", status=status)

    def _to_response(self, completion: Any, latency_ms: float) -> ChatResponse:
        """A ChatResponse from a chat completion (a parsed JSON dict, or the SDK's model)."""
        if isinstance(completion, (str, bytes)):
            raise TransportError("bad_response", f"{self.name}: response is text, not a JSON chat completion",
                                 status=200)
        choices = _field(completion, "choices")
        if not isinstance(choices, (list, tuple)) or not choices:
            raise TransportError("bad_response", f"{self.name}: response is not a chat completion (no choices)",
                                 status=200)
        choice = choices[0]
        message = _field(choice, "message")
        if message is None or isinstance(message, (str, int, float, list)):
            raise TransportError("bad_response", f"{self.name}: response choice has no message", status=200)
        finish_reason = _field(choice, "finish_reason")
        content = _field(message, "content")
        refusal = _field(message, "refusal")
        if content is not None and not isinstance(content, str):
            raise TransportError("bad_response", f"{self.name}: message content is not text", status=200)
        if refusal is not None and not isinstance(refusal, str):
            refusal = str(refusal)
        usage = _field(completion, "usage")
        input_tokens = _field(usage, "prompt_tokens")
        output_tokens = _field(usage, "completion_tokens")
        refused = bool(refusal) or (finish_reason in _REFUSAL_FINISH_REASONS)
        text = content if content else (refusal if refusal else content)
        return ChatResponse(
            text=text,
            refused=refused,
            finish_reason=str(finish_reason) if finish_reason is not None else None,
            input_tokens=input_tokens if isinstance(input_tokens, int) else None,
            output_tokens=output_tokens if isinstance(output_tokens, int) else None,
            latency_ms=latency_ms,
            service_tier=_tier(_field(completion, "service_tier")),
        )


def _tier(value: Any) -> str | None:
    """The provider's `service_tier` of an answer ('default' is OpenAI's name for standard)."""
    if not isinstance(value, str) or not value:
        return None
    return "standard" if value in ("default", "auto") else value


def _field(obj: Any, name: str) -> Any:
    if obj is None:
        return None
    if isinstance(obj, dict):
        return obj.get(name)
    return getattr(obj, name, None)
