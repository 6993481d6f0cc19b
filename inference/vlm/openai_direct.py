"""The chat-completions call without the SDK's per-request machinery: one aiohttp POST.

Why (measured with `scripts/bench_api_runner.py --profile`, CPU seconds of the client process
per 1,000 requests at 256 in flight; see DEVELOPERS.md, "API runner: client CPU per request"):
the official `AsyncOpenAI.post` costs ~1 ms of CPU per request before a byte is sent or after
the answer arrived -- building `FinalRequestOptions` (pydantic), merging and validating headers,
parsing the URL three times, building an httpx2 `Request`, then an httpx2 `Response` around the
transport's answer -- which is two thirds of the whole client (engine, limiter, cache and
HTTP included) and what kept the runner under its targets at 256 in flight on two cores.

What stays the official client's: `DirectPost` is built *from* an `AsyncOpenAI` client, so the
endpoint (base_url, OPENAI_BASE_URL), the auth header, OpenAI-Organization / OpenAI-Project and
the SDK's identifying headers are exactly what the SDK would send. Its HTTP status, headers and
body go through the same classification as the SDK path (`OpenAIChatBackend._status_error`:
429 + Retry-After / retry-after-ms, 408, 5xx, content filters, other 4xx), and transport
failures map as the SDK maps them: a timeout -> TransportError('timeout'), a refused, reset or
dropped connection -> TransportError('server_error'). No retries here (the engine's job).
"""

from __future__ import annotations

import asyncio
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

from inference.vlm.types import TransportError


def sdk_request_headers(client: Any, timeout_s: float) -> dict[str, str]:
    """The headers the official client sends with a first attempt (no SDK retries: count 0):
    its auth headers, default headers (SDK identity, organization, project) and read timeout;
    the SDK's `Omit` markers (an unset project) are left out, as the SDK leaves them out."""
    merged = {**client.auth_headers, **client.default_headers,
              "X-Stainless-Retry-Count": "0", "X-Stainless-Read-Timeout": str(float(timeout_s))}
    return {name: value for name, value in merged.items() if isinstance(value, str)}


def env_proxy(url: str) -> str | None:
    """The proxy HTTP(S)_PROXY / NO_PROXY name for `url`, read once per client as httpx does
    (aiohttp's trust_env would look it up again in a worker thread on every request: two thread
    hops per request, a tenth of the client's CPU)."""
    split = urllib.parse.urlsplit(url)
    if split.hostname and urllib.request.proxy_bypass(split.hostname):
        return None
    return urllib.request.getproxies().get(split.scheme)


class DirectPost:
    """POST JSON bytes to one endpoint of an official client over an aiohttp session (one per
    event loop: create it on the loop that uses it, close it with `aclose`)."""

    def __init__(self, client: Any, path: str, *, timeout_s: float, max_connections: int,
                 ssl_context: Any, name: str) -> None:
        import aiohttp

        self.url = str(client.base_url).rstrip("/") + "/" + path.lstrip("/")
        self.headers = sdk_request_headers(client, timeout_s)
        self.timeout_s = float(timeout_s)
        self.name = name
        self.proxy = env_proxy(self.url)
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=max_connections, ssl=ssl_context),
            timeout=aiohttp.ClientTimeout(total=timeout_s, sock_connect=min(10.0, timeout_s)),
        )

    async def post(self, payload: bytes) -> tuple[int, Mapping[str, str], bytes]:
        """(status, headers, body) of one POST; TransportError for a timeout or a connection
        that fails (refused, reset, dropped before the whole answer arrived)."""
        import aiohttp

        try:
            async with self._session.post(self.url, data=payload, headers=self.headers,
                                          proxy=self.proxy) as response:
                return response.status, response.headers, await response.read()
        except asyncio.TimeoutError:  # aiohttp's ServerTimeoutError included (a subclass)
            raise TransportError("timeout", f"{self.name}: no answer within {self.timeout_s:g} s") from None
        except aiohttp.ClientError as exc:
            raise TransportError("server_error", f"{self.name}: connection failed ({type(exc).__name__})") from None

    async def aclose(self) -> None:
        try:
            await self._session.close()
        except RuntimeError:  # its loop is gone
            pass
