"""A loopback, scripted OpenAI-compatible chat-completions server for tests and benchmarks.

(Over 400 lines: the HTTP plumbing, scripting, provider behaviour and counting that both loopback
servers share belong in one place.)

Real HTTP/1.1 (keep-alive; a stdlib asyncio server on its own event loop in a background thread)
on 127.0.0.1 with an ephemeral port; it speaks `POST /v1/chat/completions` and `GET /v1/models`.

    with OpenAIServer(latency_s=0.2) as server:
        server.enqueue(rate_limited(retry_after="1"), server_error(), answer("happy"))
        client = AsyncOpenAI(base_url=server.base_url, api_key=..., max_retries=0)
        ...
        assert server.generation_count == 3
        assert server.requests[-1].headers["authorization"] == "Bearer ..."
        assert server.requests[-1].images == [image_bytes]

Each generation request takes its action from, in order: the queue (`enqueue`, FIFO), the
`responder` callable (given the `RecordedRequest`, may return None), the provider behaviour
(`provider`: a `Provider` -- a server-enforced rate and concurrency limit answered with 429 +
Retry-After past it, and a seeded random mix of 429 / 5xx / hangs / garbage), else the default
answer (`default_text`, or `answer_fn(recorded)` when set).

The server counts the answers it sent per `answer_key(recorded)` (the prompt): `answered`
(a Counter), `lost(keys)` and `duplicates()` make lost and doubly answered requests visible,
and `outcomes` counts every generation request by what it got. `GET /_loopback/stats` and
`POST /_loopback/configure` expose the same to a client in another process (benchmarks). Latency is an asyncio sleep, so slow
answers never block other requests; a hang waits until the server stops (then the connection
is dropped without an answer). Callables run on the server's thread.

`ScriptedServer` (the HTTP plumbing, recording and scripting) is shared with
`tests/support/gemini_server.py`.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import random
import threading
import time
import urllib.parse
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import rate_budget

# ----------------------------------------------------------------------------- actions


@dataclass(frozen=True)
class Action:
    """What the server does with one generation request."""

    kind: str  # answer | rate_limited | error | hang | malformed | refusal | content_filter
    #            | prompt_blocked | finish_safety | raw
    text: str | None = None
    latency_s: float | None = None  # None: the server's default latency
    status: int = 200
    retry_after: str | None = None  # Retry-After header value (seconds or HTTP date)
    retry_after_ms: str | None = None  # retry-after-ms header value (OpenAI)
    retry_delay: str | None = None  # Gemini RetryInfo.retryDelay, e.g. "2s"
    hang_s: float = 60.0
    body: bytes | None = None  # for kind == "raw"
    content_type: str = "application/json"
    message: str = ""
    headers: tuple[tuple[str, str], ...] = ()  # more response headers (a provider's budget)


def answer(text: str, latency_s: float | None = None) -> Action:
    return Action("answer", text=text, latency_s=latency_s)


def rate_limited(retry_after: str | None = "1", retry_delay: str | None = None,
                 latency_s: float | None = 0.0, retry_after_ms: str | None = None) -> Action:
    return Action("rate_limited", status=429, retry_after=retry_after, retry_delay=retry_delay,
                  latency_s=latency_s, retry_after_ms=retry_after_ms)


def server_error(status: int = 500, latency_s: float | None = 0.0) -> Action:
    return Action("error", status=status, message="internal error", latency_s=latency_s)


def client_error(status: int = 400, message: str = "invalid request", code: str | None = None) -> Action:
    return Action("error", status=status, message=message, text=code, latency_s=0.0)


def hang(seconds: float = 60.0) -> Action:
    return Action("hang", hang_s=seconds)


def malformed(latency_s: float | None = 0.0) -> Action:
    return Action("malformed", latency_s=latency_s)


def raw(body: bytes, status: int = 200, content_type: str = "application/json") -> Action:
    return Action("raw", body=body, status=status, content_type=content_type, latency_s=0.0)


def refusal(text: str = "I'm sorry, I can't help with that.") -> Action:
    """OpenAI: `message.refusal` set, `content` null."""
    return Action("refusal", text=text)


def content_filter(text: str | None = None) -> Action:
    """OpenAI: finish_reason 'content_filter'."""
    return Action("content_filter", text=text)


def prompt_blocked(reason: str = "SAFETY") -> Action:
    """Gemini: promptFeedback.blockReason, no candidates."""
    return Action("prompt_blocked", text=reason)


def finish_safety(reason: str = "SAFETY") -> Action:
    """Gemini: a candidate with finishReason SAFETY and no content."""
    return Action("finish_safety", text=reason)


@dataclass
class Provider:
    """How a real provider treats load: past `rate_per_s` (a token bucket of `burst` requests),
    `tokens_per_s` (a bucket of `token_burst` tokens, each request costing its prompt and its
    max_tokens, as OpenAI counts) or `max_concurrency` requests at once, a 429 with Retry-After
    (`retry_after`, seconds), `retry-after-ms` (`retry_after_ms`) or Gemini's RetryInfo
    (`retry_delay`, e.g. "0.5s"); besides, each request independently gets a 429
    (`p_rate_limited`), a 5xx (`p_server_error`), a hang (`p_hang`, for `hang_s`) or a
    garbage 200 body (`p_garbage`), drawn from a seeded RNG. `budget_headers`: every answer and
    429 carries OpenAI's x-ratelimit-* headers of the moment it was admitted, and a 429 a
    computed retry-after-ms (tests/support/rate_budget.py)."""

    rate_per_s: float | None = None
    burst: float | None = None  # default: one second of rate
    tokens_per_s: float | None = None
    token_burst: float | None = None  # default: one second of tokens_per_s
    max_concurrency: int | None = None
    p_rate_limited: float = 0.0
    p_server_error: float = 0.0
    p_hang: float = 0.0
    p_garbage: float = 0.0
    retry_after: str | None = "1"
    retry_after_ms: str | None = None
    retry_delay: str | None = None
    budget_headers: bool = False
    hang_s: float = 30.0
    seed: int = 0

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._capacity = self.burst if self.burst is not None else (self.rate_per_s or 0.0)
        self._token_capacity = self.token_burst if self.token_burst is not None else (self.tokens_per_s or 0.0)
        self._tokens, self._token_tokens = self._capacity, self._token_capacity
        self._updated = time.monotonic()

    def _throttle(self, retry_after_ms: str | None = None) -> Action:
        return Action("rate_limited", status=429, retry_after=self.retry_after,
                      retry_after_ms=retry_after_ms or self.retry_after_ms, retry_delay=self.retry_delay,
                      latency_s=0.0)

    def _refill(self) -> None:
        now = time.monotonic()
        elapsed, self._updated = now - self._updated, now
        if self.rate_per_s:
            self._tokens = min(self._capacity, self._tokens + elapsed * self.rate_per_s)
        if self.tokens_per_s:
            self._token_tokens = min(self._token_capacity, self._token_tokens + elapsed * self.tokens_per_s)

    def _over_budget(self, cost: float) -> Action | None:
        """A 429 when either bucket cannot pay for the request, else pay for it."""
        self._refill()
        short = self.rate_per_s and self._tokens < 1.0
        short_tokens = self.tokens_per_s and self._token_tokens < min(cost, self._token_capacity)
        if short or short_tokens:
            waits = []
            if short:
                waits.append(int(rate_budget.wait_ms(self._tokens, 1.0, self.rate_per_s)))
            if short_tokens:
                waits.append(int(rate_budget.wait_ms(self._token_tokens, min(cost, self._token_capacity),
                                                     self.tokens_per_s)))
            return self._throttle(str(max(waits)) if self.budget_headers else None)
        if self.rate_per_s:
            self._tokens -= 1.0
        if self.tokens_per_s:
            self._token_tokens -= cost
        return None

    def budget(self) -> tuple[tuple[str, str], ...]:
        """The x-ratelimit-* headers now (after `decide`), when `budget_headers` is on."""
        if not self.budget_headers:
            return ()
        headers: dict[str, str] = {}
        if self.rate_per_s:
            headers.update(rate_budget.budget_headers("requests", self._capacity, self._tokens, self.rate_per_s))
        if self.tokens_per_s:
            headers.update(rate_budget.budget_headers("tokens", self._token_capacity, self._token_tokens,
                                                      self.tokens_per_s))
        return tuple(headers.items())

    def decide(self, in_flight: int, cost: float = 0.0) -> Action | None:
        """The action for one arriving request costing `cost` tokens (None: answer normally).
        Call under a lock."""
        if self.max_concurrency is not None and in_flight > self.max_concurrency:
            return self._throttle()
        if self.rate_per_s or self.tokens_per_s:
            refused = self._over_budget(cost)
            if refused is not None:
                return refused
        draw = self._rng.random()
        for p, action in ((self.p_rate_limited, self._throttle),
                          (self.p_server_error, lambda: server_error(503)),
                          (self.p_hang, lambda: hang(self.hang_s)),
                          (self.p_garbage, lambda: malformed())):
            if draw < p:
                return action()
            draw -= p
        return None


# ----------------------------------------------------------------------------- recording


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: Any  # parsed JSON, or None
    raw_body: bytes
    images: list[bytes] = field(default_factory=list)  # decoded inline images
    image_mimes: list[str] = field(default_factory=list)
    parts: list[dict[str, Any]] = field(default_factory=list)  # gemini: each part, in order (kind, mime, ...)
    prompt: str = ""  # all text parts, joined with newlines
    started: float = 0.0
    finished: float | None = None
    status: int | None = None
    route: str | None = None  # what the server took it for: 'generate', 'models', a subclass's own


_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
            408: "Request Timeout", 429: "Too Many Requests", 500: "Internal Server Error",
            502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}


class ScriptedServer:
    """HTTP plumbing, recording and scripting; subclasses implement `_generation` and `_route`.

    The HTTP/1.1 server (keep-alive, Content-Length bodies) runs on an asyncio event loop in a
    background thread: latency is an `asyncio.sleep`, so hundreds of slow requests in flight
    cost no threads and never block each other."""

    def __init__(self, *, latency_s: float = 0.0, default_text: str = "neutral",
                 models: tuple[str, ...] = ("test-model",)) -> None:
        self.latency_s = latency_s
        self.default_text = default_text
        self.models = models
        self.models_status = 200  # set to e.g. 503 to make the model listing fail
        self.answer_fn: Callable[[RecordedRequest], str] | None = None
        self.responder: Callable[[RecordedRequest], Action | None] | None = None
        self.requests: list[RecordedRequest] = []
        self.responses: list[bytes] = []  # every body sent, to check nothing secret is echoed
        self.max_concurrent = 0
        self.provider: Provider | None = None
        self.keep_records = True  # False (benchmarks): no request/response log, images not decoded
        self.answered: Counter[str] = Counter()  # answers sent, per answer_key
        self.outcomes: Counter[str] = Counter()  # generation requests by outcome
        self._in_flight = 0
        self._queue: deque[Action] = deque()
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._stopping: asyncio.Event | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None
        self._address: tuple[str, int] | None = None
        self._connections: set[asyncio.Task] = set()
        self._hanging: set[asyncio.Task] = set()  # connection tasks held by a `hang` action

    # -- public API
    @property
    def url(self) -> str:
        if self._address is None:
            raise RuntimeError("the server is not started (use it as a context manager)")
        host, port = self._address
        return f"http://{host}:{port}"

    @property
    def generation_requests(self) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.route == "generate"]

    @property
    def generation_count(self) -> int:
        return len(self.generation_requests)

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def enqueue(self, *actions: Action) -> None:
        with self._lock:
            self._queue.extend(actions)

    def reset(self) -> None:
        """Forget recorded requests, queued actions, answer counts and the concurrency peak."""
        with self._lock:
            self.requests.clear()
            self.responses.clear()
            self._queue.clear()
            self.answered.clear()
            self.outcomes.clear()
            self.max_concurrent = self._in_flight

    def answer_key(self, recorded: RecordedRequest) -> str:
        """What identifies one wanted answer: the prompt (tests name the item in it)."""
        return recorded.prompt

    def lost(self, keys: list[str]) -> list[str]:
        """The `keys` the server never answered."""
        with self._lock:
            return [k for k in keys if self.answered[k] == 0]

    def duplicates(self) -> dict[str, int]:
        """Keys answered more than once, with their counts."""
        with self._lock:
            return {k: n for k, n in self.answered.items() if n > 1}

    def wait_for_disconnect(self, timeout_s: float = 10.0) -> None:
        """After a client process is killed: wait until the server is done with every connection
        it left (each request it had sent is answered -- to a dead socket -- and counted; only
        then does the connection see the EOF), hanging requests excepted (they never answer).

        Without it, `reset()` races the dead client's last requests: an answer the server sends
        a few ms after the reset lands in the *next* client's counts, and when that client
        (rightly) asks for the same prompt again, it looks like a duplicate it never sent.
        Only for a client that is gone: a live client's idle keep-alive connection stays open."""

        async def settled() -> None:
            async with asyncio.timeout(timeout_s):
                while any(not t.done() and t not in self._hanging for t in self._connections):
                    await asyncio.sleep(0.005)

        asyncio.run_coroutine_threadsafe(settled(), self._loop).result(timeout=timeout_s + 1)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {"requests": sum(self.outcomes.values()), "outcomes": dict(self.outcomes),
                    "answered_keys": len(self.answered), "answers": sum(self.answered.values()),
                    "duplicates": sum(1 for n in self.answered.values() if n > 1),
                    "max_concurrent": self.max_concurrent, "process_cpu_s": time.process_time()}

    def configure(self, *, latency_s: float | None = None, provider: dict[str, Any] | None = None,
                  reset: bool = True, keep_records: bool | None = None) -> None:
        """Set latency and provider behaviour (a `Provider`'s fields; {} = none), optionally reset."""
        if reset:
            self.reset()
        if keep_records is not None:
            self.keep_records = bool(keep_records)
        if latency_s is not None:
            self.latency_s = float(latency_s)
        if provider is not None:
            with self._lock:
                self.provider = Provider(**provider) if provider else None

    def start(self) -> "ScriptedServer":
        async def open_server() -> None:
            self._stopping = asyncio.Event()
            self._server = await asyncio.start_server(self._connection, "127.0.0.1", 0, backlog=2048)
            self._address = self._server.sockets[0].getsockname()[:2]

        self._loop.run_until_complete(open_server())
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="loopback-server")
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is None:
            return

        async def close() -> None:
            assert self._stopping is not None and self._server is not None
            self._stopping.set()  # releases hanging requests
            self._server.close()
            connections = [t for t in self._connections if not t.done()]
            for task in connections:  # idle keep-alive connections wait in readline
                task.cancel()
            await asyncio.gather(*connections, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._thread = None
        self._loop.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- to implement
    def _generation(self, recorded: RecordedRequest, action: Action) -> tuple[int, dict[str, str], bytes]:
        raise NotImplementedError

    def _route(self, method: str, path: str) -> str | None:
        """'generate' for a generation endpoint, 'models' for the model list, else None."""
        raise NotImplementedError

    def _models_body(self) -> bytes:
        raise NotImplementedError

    def _extract(self, recorded: RecordedRequest) -> None:
        """Fill `images`, `image_mimes` and `prompt` from the parsed body."""

    def _serve(self, route: str, recorded: RecordedRequest) -> tuple[int, dict[str, str], bytes] | None:
        """A subclass's own routes besides 'generate' and 'models' (None: 404)."""
        return None

    # -- internals
    def _next_action(self, recorded: RecordedRequest) -> Action:
        with self._lock:
            if self._queue:
                return self._queue.popleft()
        if self.responder is not None:
            action = self.responder(recorded)
            if action is not None:
                return action
        if self.provider is not None:
            with self._lock:
                action = self.provider.decide(self._in_flight, self.token_cost(recorded))
                budget = self.provider.budget()
            if action is None and budget:
                action = self._answer(recorded)
            if budget:
                action = dataclasses.replace(action, headers=budget)
            if action is not None:
                return action
        return self._answer(recorded)

    def _answer(self, recorded: RecordedRequest) -> Action:
        return answer(self.answer_fn(recorded) if self.answer_fn is not None else self.default_text)

    def token_cost(self, recorded: RecordedRequest) -> float:
        """What a request costs a provider's token budget (a subclass counts; 0 here)."""
        return 0.0

    async def _sleep(self, seconds: float) -> bool:
        """Sleep `seconds` unless the server stops first; True if it stopped."""
        assert self._stopping is not None
        if self._stopping.is_set():
            return True
        if seconds > 0:
            try:
                await asyncio.wait_for(self._stopping.wait(), seconds)
            except asyncio.TimeoutError:
                return False
            return True
        return False

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
            task.add_done_callback(self._connections.discard)
        try:
            while True:
                request_line = await reader.readline()
                if not request_line.strip():
                    break
                method, target, _version = request_line.decode("latin-1").split(None, 2)
                headers: dict[str, str] = {}
                while True:
                    line = await reader.readline()
                    if line in (b"\r\n", b"\n", b""):
                        break
                    name, _, value = line.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length") or 0)
                raw_body = await reader.readexactly(length) if length else b""
                result = await self._handle(method, target, headers, raw_body)
                if result is None:  # stopped while hanging: drop the connection, as a dead server
                    break
                status, response_headers, payload = result
                head = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}",
                        f"Content-Length: {len(payload)}", "Server: loopback"]
                head += [f"{k}: {v}" for k, v in response_headers.items()]
                writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + payload)
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    break
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        except asyncio.CancelledError:
            pass
        finally:
            writer.close()

    async def _handle(self, method: str, target: str, headers: dict[str, str],
                      raw_body: bytes) -> tuple[int, dict[str, str], bytes] | None:
        split = urllib.parse.urlsplit(target)
        path = urllib.parse.unquote(split.path)
        try:
            body = json.loads(raw_body) if raw_body else None
        except ValueError:
            body = None
        recorded = RecordedRequest(
            method=method, path=path + (f"?{split.query}" if split.query else ""),
            headers=headers, body=body, raw_body=raw_body, started=time.monotonic(),
        )
        json_headers = {"Content-Type": "application/json"}
        if path.startswith("/_loopback/"):  # control plane for clients in another process
            if path == "/_loopback/configure" and method == "POST":
                self.configure(**(body or {}))
            return 200, json_headers, json.dumps(self.stats()).encode()
        route = self._route(method, path)
        recorded.route = route
        if self.keep_records:
            with self._lock:
                self.requests.append(recorded)
        if route == "models":
            if self.models_status != 200:  # a provider whose listing is down
                return self._record(recorded, self.models_status, json_headers, json.dumps(
                    {"error": {"message": "model listing unavailable", "code": self.models_status}}).encode())
            return self._record(recorded, 200, json_headers, self._models_body())
        served = self._serve(route, recorded) if route not in (None, "generate") else None
        if served is not None:
            return self._record(recorded, *served)
        if route != "generate":
            return self._record(recorded, 404, json_headers, json.dumps(
                {"error": {"message": f"no route for {method} {path}", "code": 404}}).encode())
        try:
            self._extract(recorded)
        except Exception:  # a malformed request is the client's problem; answer anyway
            pass
        with self._lock:
            self._in_flight += 1
            self.max_concurrent = max(self.max_concurrent, self._in_flight)
        try:
            action = self._next_action(recorded)
            with self._lock:
                self.outcomes[action.kind] += 1
            if action.kind == "hang":
                task = asyncio.current_task()
                if task is not None:
                    self._hanging.add(task)
                try:
                    if await self._sleep(action.hang_s):
                        return None
                finally:
                    self._hanging.discard(task)  # type: ignore[arg-type]
                return self._record(recorded, 504, json_headers, b'{"error": "hung"}')
            if await self._sleep(self.latency_s if action.latency_s is None else action.latency_s):
                return None
            if action.kind == "raw":
                return self._record(recorded, action.status, {"Content-Type": action.content_type}, action.body or b"")
            if action.kind == "malformed":
                return self._record(recorded, 200, json_headers, b'{"choices": [{"mess')
            result = self._generation(recorded, action)
            if result[0] == 200 and action.kind == "answer":
                with self._lock:
                    self.answered[self.answer_key(recorded)] += 1
            return self._record(recorded, *result)
        finally:
            with self._lock:
                self._in_flight -= 1

    def _record(self, recorded: RecordedRequest, status: int, headers: dict[str, str],
                payload: bytes) -> tuple[int, dict[str, str], bytes]:
        recorded.status = status
        recorded.finished = time.monotonic()
        if self.keep_records:
            with self._lock:
                self.responses.append(payload)
        return status, headers, payload


