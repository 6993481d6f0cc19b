"""A provider's own word on its rate limit: OpenAI's budget headers, and the limiter's mirror of
the provider's buckets built from them, so the client paces to the budget before any 429.

    budget = parse_budget(response_headers)      # RateBudget or None (no headers: the window adapts)
    mirror = BudgetMirror("requests")
    mirror.observe(budget.requests, age_s=..., sent_since=...)   # after each answer or 429
    await mirror.acquire(1)                      # before each call

OpenAI (and compatible servers) send on every answer and 429: `x-ratelimit-limit-requests` (the
bucket's size), `x-ratelimit-remaining-requests` (left of it), `x-ratelimit-reset-requests` (the
time until it is full again, Go's duration format: "1s", "6m0s", "20ms"), the same for `-tokens`.
From them the refill rate follows: (limit - remaining) / reset. The values are those of
the moment the request was admitted, so the mirror adds what refilled since (the call's age) and
subtracts the calls sent after it (the provider had not counted them yet).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass

from inference.vlm.buckets import TokenBucket

_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|us|µs|ns|h|m|s)")
_UNIT_S = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
# A bucket seen only full says nothing about its refill: assume OpenAI's unit, a minute, until
# an answer shows it partly spent (the next answer corrects it).
UNKNOWN_REFILL_S = 60.0


def parse_duration(text: str | None) -> float | None:
    """Go's duration format ("1s", "6m0s", "20ms", "1h2m3.5s"); plain seconds also; None if unparseable."""
    if text is None:
        return None
    text = text.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return sum(float(number) * _UNIT_S[unit] for number, unit in parts)


@dataclass(frozen=True)
class Budget:
    """One bucket as the provider reported it."""

    limit: float
    remaining: float
    reset_s: float

    @property
    def refill_per_s(self) -> float | None:
        """The bucket's rate, when it was not full: (limit - remaining - 0.5) / reset, since
        `remaining` is whole (rounded down: on average half a request more was left)."""
        if self.remaining < self.limit - 1 and self.reset_s > 0:
            return (self.limit - self.remaining - 0.5) / self.reset_s
        return None


@dataclass(frozen=True)
class RateBudget:
    requests: Budget | None
    tokens: Budget | None


def _one(headers: Mapping[str, str], kind: str) -> Budget | None:
    limit = headers.get(f"x-ratelimit-limit-{kind}")
    remaining = headers.get(f"x-ratelimit-remaining-{kind}")
    if limit is None or remaining is None:
        return None
    reset = parse_duration(headers.get(f"x-ratelimit-reset-{kind}"))
    try:
        limit_value, remaining_value = float(limit), float(remaining)
    except ValueError:
        return None
    if limit_value <= 0:
        return None
    return Budget(limit_value, max(0.0, remaining_value), reset if reset is not None else 0.0)


def parse_budget(headers: Mapping[str, str] | None) -> RateBudget | None:
    """OpenAI's x-ratelimit-* headers (case-insensitive mappings: aiohttp's and httpx's; a plain
    dict must have lower-case names); None when the provider sends none."""
    if not headers:
        return None
    requests, tokens = _one(headers, "requests"), _one(headers, "tokens")
    if requests is None and tokens is None:
        return None
    return RateBudget(requests, tokens)


class BudgetMirror:
    """The client's copy of one provider bucket: a TokenBucket at the reported refill rate whose
    balance each report resets to the provider's (what was left when the reported call was
    admitted, plus the refill since, minus what was sent after it)."""

    def __init__(self, kind: str, clock) -> None:
        self.kind = kind
        self._clock = clock
        self.bucket: TokenBucket | None = None
        self.rate: float | None = None
        self.limit: float | None = None
        self._applied_mark = -1.0
        self.waiting = 0.0  # reserved by calls not yet sent (inside `acquire`)
        self.sent = 0.0  # running total sent through this mirror
        self._lock = threading.Lock()

    async def acquire(self, amount: float) -> None:
        bucket = self.bucket
        if bucket is None:  # no report yet: only count what is sent
            with self._lock:
                self.sent += amount
            return
        with self._lock:
            self.waiting += amount
        try:
            await bucket.acquire(amount)
        finally:
            with self._lock:
                self.waiting -= amount
                self.sent += amount

    def observe(self, budget: Budget, *, age_s: float, sent_since: float, sent_mark: float) -> None:
        """A report of a call admitted `age_s` ago, `sent_since` units sent after it (`sent_mark`:
        `sent` when it was sent). A report older than the last one applied (answers overtake
        each other) can only lower the balance: it knows less about the calls sent since."""
        rate = budget.refill_per_s
        with self._lock:
            fresher = sent_mark >= self._applied_mark
            self._applied_mark = max(self._applied_mark, sent_mark)
            if budget.limit != self.limit:  # a new limit (another tier): learn its rate afresh
                self.limit, self.rate = budget.limit, None
            if rate is not None:  # smoothed: each report's rounding makes it a little off
                self.rate = rate if self.rate is None else 0.8 * self.rate + 0.2 * rate
            refill = self.rate or budget.limit / UNKNOWN_REFILL_S
            now_left = min(budget.limit, budget.remaining + refill * age_s) - sent_since
            if self.bucket is None:
                self.bucket = TokenBucket(refill, budget.limit, self._clock)
            else:
                self.bucket.set_rate(refill, budget.limit)
            # the balance counts reservations of calls not sent yet: they come off the truth
            self.bucket.set_balance(now_left - self.waiting, only_lower=not fresher)
