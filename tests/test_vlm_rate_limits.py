"""Rate limits are waits, not failures: the real engine and clients over real HTTP against the
loopback servers enforcing a provider's limit (nothing patched). A 429 never uses up a request's
retries, a run's deadline bounds the waiting and leaves what is unanswered for the next run, and
a provider's budget headers keep the client under its limit before the first 429. Assertions
are on server-counted requests, never on wall time.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from inference.vlm.budget import parse_budget, parse_duration
from inference.vlm.cache import ResponseCache
from inference.vlm.engine import Engine, estimate_tokens, run_all
from inference.vlm.openai_backend import OpenAIChatBackend
from inference.vlm.types import TransportError
from support.gemini_server import GeminiServer
from support.openai_server import OpenAIServer, Provider, rate_limited, server_error
from support.rate_budget import go_duration
from test_vlm_limiter import KEY, echo_item, make_request, prompt, provider  # noqa: F401 (a fixture)


def refusals_per_prompt(server) -> Counter:
    return Counter(r.prompt for r in server.generation_requests if r.status == 429)


def answer_all(engine: Engine, backend, n: int) -> list:
    """Items 0..n-1 through `engine` in one event loop, the backend closed after."""
    async def go() -> list:
        try:
            return await run_all([engine.complete(make_request(i)) for i in range(n)])
        finally:
            await backend.aclose()

    return asyncio.run(go())


def test_an_enforced_limit_never_uses_up_the_retries(provider):
    # 48 requests at once against a provider that takes 30 a second (bursts of 3): most are
    # refused several times, far more often than max_retries=1 allows; every one is answered
    server, make_backend = provider
    # OpenAI says when in retry-after-ms; Gemini in the 429's RetryInfo.retryDelay
    when = {"retry_delay": "0.02s"} if isinstance(server, GeminiServer) else {"retry_after_ms": "20"}
    server.provider = Provider(rate_per_s=30.0, burst=3.0, retry_after=None, **when)
    engine = Engine(make_backend(), max_in_flight=48, max_retries=1, base_delay_s=0.01, max_delay_s=0.05)
    results = asyncio.run(run_all([engine.complete(make_request(i)) for i in range(48)]))
    assert [getattr(r, "text", r) for r in results] == [f"answer-{i}" for i in range(48)]
    assert server.answered == {prompt(i): 1 for i in range(48)}
    refused = refusals_per_prompt(server)
    assert max(refused.values()) > 2  # the old policy gave up on these after 2 calls
    assert engine.stats["gave_up"] == 0


def test_errors_still_use_the_retries_between_rate_limits(provider):
    server, make_backend = provider
    engine = Engine(make_backend(), max_in_flight=2, max_retries=1, base_delay_s=0.01, max_delay_s=0.02)
    # 429 429 500 429 answer: one failed attempt among them, within max_retries=1
    server.enqueue(rate_limited(retry_after="0"), rate_limited(retry_after="0"), server_error(500),
                   rate_limited(retry_after="0"))
    assert asyncio.run(engine.complete(make_request(0))).text == "answer-0"
    # two errors: the second is one too many, however many 429s lie between them
    server.enqueue(server_error(500), rate_limited(retry_after="0"), server_error(503))
    with pytest.raises(TransportError) as caught:
        asyncio.run(engine.complete(make_request(1)))
    assert caught.value.kind == "server_error" and caught.value.attempts == 3


def test_the_deadline_leaves_the_unanswered_to_the_next_run(monkeypatch, tmp_path):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    cache_path = tmp_path / "responses.sqlite"
    n = 12
    with OpenAIServer(latency_s=0.02) as server:
        server.answer_fn = echo_item
        # items 8.. are refused for as long as the first run lasts
        server.responder = lambda r: rate_limited(retry_after=None, retry_after_ms="50") \
            if int(r.prompt.split(":")[0].split()[1]) >= 8 else None

        async def run(deadline_s: float, max_in_flight: int) -> list:
            backend = OpenAIChatBackend("gpt-test", base_url=server.base_url, timeout_s=10)
            with ResponseCache(cache_path) as cache:
                engine = Engine(backend, max_in_flight=max_in_flight, max_retries=0, deadline_s=deadline_s,
                                cache=cache, adaptive=False)
                results = await run_all([engine.complete(make_request(i), cache_key=f"k{i}") for i in range(n)])
            await backend.aclose()
            return results

        first = asyncio.run(run(0.6, max_in_flight=6))
        assert [r.text for r in first[:8]] == [f"answer-{i}" for i in range(8)]
        unanswered = first[8:]
        assert all(isinstance(e, TransportError) and e.kind == "deadline" for e in unanswered), unanswered
        assert any("last call failed: rate_limited" in e.message for e in unanswered)
        with ResponseCache(cache_path) as cache:
            assert cache.keys() == {f"k{i}" for i in range(8)}  # an unanswered request is not stored

        server.reset()
        server.responder = None
        second = asyncio.run(run(30.0, max_in_flight=6))
        assert [r.text for r in second] == [f"answer-{i}" for i in range(n)]
        assert sorted(r.prompt for r in server.generation_requests) == sorted(prompt(i) for i in range(8, n))


def test_requests_never_sent_before_the_deadline_are_unanswered(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with OpenAIServer(latency_s=0.3) as server:
        server.answer_fn = echo_item
        backend = OpenAIChatBackend("gpt-test", base_url=server.base_url, timeout_s=10)
        engine = Engine(backend, max_in_flight=2, deadline_s=0.5, adaptive=False)
        results = asyncio.run(run_all([engine.complete(make_request(i)) for i in range(8)]))
    answered = [r for r in results if not isinstance(r, BaseException)]
    waiting = [r for r in results if isinstance(r, TransportError)]
    assert len(answered) == server.generation_count and 2 <= len(answered) < 8
    assert len(answered) + len(waiting) == 8
    assert all(e.kind == "deadline" and "waiting for its first call" in e.message for e in waiting)
    assert engine.stats["unanswered_at_deadline"] == len(waiting)


def run_against_budget(provider: Provider, n: int, max_in_flight: int) -> tuple[int, dict]:
    """(429s the server sent, the window report) for n requests through a fresh engine."""
    with OpenAIServer(latency_s=0.05) as server:
        server.answer_fn = echo_item
        server.provider = provider
        backend = OpenAIChatBackend("gpt-test", base_url=server.base_url, timeout_s=10)
        # the estimate counts an image as the server does (85 tokens), so tokens pace at its rate
        engine = Engine(backend, max_in_flight=max_in_flight, max_retries=0, base_delay_s=0.01,
                        token_estimator=lambda r: estimate_tokens(r, image_tokens=85))
        results = answer_all(engine, backend, n)
        assert [getattr(r, "text", r) for r in results] == [f"answer-{i}" for i in range(n)]
        assert server.answered == {prompt(i): 1 for i in range(n)}
        return server.outcomes["rate_limited"], engine.concurrency_report()


@pytest.mark.parametrize("budget", ["requests", "tokens"])
def test_budget_headers_keep_the_client_under_the_limit(monkeypatch, budget):
    # 16 in flight at 50 ms would ask 320 a second of a provider that takes 40 (a bucket of 20
    # requests, or of tokens for 20): with its x-ratelimit-* headers the client paces to the
    # remaining budget and is almost never refused; without them (the control) it learns by 429s
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    n = 240
    limit = dict(rate_per_s=40.0, burst=20.0) if budget == "requests" else \
        dict(tokens_per_s=40.0 * 98, token_burst=20.0 * 98)  # 98 tokens a request (prompt + image + max_tokens)
    with_headers, report = run_against_budget(Provider(**limit, retry_after=None, retry_after_ms="50",
                                                       budget_headers=True), n, 16)
    without, _ = run_against_budget(Provider(**limit, retry_after=None, retry_after_ms="50"), n, 16)
    assert with_headers <= n // 100, (with_headers, without)  # <= 1 % of the answers
    assert without > 5 * max(1, with_headers), (with_headers, without)


def test_budget_headers_parse():
    assert [parse_duration(t) for t in ("1s", "6m0s", "20ms", "1h2m3.5s", "0.5", "soon")] == \
        [1.0, 360.0, 0.02, 3723.5, 0.5, None]
    assert [go_duration(s) for s in (0.02, 1.0, 1.5, 360.0, 3723.5)] == ["20ms", "1s", "1.5s", "6m0s", "1h2m3.5s"]
    budget = parse_budget({"x-ratelimit-limit-requests": "3000", "x-ratelimit-remaining-requests": "2990",
                           "x-ratelimit-reset-requests": "200ms", "x-ratelimit-limit-tokens": "250000",
                           "x-ratelimit-remaining-tokens": "249000", "x-ratelimit-reset-tokens": "240ms"})
    # (limit - remaining - 0.5) / reset: remaining is rounded down
    assert budget.requests.refill_per_s == pytest.approx(47.5) and budget.tokens.refill_per_s == pytest.approx(999.5 / 0.24)
    assert parse_budget({"content-type": "application/json"}) is None


def test_without_headers_the_window_starts_small_and_shrinks_at_once_to_what_was_served(monkeypatch):
    # 256 allowed, a provider taking 50 a second (a bucket of one second's): the first wave
    # is a slow start's, not 256 at once, and the first rate-limited round sets the pace to
    # about what the provider served
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    n = 200
    with OpenAIServer(latency_s=0.5) as server:
        server.answer_fn = echo_item
        server.provider = Provider(rate_per_s=50.0, retry_after=None, retry_after_ms="500")
        backend = OpenAIChatBackend("gpt-test", base_url=server.base_url, timeout_s=10)
        engine = Engine(backend, max_in_flight=256, max_retries=0)
        results = answer_all(engine, backend, n)
        assert [getattr(r, "text", r) for r in results] == [f"answer-{i}" for i in range(n)]
        calls = server.generation_requests
    first_answer = min(r.finished for r in calls if r.status == 200)
    assert sum(r.started < first_answer for r in calls) <= 32  # the slow start's first wave
    refused = sum(r.status == 429 for r in calls)
    assert refused <= n // 2, refused  # 256 at once: ~200 refused in the first burst alone
    history = engine.concurrency_report()["history"]
    assert any(h["event"] == "rate_limited" for h in history)
    paced = [h["pace_per_s"] for h in history if h["pace_per_s"] is not None]
    assert paced and 30 <= min(paced) <= 60, history  # it went to about the 50/s the provider served
