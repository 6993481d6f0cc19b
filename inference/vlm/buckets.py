"""A thread-safe, reservation-style token bucket: the rpm / tpm hard caps and the pace of
`inference.vlm.limiter`."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable


class TokenBucket:
    """Continuous-refill token bucket (`rate_per_s`, at most `capacity`), thread-safe.
    `acquire` reserves its tokens at once (the balance may go negative) and sleeps until the
    reservation is covered, so waiters are served in arrival order; a cancelled waiter gives its
    tokens back. `debit` corrects the balance after the fact."""

    def __init__(self, rate_per_s: float, capacity: float, clock: Callable[[], float] = time.monotonic) -> None:
        if rate_per_s <= 0:
            raise ValueError(f"TokenBucket rate must be > 0, got {rate_per_s}")
        self.rate = float(rate_per_s)
        self.capacity = max(float(capacity), 1e-9)
        self.tokens = self.capacity
        self.generation = 0  # moves on when waiters must reserve again (set_rate(requeue=True))
        self._clock = clock
        self._updated = clock()
        self._lock = threading.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self.tokens = min(self.capacity, self.tokens + (now - self._updated) * self.rate)
        self._updated = now

    async def acquire(self, amount: float = 1.0) -> None:
        amount = min(float(amount), self.capacity)  # a request bigger than the bucket still runs
        with self._lock:
            self._refill()
            self.tokens -= amount
            wait = -self.tokens / self.rate if self.tokens < 0 else 0.0
        if wait > 0:
            try:
                await asyncio.sleep(wait)
            except asyncio.CancelledError:
                self.debit(-amount)
                raise

    def set_rate(self, rate_per_s: float, capacity: float, *, requeue: bool = False) -> None:
        """A new rate. `requeue`: the waiters' reservations (made at the old rate) are dropped
        and `generation` moves on: a waiter that sees it changed reserves again (`paced`)."""
        with self._lock:
            self._refill()
            self.rate, self.capacity = float(rate_per_s), max(float(capacity), 1e-9)
            self.tokens = min(max(self.tokens, 0.0) if requeue else self.tokens, self.capacity)
            if requeue:
                self.generation += 1

    async def paced(self, amount: float = 1.0) -> None:
        """`acquire`, reserving again after a `set_rate(requeue=True)` while it waited: a
        slower pace holds back the calls that queued at the faster one."""
        while True:
            generation = self.generation
            await self.acquire(amount)
            if self.generation == generation:
                return

    def set_balance(self, tokens: float, only_lower: bool = False) -> None:
        """Set the balance (at most the capacity; negative: owed), e.g. to what a provider
        reported; `only_lower`: unless that is more than the balance now."""
        with self._lock:
            self._refill()
            value = min(self.capacity, float(tokens))
            self.tokens = min(self.tokens, value) if only_lower else value

    def debit(self, amount: float) -> None:
        """Take (or, if negative, give back) `amount` without waiting."""
        with self._lock:
            self._refill()
            self.tokens = min(self.capacity, self.tokens - float(amount))
