"""A durable response cache for VLM calls: SQLite, one row per key, each answer committed as it arrives.

    cache = ResponseCache("data/cache/vlm_responses.sqlite")
    key = cache_key(model="gpt-4o", model_version="2024-08-06", prompt_hash=prompt_hash(request),
                    image_hash=image_hash(request.image_bytes), step="ask", sample_index=0,
                    attempt=0, params_key=request.params.key())
    cached = cache.get(key)            # ChatResponse or None (counts a hit or a miss)
    cache.put(key, response)           # True if stored, False if the key was already there
    cache.flush()                      # commit now (close() does too)

- WAL journal, `synchronous=NORMAL`, a busy timeout: several processes (a sensor run, a
  notebook, a killed-and-restarted job) can share one file; readers never block the writer.
- `insert or ignore` keeps the *first* answer for a key: a response that arrives twice (a
  retried request, two processes racing) is never stored twice and never overwritten.
- Each `put` is committed at once (`flush_every=1`, the default): an answer is durable the
  moment it arrives, so a process killed at any moment (kill -9) has lost only the requests it
  had in flight, which a rerun asks again (never stores twice). In WAL mode with
  `synchronous=NORMAL` a commit is an append to the WAL without an fsync: measured with
  `scripts/bench_api_runner.py --profile`, 0.10 against 0.06 CPU s per 1,000 answers for
  batches of 64 (+0.04 ms an answer, 2 % of the client's CPU; DEVELOPERS.md). A power loss may
  still lose the last commits (the WAL is synced at checkpoints). `flush_every` > 1 batches
  (one transaction per `flush_every` answers or `flush_s` seconds); `get`, `in`, `keys` and
  `len` see unflushed answers; `flush()` / `close()` commit them.
- Only `ChatResponse`s are stored (the engine never stores transport errors). Nothing else
  is written: no request headers, no API keys.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from inference.vlm.types import ChatRequest, ChatResponse

_SCHEMA = """
create table if not exists responses (
    key        text primary key,
    response   text not null,
    created_at real not null
)
"""
_FIELDS = tuple(f.name for f in dataclasses.fields(ChatResponse) if f.name != "budget")  # budget: not stored


def _sha256_json(payload: Any) -> str:
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def image_hash(image_bytes: bytes) -> str:
    return hashlib.sha256(image_bytes).hexdigest()


def prompt_hash(request: ChatRequest) -> str:
    """sha256 over the conversation (roles, texts, image placement), the image mime and the
    request's `variant` -- everything about the prompt except the image bytes and params."""
    return _sha256_json({
        "turns": [[t.role, t.text, t.with_image] for t in request.turns],
        "image_mime": request.image_mime,
        "variant": request.variant,
    })


def cache_key(
    *,
    model: str,
    model_version: str,
    prompt_hash: str,
    image_hash: str,
    step: str | int = "",
    sample_index: int = 0,
    attempt: int = 0,
    params_key: str,
) -> str:
    """sha256 of (model, model_version, prompt_hash, image_hash, step, sample_index, attempt,
    generation params key): the identity of one answer we want to keep."""
    return _sha256_json([model, model_version, prompt_hash, image_hash, str(step), int(sample_index),
                         int(attempt), params_key])


def request_cache_key(model: str, model_version: str, request: ChatRequest, *, step: str | int = "",
                      sample_index: int = 0, attempt: int = 0) -> str:
    """`cache_key` with the hashes taken from `request`."""
    return cache_key(model=model, model_version=model_version, prompt_hash=prompt_hash(request),
                     image_hash=image_hash(request.image_bytes), step=step, sample_index=sample_index,
                     attempt=attempt, params_key=request.params.key())


def response_to_json(response: ChatResponse) -> str:
    return json.dumps({name: getattr(response, name) for name in _FIELDS}, sort_keys=True,
                      separators=(",", ":"), ensure_ascii=False)


def response_from_json(text: str) -> ChatResponse:
    data = json.loads(text)
    return ChatResponse(**{k: v for k, v in data.items() if k in _FIELDS})


class ResponseCache:
    """SQLite-backed `key -> ChatResponse` store (see the module docstring). Thread-safe;
    safe across processes. `hits` / `misses` count `get` outcomes in this object."""

    def __init__(self, path: str | Path, *, busy_timeout_s: float = 60.0, flush_every: int = 1,
                 flush_s: float = 0.25) -> None:
        self.path = Path(path)
        self.flush_every = max(1, int(flush_every))
        self.flush_s = float(flush_s)
        self._unflushed: dict[str, str] = {}
        self._last_flush = time.monotonic()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.hits = 0
        self.misses = 0
        self.stored = 0
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(
            str(self.path), timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
        )
        self._conn.execute(f"pragma busy_timeout = {int(busy_timeout_s * 1000)}")
        mode = self._conn.execute("pragma journal_mode = wal").fetchone()[0]
        if str(mode).lower() != "wal":
            raise RuntimeError(f"{self.path}: could not switch the response cache to WAL mode (got {mode!r}); "
                               f"is it on a file system without shared memory support?")
        self._conn.execute("pragma synchronous = normal")
        self._conn.execute(_SCHEMA)

    def __repr__(self) -> str:
        return f"ResponseCache({str(self.path)!r}, hits={self.hits}, misses={self.misses})"

    def _stored_json(self, key: str) -> str | None:
        """Under the lock: the stored (or not yet flushed) JSON of `key`."""
        payload = self._unflushed.get(key)
        if payload is None:
            row = self._conn.execute("select response from responses where key = ?", (key,)).fetchone()
            payload = None if row is None else row[0]
        return payload

    def get(self, key: str) -> ChatResponse | None:
        with self._lock:
            payload = self._stored_json(key)
            if payload is None:
                self.misses += 1
                return None
            self.hits += 1
        return response_from_json(payload)

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return isinstance(key, str) and self._stored_json(key) is not None

    def put(self, key: str, response: ChatResponse) -> bool:
        """Store `response` under `key` unless the key is already there (True if stored);
        committed with its batch (see the module docstring)."""
        if not isinstance(response, ChatResponse):
            raise TypeError(f"ResponseCache.put stores ChatResponse objects, not {type(response).__name__}")
        payload = response_to_json(response)
        with self._lock:
            if self._stored_json(key) is not None:
                return False
            self._unflushed[key] = payload
            self.stored += 1
            if len(self._unflushed) >= self.flush_every or time.monotonic() - self._last_flush >= self.flush_s:
                self._flush_locked()
        return True

    def _flush_locked(self) -> None:
        if self._unflushed:
            now = time.time()
            self._conn.execute("begin")
            try:
                self._conn.executemany(
                    "insert or ignore into responses (key, response, created_at) values (?, ?, ?)",
                    [(k, v, now) for k, v in self._unflushed.items()])
                self._conn.execute("commit")
            except BaseException:
                self._conn.execute("rollback")
                raise
            self._unflushed.clear()
        self._last_flush = time.monotonic()

    def flush(self) -> None:
        """Commit every answer `put` so far."""
        with self._lock:
            self._flush_locked()

    def keys(self) -> set[str]:
        with self._lock:
            return {row[0] for row in self._conn.execute("select key from responses")} | set(self._unflushed)

    def __len__(self) -> int:
        return len(self.keys())

    def stats(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses, "stored": self.stored}

    def close(self) -> None:
        with self._lock:
            self._flush_locked()
            self._conn.close()

    def __enter__(self) -> "ResponseCache":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
