"""The OpenAI-compatible and Gemini backends, through the real `openai` and `google-genai`
clients over real HTTP against the loopback servers in tests/support (nothing patched)."""

from __future__ import annotations

import asyncio
import email.utils
import time

import pytest

from inference.vlm.gemini_backend import GeminiBackend
from inference.vlm.openai_backend import OpenAIChatBackend, parse_retry_after
from inference.vlm.types import ChatBackend, ChatRequest, ChatResponse, GenerationParams, TransportError, Turn
from support.gemini_server import GeminiServer, finish_safety, prompt_blocked
from support.openai_server import (
    OpenAIServer,
    answer,
    client_error,
    content_filter,
    hang,
    malformed,
    rate_limited,
    raw,
    refusal,
    server_error,
)

OPENAI_KEY = "sk-test-openai-0123456789"
GEMINI_KEY = "AIza-test-gemini-0123456789"
IMAGE = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4 + b"\xff\xd9"  # bytes with every value


def make_request(text: str = "Which emotion does this face show?", *, seed: int | None = 7) -> ChatRequest:
    return ChatRequest(
        turns=(Turn("system", "Answer with one word."), Turn("user", text, with_image=True)),
        image_bytes=IMAGE, image_mime="image/jpeg",
        params=GenerationParams(temperature=0.0, max_tokens=16, top_p=0.9, seed=seed),
    )


def run(coro):
    return asyncio.run(coro)


