"""Runs many chat requests against one backend: an adaptive concurrency window per provider,
hard caps, retries, timeouts and a durable response cache.

    engine = Engine(OpenAIChatBackend("gpt-4o"), max_in_flight=64, requests_per_minute=500,
                    tokens_per_minute=30_000, cache=ResponseCache("data/cache/vlm.sqlite"),
                    shared_key=limit_key(backend))      # one budget per provider in this process
    results = await run_all([engine.complete(r, cache_key=k) for r, k in work], use_tqdm=True)
    engine.concurrency_report()   # the window over time: run metadata (see window_plot.plot_window)

Per `complete(request, cache_key)`:
1. a cache hit returns the stored `ChatResponse` (no HTTP call, no slot, no rate budget);
   concurrent calls with the same key share one backend call;
2. otherwise the request takes a ticket of the adaptive window (`inference.vlm.limiter`: a 429
   shrinks the window of that provider and model to what it sustained, clean full rounds grow
   it) and keeps it through its retries; each call takes a call slot (at most `max_in_flight`)
   and the request's share of the rpm / tpm buckets (hard caps) and -- once the provider
   reported it with an answer or a 429 (OpenAI's x-ratelimit-* headers) -- of the provider's
   own budget, so calls are paced to it before any 429 (`inference.vlm.budget`), and runs under
   `asyncio.timeout(timeout_s)` (expiry -> TransportError('timeout'));
3. the retry policy lives in `_retrying` (tenacity): a retryable TransportError is retried
   after a full-jitter exponential backoff, uniform(0, min(max_delay_s, base_delay_s * 2**n))
   -- or, when the error has a Retry-After / retry-after-ms, that wait plus a jitter of at most
   a quarter of it, honoured by that request alone: the other requests go on. Errors and
   timeouts (timeout, server_error, bad_response) use up the request's `max_retries`; a wait
   imposed by a rate limit (429 / RESOURCE_EXHAUSTED) does not: the provider said "later", not
   "no", so it is retried until the run's deadline (`deadline_s`, counted from the engine's
   first request on its event loop). A request still unanswered then -- waiting for its first
   call, or for its next retry -- raises TransportError('deadline') naming its last error: it
   is stored as unanswered, never cached, and the next run asks only such requests. A
   non-retryable error (client_error, safety_block), or a Retry-After longer than
   `max_retry_after_s` (a daily quota), is raised at once; after the last retry the last
   TransportError is raised (`.attempts` says how many calls were made);
4. the answer (a `ChatResponse`, refusals included) is handed to the cache (committed at once:
   durable the moment it arrives, unless the cache batches);
   the actual token usage, when reported, corrects the token bucket's estimate.

`stats` counts calls, retries, cache hits and errors by kind.
"""

from __future__ import annotations

import asyncio
import logging
import random
import sqlite3
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception

from inference.vlm.cache import ResponseCache
from inference.vlm.buckets import TokenBucket
from inference.vlm.limiter import AdaptiveLimiter, shared_limiter
from inference.vlm.types import DEFAULT_DEADLINE_S, ChatBackend, ChatRequest, ChatResponse, TransportError

log = logging.getLogger(__name__)
T = TypeVar("T")
__all__ = ["Engine", "TokenBucket", "estimate_tokens", "limit_key", "run_all"]


def estimate_tokens(request: ChatRequest, image_tokens: int = 800) -> int:
    """A deliberately high estimate of a request's token cost: ~4 characters per text token,
    `image_tokens` per attached image, plus the full `max_tokens` budget of the answer."""
    chars = sum(len(t.text) for t in request.turns)
    images = image_tokens if any(t.with_image for t in request.turns) else 0
    return chars // 4 + 1 + images + int(request.params.max_tokens)


