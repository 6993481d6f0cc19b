"""How the adaptive window and the pace of `inference.vlm.limiter.AdaptiveLimiter` follow what
a provider answers: slow start, rounds of one round-trip, shrinking at once to what the
provider served, slow probing, random 429s told apart from a limit.

- Slow start: the window starts at SLOW_START_WINDOW (32; max_in_flight if lower) and grows by
  one per answer (doubling per round-trip) until a round is refused past the tolerance (it
  stops at once when 8+ calls of a round were refused past it) or it reaches its maximum: a
  provider's limit is found by a small overshoot, not by a first burst of max_in_flight.
Time runs in rounds of one round-trip (the EWMA latency of answers). At each round's end:
- a round whose share of refused calls (429) stays within the tolerance, headroom / (1 +
  headroom) = 20 %, does not shrink the window: random 429s are noise, not a limit (pure AIMD
  collapses under random loss: W ~ 1.22 / sqrt(p), i.e. ~4 at 10 %);
- a round refused more than that shrinks at once to what the provider served: the pace (call
  starts spread evenly: a quota refuses bursts) to the rate it admitted (calls not refused),
  5 % under it (`backoff`: a token bucket's reserve inflates it, and the margin refills the
  drained bucket to absorb jitter), the window to that rate x RTT x (1 + headroom) (room for
  requests parked on a Retry-After) -- in an app-limited round (more than the tolerance share
  of the window parked on a Retry-After at once: its admitted rate measures the client's own
  retry burst, BBR's rule) the window steps down by at most the tolerance;
- paced, a round with a few 429s sets the pace to the admitted rate (5 % under it) again,
  unless the pace had just been set so and still more than half the tolerance were refused
  (not app-limited): pacing to a limit stops its 429s, so those are random and the pace is
  dropped, the window restored; a clean round raises the pace by `probe_gain` (2.5 %),
  doubling with each further clean round (at most the headroom), and drops it once it cannot
  bind; a clean full window grows by the headroom (RFC 7661: a round that did not fill the
  window says nothing about more capacity);
- the window stays in [min_window, max_in_flight x (1 + headroom)]: above max_in_flight only
  the requests parked on a Retry-After make the difference, the call cap holds the provider.
Retry-After is honoured per request by the engine (its own sleep); nothing else pauses.
`history` records every change (time, window, pace, owned, active, goodput) for run metadata
and `inference.vlm.window_plot.plot_window`.
"""

from __future__ import annotations

from dataclasses import dataclass

from inference.vlm.buckets import TokenBucket

# Slow start: a window starts here (or at max_in_flight, if lower) and grows by one per answer
# (doubling per round-trip) until a round is rate-limited -- a provider's limit is found by a
# small overshoot, not by a first burst of max_in_flight (inspect_ai starts at 20 connections).
SLOW_START_WINDOW = 32
SLOW_START_EXIT_429S = 8
# A call sent on a cold start (before any answer) may have waited for its connection (a TLS
# handshake: ~0.1 s) before the provider counted it: its budget report gets that much less credit.
COLD_SETUP_S = 0.1


@dataclass
class _Round:
    started: float
    calls: int = 0  # calls sent in the round
    answers: int = 0
    rate_limited: int = 0
    peak_owned: int = 0
    peak_active: int = 0
    peak_parked: int = 0  # most tickets at once not in a call: waiting out a Retry-After