def decode_data_url(url: str) -> tuple[str, bytes]:
    """'data:image/jpeg;base64,....' -> ('image/jpeg', bytes)."""
    header, _, data = url.partition(",")
    if not header.startswith("data:") or ";base64" not in header:
        raise ValueError("not a base64 data URL")
    return header[5:].split(";")[0], base64.b64decode(data, validate=True)


# ----------------------------------------------------------------------------- OpenAI


class OpenAIServer(ScriptedServer):
    """`POST /v1/chat/completions`, `GET /v1/models`; use `base_url` (…/v1) for clients."""

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def _route(self, method: str, path: str) -> str | None:
        if method == "POST" and path.rstrip("/") == "/v1/chat/completions":
            return "generate"
        if method == "GET" and path.rstrip("/") == "/v1/models":
            return "models"
        return None

    def _models_body(self) -> bytes:
        return json.dumps({"object": "list", "data": [
            {"id": m, "object": "model", "created": 0, "owned_by": "loopback"} for m in self.models
        ]}).encode()

    def _extract(self, recorded: RecordedRequest) -> None:
        texts: list[str] = []
        for message in (recorded.body or {}).get("messages", []):
            content = message.get("content")
            if isinstance(content, str):
                texts.append(content)
                continue
            for part in content or []:
                if part.get("type") == "text":
                    texts.append(part.get("text", ""))
                elif part.get("type") == "image_url" and self.keep_records:
                    mime, data = decode_data_url(part["image_url"]["url"])
                    recorded.image_mimes.append(mime)
                    recorded.images.append(data)
        recorded.prompt = "\n".join(texts)

    def token_cost(self, recorded: RecordedRequest) -> float:
        """OpenAI's count at admission: the prompt (~4 characters a token, 85 an image part) and
        the whole max_tokens of the answer."""
        body = recorded.body if isinstance(recorded.body, dict) else {}
        images = recorded.raw_body.count(b'"image_url"') // 2  # each part names its type and its field
        return max(1, len(recorded.prompt) // 4) + 85 * images + int(body.get("max_tokens") or 16)

    def _generation(self, recorded: RecordedRequest, action: Action) -> tuple[int, dict[str, str], bytes]:
        json_headers = {"Content-Type": "application/json", **dict(action.headers)}
        if action.kind == "rate_limited":
            headers = dict(json_headers)
            if action.retry_after is not None:
                headers["Retry-After"] = action.retry_after
            if action.retry_after_ms is not None:
                headers["retry-after-ms"] = action.retry_after_ms
            return 429, headers, json.dumps({"error": {
                "message": "Rate limit reached for requests", "type": "requests",
                "param": None, "code": "rate_limit_exceeded"}}).encode()
        if action.kind == "error":
            return action.status, json_headers, json.dumps({"error": {
                "message": action.message, "type": "server_error" if action.status >= 500 else "invalid_request_error",
                "param": None, "code": action.text}}).encode()
        model = (recorded.body or {}).get("model", "test-model")
        message: dict[str, Any] = {"role": "assistant", "content": None, "refusal": None}
        finish = "stop"
        if action.kind == "answer":
            message["content"] = action.text
        elif action.kind == "refusal":
            message["refusal"] = action.text
        elif action.kind == "content_filter":
            message["content"] = action.text
            finish = "content_filter"
        else:
            raise ValueError(f"OpenAIServer cannot perform action {action.kind!r}")
        prompt_tokens = max(1, len(recorded.prompt) // 4) + 85 * len(recorded.images)
        completion_tokens = max(1, len(message["content"] or message["refusal"] or "") // 4)
        payload = {
            "id": f"chatcmpl-{len(self.requests)}", "object": "chat.completion", "created": int(time.time()),
            "model": model, "system_fingerprint": "fp_loopback",
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        }
        return 200, json_headers, json.dumps(payload).encode()
