"""OpenAI's rate-limit budget headers, as the loopback servers send them (switchable).

OpenAI answers every request with its budget -- `x-ratelimit-limit-requests` (the bucket's
size), `x-ratelimit-remaining-requests` (what is left of it), `x-ratelimit-reset-requests` (the
time until it is full again, in Go's duration format: "1s", "6m0s", "20ms"), the same three for
`-tokens` -- and a 429 with `retry-after-ms`. The values are those of the moment the request was
admitted (the limiter runs when the request arrives; the answer carries them back).
"""

from __future__ import annotations

import math


def go_duration(seconds: float) -> str:
    """Seconds in Go's time.Duration format, as OpenAI writes them: "20ms", "1.5s", "6m0s", "1h2m3s"."""
    if seconds <= 0:
        return "0s"
    if seconds < 1:
        return f"{max(1, round(seconds * 1000))}ms"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{secs:.3f}".rstrip("0").rstrip(".") + "s"
    if hours:
        return f"{int(hours)}h{int(minutes)}m{text}"
    if minutes:
        return f"{int(minutes)}m{text}"
    return text


def budget_headers(kind: str, capacity: float, tokens: float, rate_per_s: float) -> dict[str, str]:
    """The three headers of one budget (`kind`: requests or tokens) of a token bucket."""
    remaining = max(0, math.floor(tokens))
    return {f"x-ratelimit-limit-{kind}": str(int(capacity)),
            f"x-ratelimit-remaining-{kind}": str(remaining),
            f"x-ratelimit-reset-{kind}": go_duration(max(0.0, capacity - tokens) / rate_per_s)}


def wait_ms(tokens: float, needed: float, rate_per_s: float) -> str:
    """retry-after-ms: when the bucket will hold `needed` again."""
    return str(max(1, math.ceil(max(0.0, needed - tokens) / rate_per_s * 1000)))