def limit_key(backend: Any) -> str:
    """The shared-limiter key of a backend: its `limit_key` (provider, endpoint, account, model)
    when it has one, else its name (a local backend is its own provider)."""
    key = getattr(backend, "limit_key", None)
    return key if isinstance(key, str) else f"local|{getattr(backend, 'name', type(backend).__name__)}"


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, TransportError) and exc.retryable


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
        deadline_s: float | None = DEFAULT_DEADLINE_S,
        token_estimator: Callable[[ChatRequest], int] = estimate_tokens,
        rng: random.Random | None = None,
        adaptive: bool = True,
        shared_key: str | None = None,
        limiter: AdaptiveLimiter | None = None,
    ) -> None:
        """
        max_in_flight: HTTP calls at once (hard cap; the adaptive window works below it).
        requests_per_minute / tokens_per_minute: provider quotas, hard caps (None = unlimited).
        max_retries: retries after the first call (so at most max_retries + 1 calls).
        base_delay_s, max_delay_s: full-jitter backoff parameters.
        timeout_s: per call (None = no engine timeout; the backend's own still applies).
        cache: a ResponseCache consulted/stored when `complete` gets a `cache_key`.
        burst_s: bucket capacity in seconds of rate (1.0: at most a second's quota at once).
        max_retry_after_s: a Retry-After longer than this (a daily quota) is not waited out:
            the error is raised at once.
        deadline_s: the run's total time from its first request (None = none): what is still
            unanswered then raises TransportError('deadline').
        adaptive: False = a fixed window of max_in_flight (429s shrink nothing).
        shared_key: share one limiter (window and hard caps) with every engine of this process
            that names the same key (`limit_key(backend)`); None = a private limiter.
        limiter: an explicit limiter (overrides the two above).
        """
        if max_in_flight < 1:
            raise ValueError(f"Engine: max_in_flight must be >= 1, got {max_in_flight}")
        if max_retries < 0:
            raise ValueError(f"Engine: max_retries must be >= 0, got {max_retries}")
        if deadline_s is not None and deadline_s <= 0:
            raise ValueError(f"Engine: deadline_s must be > 0 or None, got {deadline_s}")
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
        self.deadline_s = deadline_s
        self._deadline_at: float | None = None  # loop time, set by the first request on a loop
        self.token_estimator = token_estimator
        self._rng = rng or random.Random()
        caps = dict(max_in_flight=self.max_in_flight, requests_per_minute=requests_per_minute,
                    tokens_per_minute=tokens_per_minute)
        if limiter is not None:
            self.limiter = limiter
        elif shared_key is not None:
            self.limiter = shared_limiter(shared_key, **caps, adaptive=adaptive, burst_s=burst_s)
        else:
            self.limiter = AdaptiveLimiter(limit_key(backend), **caps, adaptive=adaptive, burst_s=burst_s)
        self.stats: Counter[str] = Counter()
        self._name = getattr(backend, "name", "backend")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: dict[str, asyncio.Future[ChatResponse]] = {}
        self._flush_timer: asyncio.TimerHandle | None = None
        self._retrying = AsyncRetrying(stop=self._stop, wait=self._wait, retry=retry_if_exception(_retryable),
                                       before_sleep=self._before_sleep, reraise=True)

    def __repr__(self) -> str:
        return (f"Engine({self.backend!r}, max_in_flight={self.max_in_flight}, "
                f"requests_per_minute={self.requests_per_minute}, tokens_per_minute={self.tokens_per_minute})")

    @property
    def request_bucket(self) -> TokenBucket | None:
        return self.limiter.request_bucket

    @property
    def token_bucket(self) -> TokenBucket | None:
        return self.limiter.token_bucket

    def concurrency_report(self) -> dict[str, Any]:
        """The limiter's window over time (run metadata; `window_plot.plot_window` draws it)."""
        return self.limiter.report()

    # ------------------------------------------------------------------ retry policy
    def backoff_delay(self, retry_index: int, retry_after: float | None = None) -> float:
        """Full jitter: uniform(0, min(max_delay, base * 2**retry_index)); after a Retry-After,
        a jitter of at most a quarter of it *on top of* it: never sooner than the server asked,
        and the requests a quota refused together do not all come back in the same instant (a
        herd that the quota refuses again)."""
        ceiling = min(self.max_delay_s, self.base_delay_s * (2.0 ** retry_index))
        if retry_after is None:
            return self._rng.uniform(0.0, ceiling)
        return retry_after + self._rng.uniform(0.0, min(ceiling, 0.25 * retry_after))

    def _wait(self, state: RetryCallState) -> float:
        """The wait before the next call (tenacity asks before `_stop`). A rate-limited call is
        no failed attempt: it counts on its own, for its backoff only."""
        error = state.outcome.exception() if state.outcome is not None else None
        if getattr(error, "kind", None) == "rate_limited":
            index = state.rate_limited_calls = getattr(state, "rate_limited_calls", 0) + 1  # type: ignore[attr-defined]
        else:
            index = state.failed_calls = getattr(state, "failed_calls", 0) + 1  # type: ignore[attr-defined]
        return self.backoff_delay(index - 1, getattr(error, "retry_after", None))

    def _stop(self, state: RetryCallState) -> bool:
        """Give up after max_retries failed calls (rate-limited ones not counted), on a
        Retry-After beyond max_retry_after_s, or when the next call would start past the deadline."""
        error = state.outcome.exception() if state.outcome is not None else None
        retry_after = getattr(error, "retry_after", None)
        if getattr(state, "failed_calls", 0) > self.max_retries or (
                retry_after is not None and retry_after > self.max_retry_after_s):
            return True
        if self._deadline_at is not None and self._loop is not None and \
                self._loop.time() + (state.upcoming_sleep or 0.0) >= self._deadline_at:
            error.deadline_passed = True  # type: ignore[union-attr]
            return True
        return False

    def _before_sleep(self, state: RetryCallState) -> None:
        self.stats["retries"] += 1
        error = state.outcome.exception() if state.outcome is not None else None
        log.info("%s: %s; retry %d/%d in %.2f s", self._name, error, state.attempt_number,
                 self.max_retries, state.upcoming_sleep)

    def _gave_up(self, error: TransportError) -> None:
        if not error.retryable or getattr(error, "deadline_passed", False):
            return
        if error.retry_after is not None and error.retry_after > self.max_retry_after_s:
            log.warning("%s: Retry-After %.0f s exceeds max_retry_after_s=%.0f; giving up",
                        self._name, error.retry_after, self.max_retry_after_s)
            return
        self.stats["gave_up"] += 1
        log.warning("%s: giving up after %d attempts: %s", self._name, getattr(error, "attempts", 0), error)

    # ------------------------------------------------------------------ public
    async def complete(self, request: ChatRequest, cache_key: str | None = None) -> ChatResponse:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop, self._pending, self._flush_timer = loop, {}, None
            self._deadline_at = None if self.deadline_s is None else loop.time() + self.deadline_s
            prepare = getattr(self.backend, "prepare", None)
            if prepare is not None:  # client set-up is not the provider's latency
                prepare()
        if cache_key is None or self.cache is None:
            return await self._complete_with_retries(request)
        cached = self.cache.get(cache_key)
        if cached is not None:
            self.stats["cache_hits"] += 1
            return cached
        pending = self._pending.get(cache_key)
        if pending is not None:  # the same answer is already being fetched
            self.stats["deduplicated"] += 1
            return await asyncio.shield(pending)
        future: asyncio.Future[ChatResponse] = loop.create_future()
        self._pending[cache_key] = future
        try:
            response = await self._complete_with_retries(request)
            self.cache.put(cache_key, response)
            self._schedule_flush(loop)
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

    # ------------------------------------------------------------------ internals
    def _schedule_flush(self, loop: asyncio.AbstractEventLoop) -> None:
        """Commit the cache's batch within its flush_s even if no further answer arrives."""
        if self._flush_timer is None and self.cache is not None:
            self._flush_timer = loop.call_later(getattr(self.cache, "flush_s", 0.0), self._timed_flush)

    def _timed_flush(self) -> None:
        self._flush_timer = None
        try:
            self.cache.flush()  # type: ignore[union-attr]
        except sqlite3.ProgrammingError:  # closed meanwhile: close() has flushed
            pass

    async def _call_once(self, request: ChatRequest, estimate: int, attempt: int) -> ChatResponse:
        mark = None
        try:
            async with self.limiter.call(estimate) as mark:
                self.stats["calls"] += 1
                started = time.monotonic()
                try:  # asyncio.timeout, unlike wait_for, runs the call without a task of its own
                    async with asyncio.timeout(self.timeout_s):
                        response = await self.backend.complete(request)
                except TimeoutError:
                    raise TransportError("timeout", f"{self._name}: no answer within "
                                         f"{self.timeout_s:g} s (engine timeout)") from None
        except TransportError as error:
            self.stats[f"error:{error.kind}"] += 1
            error.attempts = attempt  # type: ignore[attr-defined]
            if error.budget is not None and mark is not None:
                self.limiter.observe_budget(error.budget, mark)
            self.limiter.record(error.kind)
            raise
        self.limiter.record("answer", time.monotonic() - started)
        if response.budget is not None:
            self.limiter.observe_budget(response.budget, mark)
        self.stats["answers"] += 1
        bucket = self.limiter.token_bucket
        if bucket is not None and response.input_tokens is not None:
            actual = response.input_tokens + (response.output_tokens or 0)
            bucket.debit(actual - min(estimate, bucket.capacity))
        return response

    async def _complete_with_retries(self, request: ChatRequest) -> ChatResponse:
        estimate = self.token_estimator(request)  # for the tpm cap and a provider's token budget
        await self._before_deadline(self.limiter.take_ticket(), "waiting for its first call")
        try:
            async for attempt in self._retrying.copy():
                with attempt:
                    if attempt.retry_state.attempt_number > 1:
                        await self._before_deadline(self.limiter.readmit(), "waiting to be readmitted")
                    return await self._call_once(request, estimate, attempt.retry_state.attempt_number)
        except TransportError as error:
            self._gave_up(error)
            if getattr(error, "deadline_passed", False):
                raise self._unanswered(f"its last call failed: {error}", getattr(error, "attempts", 0)) from None
            raise
        finally:
            self.limiter.release_ticket()
        raise AssertionError("unreachable: tenacity either returns or raises")

    async def _before_deadline(self, waiting: Awaitable[None], what: str) -> None:
        """Await `waiting` (a limiter queue) until the run's deadline at most."""
        if self._deadline_at is None:
            await waiting
            return
        try:
            async with asyncio.timeout_at(self._deadline_at):
                await waiting
        except TimeoutError:
            raise self._unanswered(f"still {what}", 0) from None

    def _unanswered(self, why: str, attempts: int) -> TransportError:
        self.stats["unanswered_at_deadline"] += 1
        error = TransportError("deadline", f"{self._name}: no answer within the run's deadline "
                               f"(deadline_s={self.deadline_s:g}); {why}")
        error.attempts = attempts  # type: ignore[attr-defined]
        return error


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