class WindowControl:
    """The controller half of `AdaptiveLimiter` (its fields and slots live there)."""

    @property
    def tolerance(self) -> float:
        """The share of refused calls a round may have without shrinking the window: a window
        (1 + headroom) x the sustained rate is refused that share when it probes a quota, and
        random 429s up to it are noise, not a limit."""
        return self.headroom / (1.0 + self.headroom)

    @property
    def max_window(self) -> float:
        return self.max_in_flight * (1.0 + self.headroom) if self.adaptive else float(self.max_in_flight)

    # ------------------------------------------------------------------ control
    def record(self, kind: str, latency_s: float | None = None) -> None:
        """One call's outcome: 'answer' (with its latency) or a TransportError kind."""
        with self._lock:
            now = self.clock()
            if kind == "answer":
                if self.slow_start and self.window < self.max_window:
                    self.window = min(self.window + 1.0, self.max_window)
                    self._dispatch()
                if self.latency_s is None:  # rounds start once a round-trip has been measured
                    self._first_answer_at = now
                    self._round = _Round(now, peak_owned=self.owned, peak_active=self.active)
                self._round.answers += 1
                if latency_s is not None:
                    self.fastest_answer_s = latency_s if self.fastest_answer_s is None else \
                        min(self.fastest_answer_s, latency_s)
                    self.latency_s = latency_s if self.latency_s is None else 0.8 * self.latency_s + 0.2 * latency_s
            elif kind == "rate_limited":
                self._round.rate_limited += 1
                # slow start stops doubling at once when a round is refused past the tolerance
                # (the shrink waits for the round's end): each retry inside a round would grow
                # the overshoot; 8 at least, so that a few random 429s do not stop it
                if self.slow_start and self._round.rate_limited >= SLOW_START_EXIT_429S and \
                        self._round.rate_limited > self.tolerance * self._round.calls:
                    self.slow_start = False
            self._round.peak_parked = max(self._round.peak_parked, self.owned - self.active)
            if self.latency_s is not None and now - self._round.started >= max(self.min_round_s, self.latency_s):
                self._end_round(now)
                self._dispatch()

    def _end_round(self, now: float) -> None:
        r = self._round
        elapsed = max(now - r.started, 1e-6)
        goodput = r.answers / elapsed
        old = self.window
        full = r.peak_owned >= old - 1 or r.peak_active >= self.max_in_flight
        refused = r.rate_limited / max(1, r.calls, r.rate_limited)
        # the rate the provider admitted: calls sent in this round that were not refused (a 429
        # comes back at once, an answer one round-trip later, so admission is known a round
        # before the goodput shows it; the answers would also count a token bucket's reserve)
        admitted = max(r.calls - r.rate_limited, 0) / elapsed
        rtt = self.latency_s or elapsed
        event = "steady"
        if not self.adaptive:
            pass
        elif refused > self.tolerance:
            event = self._rate_limited_round(r, old, admitted, rtt)
        elif self.pace is not None and r.rate_limited:
            app_limited = r.peak_parked > self.tolerance * old  # refusals of a retry burst
            if self._paced_to_admitted and refused > self.tolerance / 2 and not app_limited:
                # paced at what the provider admitted last round and still refused this often:
                # not its limit (pacing to it stops those) but random 429s, which no pace removes
                self._set_pace(float("inf"))
                self.window = max(old, self._unpaced_window or old)
                event = "noise"
            else:  # 429s at the pace: back to what the provider served, at once, a little under
                # it (its bucket is drained now: the margin refills it and absorbs jitter)
                self._set_pace(min(admitted, self.pace.rate) * (1.0 - self.backoff))
                self.window = min(old, max(admitted * rtt * (1.0 + self.headroom), self.min_window))
                self._paced_to_admitted = True
                event = "paced_down"
        elif r.rate_limited and full:  # unpaced, 429s within the tolerance: noise, not a limit
            self.window = max(old, admitted * rtt * (1.0 + self.headroom))
            if refused > self.tolerance / 2:  # or a limit just overshot: stop doubling
                self.slow_start = False
        elif full and not self.slow_start:  # clean and full: probe up
            self.window = old * (1.0 + self.headroom)
            event = "grow"
            if self.pace is not None:  # the pace probes slowly; dropped once it cannot bind
                self._set_pace(self.pace.rate * (1.0 + self._probe()))
        elif self.pace is not None and not r.rate_limited:
            self._set_pace(self.pace.rate * (1.0 + self._probe()))
        if not r.rate_limited:
            self._paced_to_admitted = False
        else:
            self._clean_rounds = 0
        self.window = min(max(self.window, self.min_window), self.max_window)
        self.min_window_seen = min(self.min_window_seen, self.window)
        self._round = _Round(now, peak_owned=self.owned, peak_active=self.active)
        if event == "steady" and self.slow_start and self.history and \
                self.history[-1]["window"] != round(self.window, 2):
            event = "slow_start"  # grown answer by answer during the round
        if self.window != old or event in ("rate_limited", "noise", "paced_down", "slow_start"):
            self._note(event, goodput, r.rate_limited)

    def _probe(self) -> float:
        """The pace's rise after a clean round: small next to a limit just found, doubling with
        each further clean round (a limit lifted, or a misjudged one, is found again fast)."""
        gain = min(self.headroom, self.probe_gain * 2.0 ** self._clean_rounds)
        self._clean_rounds += 1
        return gain

    def _rate_limited_round(self, r: _Round, old: float, admitted: float, rtt: float) -> str:
        """A round refused more than the tolerance: shrink at once to what the provider served
        -- the pace to its admitted rate, the window to that rate's round-trip's worth plus the
        headroom (for requests parked on a Retry-After) -- and end slow start."""
        self.rate_limited_rounds += 1
        self.slow_start = False
        if self.pace is None:
            self._unpaced_window = old
        # app-limited (BBR's rule): when more than the tolerance share of the window sat parked
        # on Retry-After, those requests were not at the provider and come back as one burst
        # (Retry-After ~ one round-trip), so the admitted rate measures the client's own burst,
        # a lower bound on the provider's limit: step down by at most the tolerance per round
        # and let the next, less parked rounds measure again
        app_limited = r.peak_parked > self.tolerance * old
        target = admitted * rtt * (1.0 + self.headroom)
        self.window = max(min(target, old), old * (1.0 - self.tolerance)) if app_limited else min(target, old)
        # a quota refuses bursts: start calls evenly at the rate it admitted (a little under it:
        # a token bucket's reserve made it look larger than it is)
        self._set_pace(min(admitted, self.pace.rate if self.pace is not None else admitted) * (1.0 - self.backoff))
        self._paced_to_admitted = True
        return "rate_limited"

    def _set_pace(self, rate: float) -> None:
        ceiling = self.max_in_flight / max(self.latency_s or 1.0, 1e-3)
        if rate >= ceiling:
            self.pace = None
            return
        rate = max(rate, self.min_window / max(self.latency_s or 1.0, 1e-3))
        if self.pace is None:
            self.pace = TokenBucket(rate, max(1.0, rate * self.pace_burst_s), self.clock)
        else:
            self.pace.set_rate(rate, max(1.0, rate * self.pace_burst_s), requeue=True)

    def _note(self, event: str, goodput: float, rate_limited: int = 0) -> None:
        self.history.append({"t": round(self.clock() - self._t0, 4), "window": round(self.window, 2),
                             "pace_per_s": None if self.pace is None else round(self.pace.rate, 2),
                             "owned": self.owned, "active": self.active, "goodput": round(goodput, 2),
                             "rate_limited": rate_limited, "event": event})

