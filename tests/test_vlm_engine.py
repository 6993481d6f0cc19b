"""The VLM request engine and response cache, with real clients over real HTTP against the
loopback servers (nothing patched): retries and Retry-After, giving up, timeouts, bounded
concurrency, rate limits, the cache (also across a SIGKILL), and secrets staying secret.

Run as a script (`python tests/test_vlm_engine.py --worker URL CACHE N`) it is the worker
process of the kill-and-resume test.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
import traceback
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if __name__ == "__main__":  # the kill-and-resume worker
    sys.path.insert(0, str(REPO_ROOT))

from inference.vlm.cache import ResponseCache, cache_key, image_hash, prompt_hash, request_cache_key  # noqa: E402
from inference.vlm.engine import Engine, TokenBucket, run_all  # noqa: E402
from inference.vlm.openai_backend import OpenAIChatBackend  # noqa: E402
from inference.vlm.types import ChatRequest, ChatResponse, GenerationParams, TransportError, Turn  # noqa: E402

KEY = "sk-test-engine-0123456789"
IMAGE = b"\xff\xd8\xff\xe0fake-jpeg\xff\xd9"


def make_request(i: int) -> ChatRequest:
    return ChatRequest(turns=(Turn("user", f"item {i}: which emotion?", with_image=True),),
                       image_bytes=IMAGE + bytes([i % 256]), image_mime="image/jpeg",
                       params=GenerationParams(max_tokens=8))


def key_for(i: int) -> str:
    return request_cache_key("gpt-test", "2024-01-01", make_request(i), step="ask")


def echo_item(recorded) -> str:
    """The loopback answer names the item it was asked about."""
    return recorded.prompt.split(":")[0].replace("item ", "answer-")


async def process(url: str, cache_path: str, n: int, max_in_flight: int = 2) -> list:
    backend = OpenAIChatBackend("gpt-test", base_url=url, timeout_s=10)
    with ResponseCache(cache_path) as cache:
        engine = Engine(backend, max_in_flight=max_in_flight, cache=cache, base_delay_s=0.01)
        return await run_all([engine.complete(make_request(i), cache_key=key_for(i)) for i in range(n)])


if __name__ == "__main__" and len(sys.argv) == 5 and sys.argv[1] == "--worker":
    asyncio.run(process(sys.argv[2], sys.argv[3], int(sys.argv[4])))
    sys.exit(0)

import pytest  # noqa: E402

from support.gemini_server import GeminiServer  # noqa: E402
from support.kill_worker import kill9_when  # noqa: E402
from support.openai_server import OpenAIServer, answer, client_error, hang, malformed, rate_limited, server_error  # noqa: E402


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with OpenAIServer() as srv:
        srv.answer_fn = echo_item
        yield srv


def backend_for(server, timeout_s: float = 10) -> OpenAIChatBackend:
    return OpenAIChatBackend("gpt-test", base_url=server.base_url, timeout_s=timeout_s)


def test_retries_429_honoring_retry_after(server):
    engine = Engine(backend_for(server), max_in_flight=4, base_delay_s=0.01, max_delay_s=0.05)
    server.enqueue(rate_limited(retry_after="1"), server_error(503))
    started = time.monotonic()
    response = asyncio.run(engine.complete(make_request(3)))
    elapsed = time.monotonic() - started
    assert response.text == "answer-3"
    assert server.generation_count == 3
    assert elapsed >= 1.0  # the backoff alone would be < 0.1 s
    first_429, after = server.generation_requests[0], server.generation_requests[1]
    assert after.started - first_429.started >= 1.0
    assert engine.stats["retries"] == 2 and engine.stats["error:rate_limited"] == 1


def test_retry_after_pauses_only_the_throttled_request(server):
    # (Issue 12: a global pause let a few random 429s stall every request of the engine.)
    engine = Engine(backend_for(server), max_in_flight=4, base_delay_s=0.01, max_delay_s=0.05)
    server.enqueue(rate_limited(retry_after="1"))

    async def go():
        first = asyncio.ensure_future(engine.complete(make_request(0)))
        while server.generation_count == 0:  # the 429 has been served
            await asyncio.sleep(0.01)
        second = await engine.complete(make_request(1))
        return second, await first

    second, first = asyncio.run(go())
    assert (second.text, first.text) == ("answer-1", "answer-0")
    prompts = [r.prompt.split(":")[0] for r in server.generation_requests]
    assert prompts == ["item 0", "item 1", "item 0"]  # the other request did not wait for the retry
    assert server.generation_requests[2].started - server.generation_requests[0].started >= 1.0


def test_gives_up_after_max_retries(server):
    engine = Engine(backend_for(server), max_in_flight=2, max_retries=3, base_delay_s=0.01, max_delay_s=0.02)
    server.enqueue(*[server_error(500)] * 3, malformed())
    with pytest.raises(TransportError) as caught:
        asyncio.run(engine.complete(make_request(1)))
    assert caught.value.kind == "bad_response" and caught.value.attempts == 4
    assert server.generation_count == 4 and engine.stats["gave_up"] == 1


def test_client_errors_are_not_retried(server):
    engine = Engine(backend_for(server), max_in_flight=2, base_delay_s=0.01)
    server.enqueue(client_error(400, "bad image"))
    with pytest.raises(TransportError) as caught:
        asyncio.run(engine.complete(make_request(1)))
    assert caught.value.kind == "client_error" and server.generation_count == 1


def test_per_request_timeout_is_a_retryable_timeout(server):
    engine = Engine(backend_for(server, timeout_s=30), max_in_flight=2, max_retries=1, timeout_s=0.3,
                    base_delay_s=0.01, max_delay_s=0.02)
    server.enqueue(hang(10), hang(10))
    started = time.monotonic()
    with pytest.raises(TransportError) as caught:
        asyncio.run(engine.complete(make_request(1)))
    assert caught.value.kind == "timeout" and "engine timeout" in str(caught.value)
    assert server.generation_count == 2
    assert 0.6 <= time.monotonic() - started < 3


def test_retry_after_longer_than_the_limit_is_not_waited_out(server):
    engine = Engine(backend_for(server), max_in_flight=2, max_retry_after_s=5)
    server.enqueue(rate_limited(retry_after="3600"))
    started = time.monotonic()
    with pytest.raises(TransportError) as caught:
        asyncio.run(engine.complete(make_request(1)))
    assert caught.value.kind == "rate_limited" and time.monotonic() - started < 2


def test_concurrency_is_bounded(server):
    server.latency_s = 0.1
    engine = Engine(backend_for(server), max_in_flight=4)
    seen: list[tuple[int, int]] = []
    results = asyncio.run(run_all([engine.complete(make_request(i)) for i in range(20)],
                                  progress=lambda done, total: seen.append((done, total)), use_tqdm=True))
    assert [r.text for r in results] == [f"answer-{i}" for i in range(20)]
    assert server.max_concurrent == 4
    assert seen == [(i, 20) for i in range(1, 21)]


def test_request_rate_limit_is_respected(server):
    # 600 rpm = 10/s, bucket capacity one second (10): 25 requests need >= 1.5 s
    engine = Engine(backend_for(server), max_in_flight=16, requests_per_minute=600)
    started = time.monotonic()
    asyncio.run(run_all([engine.complete(make_request(i)) for i in range(25)]))
    elapsed = time.monotonic() - started
    assert elapsed >= (25 - 10) / 10 - 0.05
    starts = sorted(r.started for r in server.generation_requests)
    # after the burst of 10, one request per 0.1 s at most (as seen by the server, whose
    # arrival times also carry the first requests' connection set-up: 0.2 s of slack)
    for k, start in enumerate(starts):
        assert start - starts[0] >= (k - 10) / 10 - 0.2


def test_token_rate_limit_is_respected(server):
    # 60k tpm = 1000 tokens/s, capacity 1000; each request is estimated at 50 tokens and then
    # charged its reported usage (more), so 40 requests need >= (40*50 - 1000)/1000 = 1 s
    engine = Engine(backend_for(server), max_in_flight=8, tokens_per_minute=60_000, token_estimator=lambda r: 50)
    started = time.monotonic()
    asyncio.run(run_all([engine.complete(make_request(i)) for i in range(40)]))
    assert time.monotonic() - started >= 1.0 - 0.05


def test_token_bucket_refills_continuously():
    async def go():
        bucket = TokenBucket(rate_per_s=20, capacity=2)
        started = time.monotonic()
        for _ in range(6):
            await bucket.acquire(1)
        return time.monotonic() - started

    assert asyncio.run(go()) >= (6 - 2) / 20 - 0.01


def test_cache_second_run_makes_no_http_calls(server, tmp_path):
    cache_path = tmp_path / "responses.sqlite"
    first = asyncio.run(process(server.base_url, str(cache_path), 12, max_in_flight=4))
    assert server.generation_count == 12
    server.reset()
    with ResponseCache(cache_path) as cache:
        engine = Engine(backend_for(server), max_in_flight=4, cache=cache)
        second = asyncio.run(run_all([engine.complete(make_request(i), cache_key=key_for(i)) for i in range(12)]))
        assert cache.hits == 12 and cache.misses == 0
    assert server.generation_count == 0
    assert [r.text for r in second] == [r.text for r in first] == [f"answer-{i}" for i in range(12)]
    assert second == first  # latency, tokens, finish reason: all from the cache


def test_cache_keeps_the_first_answer_and_skips_errors(server, tmp_path):
    with ResponseCache(tmp_path / "c.sqlite") as cache:
        assert cache.put("k", ChatResponse(text="first"))
        assert not cache.put("k", ChatResponse(text="second"))  # insert or ignore
        assert cache.get("k").text == "first" and len(cache) == 1
        engine = Engine(backend_for(server), max_in_flight=2, max_retries=0, cache=cache)
        server.enqueue(server_error(500))
        with pytest.raises(TransportError):
            asyncio.run(engine.complete(make_request(5), cache_key=key_for(5)))
        assert key_for(5) not in cache  # errors are never cached
        response = asyncio.run(engine.complete(make_request(5), cache_key=key_for(5)))
        assert cache.get(key_for(5)) == response


def test_duplicate_keys_in_flight_share_one_call(server, tmp_path):
    server.latency_s = 0.1
    with ResponseCache(tmp_path / "c.sqlite") as cache:
        engine = Engine(backend_for(server), max_in_flight=8, cache=cache)
        results = asyncio.run(run_all([engine.complete(make_request(1), cache_key=key_for(1)) for _ in range(5)]))
    assert {r.text for r in results} == {"answer-1"} and server.generation_count == 1


def test_cache_key_covers_every_component():
    base = dict(model="gpt-4o", model_version="2024-08-06", prompt_hash="p", image_hash="i", step="ask",
                sample_index=0, attempt=0, params_key=GenerationParams().key())
    keys = {cache_key(**base)}
    for field, other in [("model", "gpt-4o-mini"), ("model_version", "2024-05-13"), ("prompt_hash", "q"),
                         ("image_hash", "j"), ("step", "follow_up"), ("sample_index", 1), ("attempt", 1),
                         ("params_key", GenerationParams(temperature=0.7).key())]:
        keys.add(cache_key(**{**base, field: other}))
    assert len(keys) == 9 and all(len(k) == 64 for k in keys)
    assert cache_key(**base) == cache_key(**base)
    request = make_request(1)
    assert request_cache_key("m", "v", request) == cache_key(
        model="m", model_version="v", prompt_hash=prompt_hash(request), image_hash=image_hash(request.image_bytes),
        params_key=request.params.key())


def test_kill_and_resume_requests_only_the_missing(server, tmp_path):
    server.latency_s = 0.05
    cache_path = tmp_path / "responses.sqlite"
    def stored_10() -> bool:
        if not cache_path.exists():
            return False
        with ResponseCache(cache_path) as peek:
            return len(peek) >= 10

    kill9_when([str(Path(__file__).resolve()), "--worker", server.base_url, str(cache_path), "40"],
               {"OPENAI_API_KEY": KEY}, REPO_ROOT, stored_10, timeout_s=30, poll_s=0.02)
    with ResponseCache(cache_path) as cache:
        committed = len(cache)
    assert 10 <= committed < 40, committed
    served_before_kill = server.generation_count
    assert served_before_kill >= committed

    server.reset()
    results = asyncio.run(process(server.base_url, str(cache_path), 40))
    assert server.generation_count == 40 - committed  # only the missing ones
    asked = {r.prompt.split(":")[0] for r in server.generation_requests}
    assert len(asked) == 40 - committed
    assert [r.text for r in results] == [f"answer-{i}" for i in range(40)]
    with ResponseCache(cache_path) as cache:
        assert len(cache) == 40


def test_after_kill9_only_the_requests_in_flight_are_asked_again(server, tmp_path):
    # an answer is durable the moment it arrives: of the answers the provider sent before the
    # kill, at most those of the 2 requests in flight are missing from the cache (batched
    # commits lost up to a batch of answers already paid for)
    server.latency_s = 0.01
    cache_path = tmp_path / "responses.sqlite"
    n = 400
    kill9_when([str(Path(__file__).resolve()), "--worker", server.base_url, str(cache_path), str(n)],
               {"OPENAI_API_KEY": KEY}, REPO_ROOT, lambda: server.generation_count >= n // 3)
    server.wait_for_disconnect()  # the dead worker's last requests are answered (to a closed socket)
    answered = set(server.answered)
    with ResponseCache(cache_path) as cache:
        stored = {cache.get(key_for(i)).text for i in range(n) if key_for(i) in cache}
    assert n // 3 <= len(answered) < n
    assert {a.replace("answer-", "item ") for a in stored} <= {p.split(":")[0] for p in answered}
    assert len(answered) - len(stored) <= 2, (len(answered), len(stored))  # max_in_flight of the worker


def test_secrets_never_leak(monkeypatch, tmp_path, caplog):
    sentinel = "sk-SENTINEL-7f3a9c1e5b"
    monkeypatch.setenv("OPENAI_API_KEY", sentinel)
    monkeypatch.setenv("GEMINI_API_KEY", sentinel)
    caplog.set_level(logging.DEBUG)
    from inference.vlm.gemini_backend import GeminiBackend

    errors: list[BaseException] = []
    cache_path = tmp_path / "responses.sqlite"
    with OpenAIServer() as oserver, GeminiServer() as gserver, ResponseCache(cache_path) as cache:
        backends = [(OpenAIChatBackend("gpt-test", base_url=oserver.base_url, timeout_s=0.3), oserver),
                    (OpenAIChatBackend("gpt-test", base_url=oserver.base_url, timeout_s=0.3, sdk_typed_call=True),
                     oserver),
                    (GeminiBackend("gemini-test", base_url=gserver.url, timeout_s=0.3), gserver)]
        for b, (backend, srv) in enumerate(backends):
            engine = Engine(backend, max_in_flight=2, max_retries=1, base_delay_s=0.01, max_delay_s=0.02,
                            cache=cache)
            srv.enqueue(rate_limited("0.01"), server_error(503),         # a 429 is no failed attempt:
                        server_error(502),                                #   two errors, gives up
                        client_error(401, "Incorrect API key provided"),
                        server_error(500), malformed(),                   # gives up
                        hang(5), hang(5),                                 # timeouts, gives up
                        client_error(400, "bad request"),
                        answer("fear"))
            for i in range(6):
                try:
                    asyncio.run(engine.complete(make_request(i), cache_key=f"{b}-{i}"))
                except TransportError as exc:
                    errors.append(exc)
            assert repr(engine).find(sentinel) == -1 and sentinel not in repr(backend)
            received = srv.generation_requests[0].headers
            assert sentinel in (received.get("authorization", "") + received.get("x-goog-api-key", ""))
            assert all(sentinel.encode() not in body for body in srv.responses)  # never echoed
        assert len(cache) == 3  # the three answers
        logging.getLogger("inference").exception("after the errors", exc_info=errors[0])

    assert len(errors) == 15
    for exc in errors:
        text = "".join(traceback.format_exception(exc))
        assert sentinel not in text and sentinel not in repr(exc) and sentinel not in str(exc)
    assert "giving up" in caplog.text
    assert sentinel not in caplog.text
    for record in caplog.records:
        assert sentinel not in str(record.args) and sentinel not in record.getMessage()
    for path in tmp_path.iterdir():  # the database and its WAL
        assert sentinel.encode() not in path.read_bytes()
