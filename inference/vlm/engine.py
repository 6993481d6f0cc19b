"""Runs many chat requests against one backend: bounded concurrency, rate limits, retries,
timeouts and a durable response cache.

    engine = Engine(OpenAIChatBackend("gpt-4o"), max_in_flight=32, requests_per_minute=500,
                    tokens_per_minute=30_000, cache=ResponseCache("data/cache/vlm.sqlite"))
    results = await run_all([engine.complete(r, cache_key=k) for r, k in work], use_tqdm=True)

Per `complete(request, cache_key)`:
1. a cache hit returns the stored `ChatResponse` (no HTTP call, no slot, no rate budget);
   concurrent calls with the same key share one backend call;
2. otherwise it takes one of `max_in_flight` slots (asyncio.Semaphore), waits for any global
   Retry-After pause, then takes one request from the requests-per-minute bucket and the
   request's estimated tokens from the tokens-per-minute bucket (token buckets refilling
   continuously; capacity = `burst_s` seconds of rate, at least one request), and calls the
   backend under `asyncio.wait_for(timeout_s)` (expiry -> TransportError('timeout'));
3. a retryable TransportError (rate_limited, timeout, server_error, bad_response) is retried up
   to `max_retries` times after a full-jitter exponential backoff,
   uniform(0, min(max_delay_s, base_delay_s * 2**n)), and never sooner than the error's
   Retry-After, which also pauses every new request of this engine until it has passed. The
   slot is released while waiting. A non-retryable error (client_error, safety_block) is raised
   at once; after the last retry the last TransportError is raised (`.attempts` says how many
   calls were made);
4. the answer (a `ChatResponse`, refusals included) is committed to the cache; the actual
   token usage, when reported, corrects the token bucket's estimate.

`stats` counts calls, retries, cache hits and errors by kind.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

from inference.vlm.cache import ResponseCache
from inference.vlm.types import ChatBackend, ChatRequest, ChatResponse, TransportError

log = logging.getLogger(__name__)
T = TypeVar("T")


def estimate_tokens(request: ChatRequest, image_tokens: int = 800) -> int:
    """A deliberately high estimate of a request's token cost: ~4 characters per text token,
    `image_tokens` per attached image, plus the full `max_tokens` budget of the answer."""
    chars = sum(len(t.text) for t in request.turns)
    images = image_tokens if any(t.with_image for t in request.turns) else 0
    return chars // 4 + 1 + images + int(request.params.max_tokens)


class TokenBucket:
    """Continuous-refill token bucket: `rate_per_s` tokens per second, at most `capacity`.
    Waiters are served in FIFO order. `debit` may drive the balance negative (a correction
    after the fact), which delays later acquirers."""

    def __init__(self, rate_per_s: float, capacity: float, clock: Callable[[], float] = time.monotonic) -> None:
        if rate_per_s <= 0:
            raise ValueError(f"TokenBucket rate must be > 0, got {rate_per_s}")
        self.rate = float(rate_per_s)
        self.capacity = max(float(capacity), 1e-9)
        self.tokens = self.capacity
        self._clock = clock
        self._updated = clock()
        self._lock: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _refill(self) -> None:
        now = self._clock()
        self.tokens = min(self.capacity, self.tokens + (now - self._updated) * self.rate)
        self._updated = now

    def _get_lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        if self._lock is None or self._loop is not loop:
            self._lock, self._loop = asyncio.Lock(), loop
        return self._lock

    async def acquire(self, amount: float = 1.0) -> None:
        amount = min(float(amount), self.capacity)  # a request bigger than the bucket still runs
        async with self._get_lock():
            while True:
                self._refill()
                if self.tokens >= amount:
                    self.tokens -= amount
                    return
                await asyncio.sleep((amount - self.tokens) / self.rate)

    def debit(self, amount: float) -> None:
        """Take (or, if negative, give back) `amount` without waiting."""
        self._refill()
        self.tokens = min(self.capacity, self.tokens - float(amount))


class Engine:
    """See the module docstring."""

    def __init__(
        self,
        backend: ChatBackend,
        *,
        max_in_flight: int = 8,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        max_retries: int = 6,
        base_delay_s: float = 0.5,
        max_delay_s: float = 30.0,
        timeout_s: float | None = 120.0,
        cache: ResponseCache | None = None,
        burst_s: float = 1.0,
        max_retry_after_s: float = 600.0,
        token_estimator: Callable[[ChatRequest], int] = estimate_tokens,
        rng: random.Random | None = None,
    ) -> None:
        """
        max_in_flight: requests awaiting the backend at once.
        requests_per_minute / tokens_per_minute: provider quotas (None = unlimited).
        max_retries: retries after the first call (so at most max_retries + 1 calls).
        base_delay_s, max_delay_s: full-jitter backoff parameters.
        timeout_s: per call (None = no engine timeout; the backend's own still applies).
        cache: a ResponseCache consulted/stored when `complete` gets a `cache_key`.
        burst_s: bucket capacity in seconds of rate (1.0: at most a second's quota at once).
        max_retry_after_s: a Retry-After longer than this (a daily quota) is not waited out:
            the error is raised at once.
        """
        if max_in_flight < 1:
            raise ValueError(f"Engine: max_in_flight must be >= 1, got {max_in_flight}")
        if max_retries < 0:
            raise ValueError(f"Engine: max_retries must be >= 0, got {max_retries}")
        for label, value in (("requests_per_minute", requests_per_minute), ("tokens_per_minute", tokens_per_minute)):
            if value is not None and value <= 0:
                raise ValueError(f"Engine: {label} must be > 0 or None, got {value}")
        self.backend = backend
        self.max_in_flight = int(max_in_flight)
        self.requests_per_minute = requests_per_minute
        self.tokens_per_minute = tokens_per_minute
        self.max_retries = int(max_retries)
        self.base_delay_s = float(base_delay_s)
        self.max_delay_s = float(max_delay_s)
        self.timeout_s = timeout_s
        self.cache = cache
        self.max_retry_after_s = float(max_retry_after_s)
        self.token_estimator = token_estimator
        self._rng = rng or random.Random()
        self.request_bucket = (
            TokenBucket(requests_per_minute / 60.0, max(1.0, requests_per_minute / 60.0 * burst_s))
            if requests_per_minute else None
        )
        self.token_bucket = (
            TokenBucket(tokens_per_minute / 60.0, max(1.0, tokens_per_minute / 60.0 * burst_s))
            if tokens_per_minute else None
        )
        self.stats: Counter[str] = Counter()
        self._resume_at = 0.0  # monotonic time before which no new call starts (Retry-After)
        self._semaphore: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: dict[str, asyncio.Future[ChatResponse]] = {}

    def __repr__(self) -> str:
        return (f"Engine({self.backend!r}, max_in_flight={self.max_in_flight}, "
                f"requests_per_minute={self.requests_per_minute}, tokens_per_minute={self.tokens_per_minute})")

    def _slots(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if self._semaphore is None or self._loop is not loop:
            self._semaphore, self._loop = asyncio.Semaphore(self.max_in_flight), loop
            self._pending = {}
        return self._semaphore

    def backoff_delay(self, retry_index: int, retry_after: float | None = None) -> float:
        """Full jitter: uniform(0, min(max_delay, base * 2**retry_index)), at least Retry-After."""
        ceiling = min(self.max_delay_s, self.base_delay_s * (2.0 ** retry_index))
        delay = self._rng.uniform(0.0, ceiling)
        if retry_after is not None:
            delay = max(delay, retry_after)
        return delay

    # ------------------------------------------------------------------ public
    async def complete(self, request: ChatRequest, cache_key: str | None = None) -> ChatResponse:
        slots = self._slots()
        if cache_key is not None and self.cache is not None:
            cached = self.cache.get(cache_key)
            if cached is not None:
                self.stats["cache_hits"] += 1
                return cached
            pending = self._pending.get(cache_key)
            if pending is not None:  # the same answer is already being fetched
                self.stats["deduplicated"] += 1
                return await asyncio.shield(pending)
            future: asyncio.Future[ChatResponse] = asyncio.get_running_loop().create_future()
            self._pending[cache_key] = future
            try:
                response = await self._complete_with_retries(request, slots)
                self.cache.put(cache_key, response)
                future.set_result(response)
                return response
            except Exception as exc:
                future.set_exception(exc)
                future.exception()  # retrieved: no "never retrieved" warning without sharers
                raise
            except BaseException:  # cancelled
                future.cancel()
                raise
            finally:
                self._pending.pop(cache_key, None)
        return await self._complete_with_retries(request, slots)

    # ------------------------------------------------------------------ internals
    async def _wait_for_pause(self) -> None:
        while True:
            remaining = self._resume_at - time.monotonic()
            if remaining <= 0:
                return
            await asyncio.sleep(remaining)

    async def _call_once(self, request: ChatRequest, estimate: int) -> ChatResponse:
        await self._wait_for_pause()
        if self.request_bucket is not None:
            await self.request_bucket.acquire(1)
        if self.token_bucket is not None:
            await self.token_bucket.acquire(estimate)
        self.stats["calls"] += 1
        try:
            if self.timeout_s is None:
                response = await self.backend.complete(request)
            else:
                response = await asyncio.wait_for(self.backend.complete(request), self.timeout_s)
        except asyncio.TimeoutError:
            raise TransportError("timeout", f"{getattr(self.backend, 'name', 'backend')}: no answer within "
                                 f"{self.timeout_s:g} s (engine timeout)") from None
        if self.token_bucket is not None and response.input_tokens is not None:
            actual = response.input_tokens + (response.output_tokens or 0)
            self.token_bucket.debit(actual - min(estimate, self.token_bucket.capacity))
        return response

    async def _complete_with_retries(self, request: ChatRequest, slots: asyncio.Semaphore) -> ChatResponse:
        estimate = self.token_estimator(request) if self.token_bucket is not None else 0
        attempt = 0
        while True:
            attempt += 1
            async with slots:
                try:
                    response = await self._call_once(request, estimate)
                except TransportError as exc:
                    error = exc
                else:
                    self.stats["answers"] += 1
                    return response
            self.stats[f"error:{error.kind}"] += 1
            error.attempts = attempt  # type: ignore[attr-defined]
            if not error.retryable:
                raise error
            if error.retry_after is not None and error.retry_after > self.max_retry_after_s:
                log.warning("%s: Retry-After %.0f s exceeds max_retry_after_s=%.0f; giving up",
                            getattr(self.backend, "name", "backend"), error.retry_after, self.max_retry_after_s)
                raise error
            if attempt > self.max_retries:
                self.stats["gave_up"] += 1
                log.warning("%s: giving up after %d attempts: %s",
                            getattr(self.backend, "name", "backend"), attempt, error)
                raise error
            if error.retry_after is not None:
                self._resume_at = max(self._resume_at, time.monotonic() + error.retry_after)
            delay = self.backoff_delay(attempt - 1, error.retry_after)
            self.stats["retries"] += 1
            log.info("%s: %s; retry %d/%d in %.2f s", getattr(self.backend, "name", "backend"),
                     error, attempt, self.max_retries, delay)
            await asyncio.sleep(delay)


async def run_all(
    coros: Iterable[Awaitable[T]],
    *,
    progress: Callable[[int, int], Any] | None = None,
    use_tqdm: bool = False,
    desc: str | None = None,
    return_exceptions: bool = True,
) -> list[T | BaseException]:
    """Await all `coros` concurrently (the engine bounds the real concurrency); results in input
    order. `progress(done, total)` is called as each finishes; `use_tqdm` shows a progress bar.
    With `return_exceptions` (default) a failure is returned in its slot instead of cancelling
    the rest; otherwise the first failure is raised after cancelling the others."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    total = len(tasks)
    bar = None
    if use_tqdm:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc=desc, unit="req")
    done = 0
    try:
        for finished in asyncio.as_completed(tasks):
            try:
                await finished
            except Exception:
                if not return_exceptions:
                    raise
            done += 1
            if bar is not None:
                bar.update(1)
            if progress is not None:
                progress(done, total)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    finally:
        if bar is not None:
            bar.close()
    results: list[T | BaseException] = []
    for task in tasks:
        exc = task.exception()
        results.append(exc if exc is not None else task.result())
    return results
