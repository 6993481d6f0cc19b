"""What both remote chat backends (OpenAI-compatible, Gemini) need from HTTP: the Retry-After
of a refusal, the key from the environment, messages scrubbed of it, one TLS context."""

from __future__ import annotations

import email.utils
import functools
import os
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

_MAX_MESSAGE_CHARS = 300


def parse_retry_after(headers: Mapping[str, str] | None, now: float | None = None) -> float | None:
    """Seconds to wait from `retry-after-ms`, or `retry-after` as seconds or an HTTP date
    (RFC 9110); None when absent or unparseable. Never negative."""
    if not headers:
        return None
    lowered = {str(k).lower(): str(v) for k, v in headers.items()}
    ms = lowered.get("retry-after-ms")
    if ms is not None:
        try:
            value = float(ms) / 1000.0
            if value >= 0 and value == value and value != float("inf"):
                return value
        except ValueError:
            pass
    raw = lowered.get("retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        value = float(raw)
    except ValueError:
        pass
    else:
        return value if value >= 0 and value == value and value != float("inf") else None
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    current = datetime.now(timezone.utc).timestamp() if now is None else now
    return max(0.0, when.timestamp() - current)


def scrub(text: str, secret: str | None) -> str:
    """`text` without `secret` (and shortened): for messages that might quote a request."""
    if secret:
        text = text.replace(secret, "***")
    if len(text) > _MAX_MESSAGE_CHARS:
        text = text[:_MAX_MESSAGE_CHARS] + "..."
    return text


def read_api_key(api_key_env: str | None, *, backend: str) -> str | None:
    """The key from the environment; a clear error naming the variable when it is missing."""
    if api_key_env is None:
        return None
    value = os.environ.get(api_key_env, "").strip()
    if not value:
        raise RuntimeError(
            f"{backend}: environment variable {api_key_env} is not set; export it with your API key "
            f"(or pass api_key_env=None for a local server that needs no key)"
        )
    return value


@functools.lru_cache(maxsize=1)
def shared_ssl_context() -> Any:
    """One TLS context for every HTTP pool of this process: building one loads the CA bundle
    (~60 ms of CPU), and a backend opens `pool_shards` pools per event loop."""
    import httpx2

    return httpx2.create_ssl_context()