@pytest.fixture
def openai_server(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    with OpenAIServer() as server:
        yield server


@pytest.fixture
def gemini_server(monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", GEMINI_KEY)
    with GeminiServer() as server:
        yield server


# Every OpenAI transport (the default "direct" aiohttp POST, the SDK's typed
# `chat.completions.create` over its aiohttp transport, the SDK's `client.post` over httpx2)
# and Gemini run the same scenarios: one classification whichever way a request travels.
OPENAI_TRANSPORTS = {"openai": {}, "openai-typed": {"sdk_typed_call": True},
                     "openai-sdk-httpx": {"transport": "sdk-httpx"}}


@pytest.fixture(params=[*OPENAI_TRANSPORTS, "gemini"])
def target(request, monkeypatch):
    kind = request.param
    if kind.startswith("openai"):
        monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
        with OpenAIServer() as server:
            backend = OpenAIChatBackend("gpt-test", base_url=server.base_url, timeout_s=5,
                                        **OPENAI_TRANSPORTS[kind])
            yield kind, server, backend
    else:
        monkeypatch.setenv("GEMINI_API_KEY", GEMINI_KEY)
        with GeminiServer() as server:
            yield kind, server, GeminiBackend("gemini-test", base_url=server.url, timeout_s=5)


def test_answer_sends_image_params_and_key_as_header(target):
    kind, server, backend = target
    assert isinstance(backend, ChatBackend)
    server.enqueue(answer("happiness"))
    response = run(backend.complete(make_request()))
    assert isinstance(response, ChatResponse)
    assert response.text == "happiness" and not response.refused
    assert response.input_tokens and response.output_tokens and response.latency_ms > 0
    (recorded,) = server.generation_requests
    assert recorded.images == [IMAGE] and recorded.image_mimes == ["image/jpeg"]
    assert "Answer with one word." in recorded.prompt and "Which emotion" in recorded.prompt
    body = recorded.body
    if kind.startswith("openai"):
        assert recorded.path == "/v1/chat/completions"
        assert recorded.headers["authorization"] == f"Bearer {OPENAI_KEY}"
        assert body["model"] == "gpt-test" and body["messages"][0] == {"role": "system", "content": "Answer with one word."}
        assert (body["temperature"], body["max_tokens"], body["top_p"], body["seed"]) == (0.0, 16, 0.9, 7)
        assert body["messages"][1]["content"][1]["image_url"]["url"].startswith("data:image/jpeg;base64,")
        assert response.finish_reason == "stop"
    else:
        assert recorded.path == "/v1beta/models/gemini-test:generateContent"
        assert recorded.headers["x-goog-api-key"] == GEMINI_KEY
        config = body["generationConfig"]
        assert (config["temperature"], config["maxOutputTokens"], config["topP"], config["seed"]) == (0.0, 16, 0.9, 7)
        assert body["systemInstruction"]["parts"][0]["text"] == "Answer with one word."
        assert response.finish_reason == "STOP"
    assert all(OPENAI_KEY.encode() not in r and GEMINI_KEY.encode() not in r for r in server.responses)


RETRY_DATE_S = 3


@pytest.mark.parametrize("action, kind, retry_after", [
    (rate_limited("2"), "rate_limited", 2.0),
    (rate_limited("0.5"), "rate_limited", 0.5),
    ("http-date", "rate_limited", float(RETRY_DATE_S)),
    (rate_limited(None), "rate_limited", None),
    (server_error(500), "server_error", None),
    (server_error(502), "server_error", None),
    (server_error(503), "server_error", None),
    (malformed(), "bad_response", None),
    (raw(b"<html>gateway</html>", content_type="text/html"), "bad_response", None),
    (raw(b'{"unexpected": true}'), "bad_response", None),
    (client_error(400, "invalid image"), "client_error", None),
    (client_error(401, "invalid api key"), "client_error", None),
    (client_error(404, "model not found"), "client_error", None),
    (client_error(408, "request timeout"), "timeout", None),
], ids=lambda v: v if isinstance(v, str) else None)
def test_errors_map_to_transport_error_kinds(target, action, kind, retry_after):
    backend_kind, server, backend = target
    if action == "http-date":
        when = email.utils.formatdate(time.time() + RETRY_DATE_S + 0.999, usegmt=True)
        action = rate_limited(when)
    server.enqueue(action)
    with pytest.raises(TransportError) as caught:
        run(backend.complete(make_request()))
    error = caught.value
    assert error.kind == kind, str(error)
    if retry_after is None:
        assert error.retry_after is None
    else:
        assert error.retry_after == pytest.approx(retry_after, abs=1.01)
    assert error.retryable == (kind in {"rate_limited", "timeout", "server_error", "bad_response"})
    if kind == "client_error" and error.status == 401:
        env = "OPENAI_API_KEY" if backend_kind.startswith("openai") else "GEMINI_API_KEY"
        assert env in str(error)
    assert server.generation_count == 1  # the SDKs' own retries are off


def test_client_side_timeout_maps_to_timeout(target, monkeypatch):
    kind, server, _ = target
    backend = (OpenAIChatBackend("gpt-test", base_url=server.base_url, timeout_s=0.5, **OPENAI_TRANSPORTS[kind])
               if kind.startswith("openai")
               else GeminiBackend("gemini-test", base_url=server.url, timeout_s=0.5))
    server.enqueue(hang(10))
    started = time.monotonic()
    with pytest.raises(TransportError) as caught:
        run(backend.complete(make_request()))
    assert caught.value.kind == "timeout"
    assert 0.4 < time.monotonic() - started < 5


def test_connection_refused_is_a_retryable_server_error(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    with OpenAIServer() as server:
        url = server.base_url
    backend = OpenAIChatBackend("gpt-test", base_url=url, timeout_s=2)
    with pytest.raises(TransportError) as caught:
        run(backend.complete(make_request()))
    assert caught.value.kind == "server_error" and caught.value.retryable


def test_openai_refusal_and_content_filter_are_refused_answers(openai_server):
    backend = OpenAIChatBackend("gpt-test", base_url=openai_server.base_url)
    openai_server.enqueue(refusal("I can't identify people."), content_filter(), content_filter("par"))
    first = run(backend.complete(make_request()))
    assert first.refused and first.text == "I can't identify people."
    second = run(backend.complete(make_request()))
    assert second.refused and second.finish_reason == "content_filter" and second.text is None
    third = run(backend.complete(make_request()))
    assert third.refused and third.text == "par"


def test_openai_prompt_filter_error_is_a_safety_block(openai_server):
    backend = OpenAIChatBackend("gpt-test", base_url=openai_server.base_url)
    openai_server.enqueue(client_error(400, "The response was filtered", code="content_filter"))
    with pytest.raises(TransportError) as caught:
        run(backend.complete(make_request()))
    assert caught.value.kind == "safety_block" and not caught.value.retryable


@pytest.mark.parametrize("action, reason", [
    (prompt_blocked("SAFETY"), "SAFETY"),
    (prompt_blocked("PROHIBITED_CONTENT"), "PROHIBITED_CONTENT"),
    (finish_safety("SAFETY"), "SAFETY"),
    (finish_safety("IMAGE_SAFETY"), "IMAGE_SAFETY"),
])
def test_gemini_safety_blocks_are_kept_apart_from_answers(gemini_server, action, reason):
    backend = GeminiBackend("gemini-test", base_url=gemini_server.url)
    gemini_server.enqueue(action)
    with pytest.raises(TransportError) as caught:
        run(backend.complete(make_request()))
    assert caught.value.kind == "safety_block" and reason in str(caught.value)
    assert not caught.value.retryable


def test_gemini_retry_info_in_body_gives_retry_after(gemini_server):
    backend = GeminiBackend("gemini-test", base_url=gemini_server.url)
    gemini_server.enqueue(rate_limited(None, retry_delay="4s"))
    with pytest.raises(TransportError) as caught:
        run(backend.complete(make_request()))
    assert caught.value.kind == "rate_limited" and caught.value.retry_after == 4.0


def test_assistant_turns_and_image_placement(target):
    kind, server, backend = target
    request = ChatRequest(
        turns=(Turn("user", "Look at this face.", with_image=True), Turn("assistant", "I see it."),
               Turn("user", "Which emotion?")),
        image_bytes=IMAGE, image_mime="image/png", params=GenerationParams(),
    )
    run(backend.complete(request))
    body = server.generation_requests[0].body
    assert server.generation_requests[0].images == [IMAGE]
    if kind.startswith("openai"):
        roles = [m["role"] for m in body["messages"]]
        assert roles == ["user", "assistant", "user"]
        assert body["messages"][0]["content"][1]["image_url"]["url"].startswith("data:image/png;base64,")
        assert "seed" not in body and "top_p" not in body
    else:
        assert [c["role"] for c in body["contents"]] == ["user", "model", "user"]
        assert "systemInstruction" not in body


def test_missing_key_names_the_variable(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("MY_GEMINI_KEY", raising=False)
    with pytest.raises(RuntimeError, match="OPENAI_API_KEY"):
        OpenAIChatBackend("gpt-4o")
    with pytest.raises(RuntimeError, match="MY_GEMINI_KEY"):
        GeminiBackend("gemini-2.0-flash", api_key_env="MY_GEMINI_KEY")


def test_local_compatible_server_without_key(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with OpenAIServer(default_text="surprise") as server:
        backend = OpenAIChatBackend("llava", base_url=server.base_url, api_key_env=None)
        assert run(backend.complete(make_request())).text == "surprise"


def test_model_lists_are_served(openai_server, gemini_server):
    import openai
    from google import genai
    from google.genai import types

    async def go():
        client = openai.AsyncOpenAI(api_key=OPENAI_KEY, base_url=openai_server.base_url, max_retries=0)
        ids = [m.id async for m in await client.models.list()]
        gclient = genai.Client(api_key=GEMINI_KEY, http_options=types.HttpOptions(
            base_url=gemini_server.url, api_version="v1beta"))
        names = [m.name async for m in await gclient.aio.models.list()]
        return ids, names

    ids, names = run(go())
    assert ids == ["test-model"] and names == ["models/gemini-test"]


def test_parse_retry_after_forms():
    assert parse_retry_after({"Retry-After": "7"}) == 7.0
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert parse_retry_after({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0  # in the past
    future = email.utils.formatdate(1_000_000_030, usegmt=True)
    assert parse_retry_after({"Retry-After": future}, now=1_000_000_000) == pytest.approx(30.0)
    assert parse_retry_after({"Retry-After": "soon"}) is None
    assert parse_retry_after({}) is None and parse_retry_after({"Retry-After": "-3"}) is None


def test_direct_transport_sends_what_the_sdk_sends(openai_server, monkeypatch):
    # the "direct" transport takes endpoint and headers from an official client: same path,
    # same body, same identifying / auth / organization headers as the SDK's own call
    monkeypatch.setenv("OPENAI_ORG_ID", "org-loopback")
    for transport in ("direct", "sdk"):
        backend = OpenAIChatBackend("gpt-test", base_url=openai_server.base_url, transport=transport)
        assert run(backend.complete(make_request())).text == "neutral"
    direct, sdk = openai_server.generation_requests
    assert direct.path == sdk.path == "/v1/chat/completions" and direct.body == sdk.body
    transport_specific = {"content-length", "host", "accept-encoding", "connection", "idempotency-key"}
    assert {k: v for k, v in direct.headers.items() if k not in transport_specific} == \
        {k: v for k, v in sdk.headers.items() if k not in transport_specific}
    assert direct.headers["openai-organization"] == "org-loopback"
    with pytest.raises(ValueError, match="transport"):
        OpenAIChatBackend("gpt-test", base_url=openai_server.base_url, transport="carrier-pigeon")
