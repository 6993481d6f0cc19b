"""The adaptive window and the shared per-provider budget, with the real clients over real HTTP
against the loopback servers acting as providers (server-enforced limits, 429 + Retry-After,
random faults; nothing patched). Assertions are on server-counted requests and ordering, not
on wall time.

Run as a script (`python tests/test_vlm_limiter.py --worker URL CACHE N`) it is the worker of
the kill-and-resume test under mixed faults.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if __name__ == "__main__":  # the kill-and-resume worker
    sys.path.insert(0, str(REPO_ROOT))

from inference.vlm.cache import ResponseCache  # noqa: E402
from inference.vlm.engine import Engine, limit_key, run_all  # noqa: E402
from inference.vlm.openai_backend import OpenAIChatBackend  # noqa: E402
from inference.vlm.types import ChatRequest, GenerationParams, Turn  # noqa: E402

KEY = "sk-test-limiter-0123456789"
IMAGE = b"\xff\xd8\xff\xe0limiter-jpeg\xff\xd9"


def make_request(i: int) -> ChatRequest:
    return ChatRequest(turns=(Turn("user", f"item {i}: which emotion?", with_image=True),),
                       image_bytes=IMAGE, image_mime="image/jpeg", params=GenerationParams(max_tokens=8))


def prompt(i: int) -> str:
    return make_request(i).turns[0].text


async def resumable_run(url: str, cache_path: str, n: int, timeout_s: float) -> list:
    backend = OpenAIChatBackend("gpt-test", base_url=url, timeout_s=10)
    with ResponseCache(cache_path) as cache:
        engine = Engine(backend, max_in_flight=8, cache=cache, timeout_s=timeout_s, max_retries=20,
                        base_delay_s=0.01, max_delay_s=0.05)
        return await run_all([engine.complete(make_request(i), cache_key=f"k{i}") for i in range(n)])


if __name__ == "__main__" and len(sys.argv) == 5 and sys.argv[1] == "--worker":
    asyncio.run(resumable_run(sys.argv[2], sys.argv[3], int(sys.argv[4]), timeout_s=0.5))
    sys.exit(0)

import pytest  # noqa: E402

from inference.config import ModelConfig  # noqa: E402
from inference.vlm.gemini_backend import GeminiBackend  # noqa: E402
from inference.vlm.limiter import AdaptiveLimiter, provider_key  # noqa: E402
from inference.vlm.window_plot import plot_window  # noqa: E402
from inference.vlm.run_tags import PROVIDER_TAG, provider_run_tags, provider_tag  # noqa: E402
from support.gemini_server import GeminiServer  # noqa: E402
from support.kill_worker import kill9_when  # noqa: E402
from support.openai_server import OpenAIServer, Provider, rate_limited  # noqa: E402


def echo_item(recorded) -> str:
    return recorded.prompt.split(":")[0].replace("item ", "answer-")


@pytest.fixture(params=["openai", "gemini"])
def provider(request, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    if request.param == "openai":
        with OpenAIServer(latency_s=0.03) as server:
            server.answer_fn = echo_item
            yield server, (lambda: OpenAIChatBackend("gpt-test", base_url=server.base_url, timeout_s=10))
    else:
        with GeminiServer(latency_s=0.03) as server:
            server.answer_fn = echo_item
            yield server, (lambda: GeminiBackend("gemini-test", base_url=server.url, timeout_s=10))


def test_window_shrinks_on_429_and_recovers(provider, tmp_path):
    server, make_backend = provider
    # the provider admits 6 requests at once and answers 429 + retry-after-ms past it
    server.provider = Provider(max_concurrency=6, retry_after=None, retry_after_ms="30")
    engine = Engine(make_backend(), max_in_flight=24, base_delay_s=0.01, max_delay_s=0.02, max_retries=30)
    first = asyncio.run(run_all([engine.complete(make_request(i)) for i in range(150)]))
    assert [r.text for r in first] == [f"answer-{i}" for i in range(150)]
    limited = engine.concurrency_report()
    assert limited["rate_limited_rounds"] >= 1
    # it shrank below max_in_flight at once, and paces calls below what 24 at once would send
    assert limited["min_window_seen"] <= 16
    assert limited["pace_per_s"] is not None and limited["pace_per_s"] < 24 / limited["latency_s"]
    throttled = server.outcomes["rate_limited"]

    server.provider = None  # the quota is lifted: full windows without 429s grow it back
    second = asyncio.run(run_all([engine.complete(make_request(i)) for i in range(400)]))
    assert all(not isinstance(r, BaseException) for r in second)
    recovered = engine.concurrency_report()
    assert recovered["window"] >= 24 and recovered["pace_per_s"] is None  # the pace dropped
    assert server.outcomes["rate_limited"] == throttled and server.max_concurrent > 6
    events = [h["event"] for h in recovered["history"]]
    assert "rate_limited" in events and events[-1] == "grow"
    png = plot_window(recovered, tmp_path / "window.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_quota_costs_few_429s_once_the_window_has_found_it(monkeypatch):
    # with a fixed window every request past the provider's concurrency gets a 429 again after
    # each short Retry-After; the adaptive window holds near the quota, so far fewer are refused
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    refused = {}
    for adaptive in (False, True):
        with OpenAIServer(latency_s=0.1) as server:
            server.answer_fn = echo_item
            server.provider = Provider(max_concurrency=4, retry_after=None, retry_after_ms="100")
            backend = OpenAIChatBackend("gpt-test", base_url=server.base_url, timeout_s=10)
            engine = Engine(backend, max_in_flight=32, adaptive=adaptive, max_retries=10_000,
                            base_delay_s=0.01, max_delay_s=0.01)
            results = asyncio.run(run_all([engine.complete(make_request(i)) for i in range(120)]))
            assert [r.text for r in results] == [f"answer-{i}" for i in range(120)]
            assert server.answered == {prompt(i): 1 for i in range(120)}
            refused[adaptive] = server.outcomes["rate_limited"]
    assert refused[True] * 3 < refused[False], refused


def test_retry_after_is_honoured_per_request(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with OpenAIServer(latency_s=0.02) as server:
        server.answer_fn = echo_item
        server.enqueue(rate_limited(retry_after="1"))  # the first request to arrive
        engine = Engine(OpenAIChatBackend("gpt-test", base_url=server.base_url, timeout_s=10), max_in_flight=4)

        async def go():
            first = asyncio.ensure_future(engine.complete(make_request(0)))
            while server.generation_count == 0:
                await asyncio.sleep(0.005)
            others = await run_all([engine.complete(make_request(i)) for i in range(1, 41)])
            return await first, others

        first, others = asyncio.run(go())
    assert first.text == "answer-0" and [r.text for r in others] == [f"answer-{i}" for i in range(1, 41)]
    order = [r.prompt for r in server.generation_requests]
    assert order[0] == prompt(0) and order[-1] == prompt(0)  # its retry came last ...
    assert len(order) == 42  # ... after all 40 others were served meanwhile
    throttled, retried = server.generation_requests[0], server.generation_requests[-1]
    assert retried.started - throttled.started >= 1.0  # and not before its Retry-After


def _evaluate_in_thread(backend_factory, items: range, shared: bool, errors: list) -> None:
    async def go():
        backend = backend_factory()
        engine = Engine(backend, max_in_flight=6, shared_key=limit_key(backend) if shared else None)
        results = await run_all([engine.complete(make_request(i)) for i in items])
        assert [r.text for r in results] == [f"answer-{i}" for i in items]

    try:
        asyncio.run(go())
    except BaseException as exc:  # noqa: BLE001 - reported by the test
        errors.append(exc)


@pytest.mark.parametrize("shared", [True, False])
def test_two_concurrent_evaluations_share_one_provider_budget(monkeypatch, shared):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with OpenAIServer(latency_s=0.03) as server:
        server.answer_fn = echo_item
        # each evaluation on its own thread and event loop, as two partitions in one process;
        # a fresh base URL per test run keeps the process-wide registry entry private to it
        factory = lambda: OpenAIChatBackend("gpt-test", base_url=server.base_url, timeout_s=10)  # noqa: E731
        errors: list = []
        threads = [threading.Thread(target=_evaluate_in_thread, args=(factory, items, shared, errors))
                   for items in (range(0, 60), range(60, 120))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert not errors, errors
        assert server.generation_count == 120
        if shared:
            assert server.max_concurrent <= 6  # one budget of 6 for both
        else:
            assert server.max_concurrent > 6  # the control: separate limiters each take 6


def test_limiter_keys_and_run_tags():
    assert provider_key("openai", "http://h:1/v1/", "K", "m") == "openai|http://h:1/v1|K|m"
    assert provider_key("openai", None, "K", "m") != provider_key("openai", None, "OTHER_K", "m")
    assert provider_tag("openai", None, "OPENAI_API_KEY") == "openai.default.OPENAI_API_KEY"
    assert provider_tag("openai", "http://localhost:8000/v1", None) == "openai.localhost_8000.nokey"
    remote = ModelConfig(name="g", kind="gemini", version="gemini-2.0-flash-001", options={})
    assert provider_run_tags(remote) == {PROVIDER_TAG: "gemini.default.GEMINI_API_KEY"}
    local = ModelConfig(name="x", kind="fer_xception", version="v1", options={})
    assert provider_run_tags(local) == {}
    with pytest.raises(ValueError, match="max_in_flight"):
        AdaptiveLimiter("k", 0)


def test_nothing_lost_or_stored_twice_under_faults_and_kill9(monkeypatch, tmp_path):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    n = 60
    cache_path = tmp_path / "responses.sqlite"
    with OpenAIServer(latency_s=0.02) as server:
        server.answer_fn = echo_item
        # 30 % of calls fail: 429 (retry-after-ms), 503, hangs past the engine timeout, garbage
        server.provider = Provider(p_rate_limited=0.1, p_server_error=0.08, p_hang=0.04, p_garbage=0.08,
                                   retry_after=None, retry_after_ms="20", hang_s=5, seed=7)
        def stored_a_third() -> bool:
            if not cache_path.exists():
                return False
            with ResponseCache(cache_path) as peek:
                return len(peek) >= n // 3

        kill9_when([str(Path(__file__).resolve()), "--worker", server.base_url, str(cache_path), str(n)],
                   {"OPENAI_API_KEY": KEY}, REPO_ROOT, stored_a_third, poll_s=0.02)
        with ResponseCache(cache_path) as cache:
            committed = cache.keys()
        assert n // 3 <= len(committed) < n, len(committed)
        # the dead worker's last requests are still being answered (to a closed socket): let them
        # finish before counting afresh, or they count as the resumed run's (see wait_for_disconnect)
        server.wait_for_disconnect()
        answered_before = set(server.answered)
        assert {prompt(int(k[1:])) for k in committed} <= answered_before  # only answers are stored

        server.reset()
        # a timeout is a legitimate resend (the provider may have answered a request the client
        # gave up on): the resumed run's timeout is long against the 20 ms latency, so that a
        # stall of this shared machine is not one, and still short of the 5 s hangs
        results = asyncio.run(resumable_run(server.base_url, str(cache_path), n, timeout_s=1.5))
        assert [r.text for r in results] == [f"answer-{i}" for i in range(n)]
        asked_again = set(server.answered)
        assert not asked_again & {prompt(int(k[1:])) for k in committed}  # nothing stored is asked again
        assert not server.lost([prompt(i) for i in range(n) if f"k{i}" not in committed])
        assert not server.duplicates()  # within the resumed run, every answer was asked for once
        assert sum(server.outcomes[k] for k in ("rate_limited", "error", "hang", "malformed")) > 0
    with ResponseCache(cache_path) as cache:
        assert len(cache) == n and cache.keys() == {f"k{i}" for i in range(n)}  # one row per key
        assert [cache.get(f"k{i}").text for i in range(n)] == [f"answer-{i}" for i in range(n)]
