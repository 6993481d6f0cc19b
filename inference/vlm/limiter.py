"""How many requests one provider gets at once: an adaptive window per (provider, endpoint,
account, model), hard caps (in flight, requests and tokens per minute), shared in a process.

    limiter = shared_limiter(provider_key("openai", None, "OPENAI_API_KEY", "gpt-4o"), max_in_flight=256)
    async with limiter.ticket():                 # the adaptive window: owned requests
        async with limiter.call(tokens=900):      # hard caps: in flight, rpm, tpm
            ...                                   # one HTTP call
        limiter.record(kind, latency_s)           # 'answer', 'rate_limited' or another error kind

The controller (how the window and the pace follow the provider's answers) is
`inference.vlm.window_control.WindowControl`, this class's base.
A request owns a *ticket* from its first call until its final outcome, so a request waiting
out a Retry-After still counts against the window (releasing its slot would turn every 429 into
a fresh request at once: a 429 storm against a real quota); each HTTP call also takes a *call*
slot (at most `max_in_flight`, the hard cap) and the rpm/tpm budget.
Before a retry, a request whose ticket lies outside a window that shrank meanwhile gives it
back and queues at the head (`readmit`), so retries cannot hold more than the window.
A provider that reports its budget (OpenAI's x-ratelimit-* headers, `observe_budget`) is
mirrored (`inference.vlm.budget.BudgetMirror`): every call then also waits for a request (and
its estimated tokens) of that budget, so it is paced to the provider's refill before any 429.

Thread-safe: two partitions evaluated at once in one process run on separate event loops
(threads); waiters are futures woken on their own loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from inference.vlm.budget import BudgetMirror, RateBudget
from inference.vlm.buckets import TokenBucket
from inference.vlm.window_control import COLD_SETUP_S, SLOW_START_WINDOW, WindowControl, _Round

log = logging.getLogger(__name__)
HISTORY_LIMIT = 5000
def provider_key(provider: str, endpoint: str | None, account: str | None, model: str) -> str:
    """The identity whose quota is shared: provider kind, endpoint (None = the provider's
    default), account (the *name* of the key's environment variable, never the key) and model."""
    return f"{provider}|{(endpoint or 'default').rstrip('/')}|{account or '-'}|{model}"


@dataclass
class _Waiter:
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[None]
    granted: bool = False


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


@dataclass(eq=False)  # identity semantics (and hashable, for the weak registry)
class AdaptiveLimiter(WindowControl):
    """See the module docstring."""

    key: str
    max_in_flight: int
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    adaptive: bool = True
    initial_window: float | None = None  # default: SLOW_START_WINDOW, at most max_in_flight
    min_window: float = 1.0
    headroom: float = 0.25
    probe_gain: float = 0.025  # a paced window's pace rises by this after a round without 429s,
    #                            doubling with each further clean round (at most the headroom)
    backoff: float = 0.05  # after 429s at a pace, it is set this much under the admitted rate
    min_round_s: float = 0.02
    pace_burst_s: float = 0.05  # calls started at once under a pace: 50 ms worth
    burst_s: float = 1.0
    clock: Callable[[], float] = time.monotonic
    window: float = field(init=False)
    owned: int = field(init=False, default=0)
    active: int = field(init=False, default=0)
    history: deque = field(init=False)

    def __post_init__(self) -> None:
        if self.max_in_flight < 1:
            raise ValueError(f"{self.key}: max_in_flight must be >= 1, got {self.max_in_flight}")
        for label, value in (("requests_per_minute", self.requests_per_minute),
                             ("tokens_per_minute", self.tokens_per_minute)):
            if value is not None and value <= 0:
                raise ValueError(f"{self.key}: {label} must be > 0 or None, got {value}")
        self._lock = threading.Lock()
        self._ticket_waiters: deque[_Waiter] = deque()
        self._call_waiters: deque[_Waiter] = deque()
        self.pace: TokenBucket | None = None  # set while a quota refuses more than the tolerance
        self.request_bucket = self._bucket(self.requests_per_minute)
        self.token_bucket = self._bucket(self.tokens_per_minute)
        # the provider's buckets as its budget headers report them (inert until a report)
        self.request_budget = BudgetMirror("requests", self.clock)
        self.token_budget = BudgetMirror("tokens", self.clock)
        start = self.initial_window or (SLOW_START_WINDOW if self.adaptive else self.max_in_flight)
        self.window = float(min(start, self.max_in_flight))
        self.slow_start = self.adaptive  # +1 per answer until the first rate-limited round
        self._unpaced_window: float | None = None  # the window before a 429 round paced it
        self._paced_to_admitted = False  # the last round set the pace to the admitted rate
        self._clean_rounds = 0  # paced rounds without 429s in a row
        self.window = min(max(self.window, self.min_window), self.max_window)
        self.latency_s: float | None = None
        self.fastest_answer_s: float | None = None
        self._first_answer_at: float | None = None
        self.min_window_seen = self.window
        self.rate_limited_rounds = 0
        self._t0 = self.clock()
        self._round = _Round(self._t0)
        self.history = deque(maxlen=HISTORY_LIMIT)
        self._note("start", 0.0)

    def _bucket(self, per_minute: float | None) -> TokenBucket | None:
        if not per_minute:
            return None
        return TokenBucket(per_minute / 60.0, max(1.0, per_minute / 60.0 * self.burst_s), self.clock)

    def tighten(self, max_in_flight: int, requests_per_minute: float | None,
                tokens_per_minute: float | None) -> None:
        """A second engine on the same key: the stricter of each hard cap wins."""
        with self._lock:
            self.max_in_flight = min(self.max_in_flight, int(max_in_flight))
            self.window = min(self.window, self.max_window)
            for attr, bucket_attr, value in (("requests_per_minute", "request_bucket", requests_per_minute),
                                             ("tokens_per_minute", "token_bucket", tokens_per_minute)):
                current = getattr(self, attr)
                if value is not None and (current is None or value < current):
                    setattr(self, attr, value)
                    setattr(self, bucket_attr, self._bucket(value))

    # ------------------------------------------------------------------ slots
    def _can_ticket(self) -> bool:
        return self.owned < max(1, math.floor(self.window))

    def _grant(self, waiter: _Waiter) -> None:
        waiter.granted = True
        try:
            same_loop = asyncio.get_running_loop() is waiter.loop
        except RuntimeError:
            same_loop = False
        if same_loop:
            _wake(waiter.future)
        elif not waiter.loop.is_closed():
            waiter.loop.call_soon_threadsafe(_wake, waiter.future)

    def _dispatch(self) -> None:
        """Hand free slots to waiters: calls of owned requests first (they are retries), then
        new tickets. Under the lock."""
        while self._call_waiters and self.active < self.max_in_flight:
            self.active += 1
            self._round.peak_active = max(self._round.peak_active, self.active)
            self._grant(self._call_waiters.popleft())
        while self._ticket_waiters and self._can_ticket():
            self.owned += 1
            self._round.peak_owned = max(self._round.peak_owned, self.owned)
            self._grant(self._ticket_waiters.popleft())

    async def _acquire(self, queue: deque[_Waiter], free: Callable[[], bool], take: Callable[[], None],
                       give_back: Callable[[], None]) -> None:
        with self._lock:
            if not queue and free():
                take()
                return
            waiter = _Waiter(asyncio.get_running_loop(), asyncio.get_running_loop().create_future())
            queue.append(waiter)
        try:
            await waiter.future
        except asyncio.CancelledError:
            with self._lock:
                if not waiter.granted:
                    queue.remove(waiter)
            if waiter.granted:
                give_back()
            raise

    def _take_ticket(self) -> None:
        self.owned += 1
        self._round.peak_owned = max(self._round.peak_owned, self.owned)

    def _take_call(self) -> None:
        self.active += 1
        self._round.peak_active = max(self._round.peak_active, self.active)

    def _release_ticket(self) -> None:
        with self._lock:
            self.owned -= 1
            self._dispatch()

    def _release_call(self) -> None:
        with self._lock:
            self.active -= 1
            self._dispatch()

    async def take_ticket(self) -> None:
        """One place in the adaptive window for a request, all its retries included; give it
        back with `release_ticket` (or use `ticket()`)."""
        await self._acquire(self._ticket_waiters, self._can_ticket, self._take_ticket, self._release_ticket)

    def release_ticket(self) -> None:
        self._release_ticket()

    @contextlib.asynccontextmanager
    async def ticket(self) -> AsyncIterator[None]:
        """Hold one place in the adaptive window for a request, all its retries included."""
        await self.take_ticket()
        try:
            yield
        finally:
            self._release_ticket()

    async def readmit(self) -> None:
        """Before a retry: a request whose ticket is now outside a shrunken window gives it back
        and waits at the head of the queue, so retries cannot keep more requests at the
        provider than the window allows (they go before new requests)."""
        with self._lock:
            if self.owned <= max(1, math.floor(self.window)):
                return
            self.owned -= 1
            waiter = _Waiter(asyncio.get_running_loop(), asyncio.get_running_loop().create_future())
            self._ticket_waiters.appendleft(waiter)
            self._dispatch()
        try:
            await waiter.future
        except asyncio.CancelledError:
            with self._lock:
                if not waiter.granted:
                    self._ticket_waiters.remove(waiter)
                    self.owned += 1  # the caller's ticket() releases one on the way out
            raise

    @contextlib.asynccontextmanager
    async def call(self, tokens: float = 0.0) -> AsyncIterator[tuple[float, float, float]]:
        """One HTTP call: a call slot (hard cap), then one request and `tokens` of the budgets
        (the hard caps, the pace, the provider's reported budget). Yields the call's mark for
        `observe_budget`: (when it was sent, requests and tokens sent until then)."""
        await self._acquire(self._call_waiters, lambda: self.active < self.max_in_flight,
                            self._take_call, self._release_call)
        try:
            pace = self.pace
            if pace is not None:
                await pace.paced(1)
            if self.request_bucket is not None:
                await self.request_bucket.acquire(1)
            if self.token_bucket is not None and tokens:
                await self.token_bucket.acquire(tokens)
            await self.request_budget.acquire(1.0)
            if tokens:
                await self.token_budget.acquire(tokens)
            with self._lock:
                self._round.calls += 1
            yield self.clock(), self.request_budget.sent, self.token_budget.sent
        finally:
            self._release_call()

    def observe_budget(self, budget: RateBudget, mark: tuple[float, float, float]) -> None:
        """The provider's budget reported with the answer to (or 429 of) the call of `mark`:
        from now on calls wait for it (pacing to the provider's own refill)."""
        sent_at, requests_then, tokens_then = mark
        # the provider counted the call when it arrived, somewhat after it left the limiter (the
        # body's encoding, a busy event loop; on a cold start, new connections too): the quickest
        # answer yet bounds the time since from above, and 90 % of it is credited -- so that in
        # steady state the provider's bucket keeps a tenth of a round-trip's refill, a cushion
        # for jitter; a call sent before any answer came back is credited COLD_SETUP_S less
        age = 0.9 * min(self.clock() - sent_at, self.fastest_answer_s or 0.0)
        if self._first_answer_at is None or sent_at < self._first_answer_at:
            age = max(0.0, age - COLD_SETUP_S)
        if budget.requests is not None:
            self.request_budget.observe(budget.requests, age_s=age, sent_mark=requests_then,
                                        sent_since=self.request_budget.sent - requests_then)
        if budget.tokens is not None:
            self.token_budget.observe(budget.tokens, age_s=age, sent_mark=tokens_then,
                                      sent_since=self.token_budget.sent - tokens_then)

    def report(self) -> dict[str, Any]:
        """Run metadata: where the window ended, how low it went, and its history."""
        with self._lock:
            return {"key": self.key, "window": round(self.window, 2), "max_in_flight": self.max_in_flight,
                    "requests_per_minute": self.requests_per_minute, "tokens_per_minute": self.tokens_per_minute,
                    "min_window_seen": round(self.min_window_seen, 2), "rate_limited_rounds": self.rate_limited_rounds,
                    "latency_s": None if self.latency_s is None else round(self.latency_s, 4),
                    "pace_per_s": None if self.pace is None else round(self.pace.rate, 2),
                    "history": list(self.history)}


# Weak: a limiter lives while an engine uses it, so what it learnt is shared by the evaluations
# running at once, and a later run starts from its own configuration.
_REGISTRY: weakref.WeakValueDictionary[str, AdaptiveLimiter] = weakref.WeakValueDictionary()
_REGISTRY_LOCK = threading.Lock()


def shared_limiter(key: str, *, max_in_flight: int, requests_per_minute: float | None = None,
                   tokens_per_minute: float | None = None, **options: Any) -> AdaptiveLimiter:
    """The one limiter of `key` in this process while any engine holds it (created on first
    use; a caller with stricter caps tightens them, see `AdaptiveLimiter.tighten`)."""
    with _REGISTRY_LOCK:
        limiter = _REGISTRY.get(key)
        if limiter is None:
            limiter = AdaptiveLimiter(key, max_in_flight, requests_per_minute, tokens_per_minute, **options)
            _REGISTRY[key] = limiter
            return limiter
    limiter.tighten(max_in_flight, requests_per_minute, tokens_per_minute)
    return limiter
