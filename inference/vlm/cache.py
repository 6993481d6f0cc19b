"""A durable response cache for VLM calls: SQLite, one row per key, committed per response.

    cache = ResponseCache("data/cache/vlm_responses.sqlite")
    key = cache_key(model="gpt-4o", model_version="2024-08-06", prompt_hash=prompt_hash(request),
                    image_hash=image_hash(request.image_bytes), step="ask", sample_index=0,
                    attempt=0, params_key=request.params.key())
    cached = cache.get(key)            # ChatResponse or None (counts a hit or a miss)
    cache.put(key, response)           # True if stored, False if the key was already there

- WAL journal, `synchronous=NORMAL`, a busy timeout: several processes (a sensor run, a
  notebook, a killed-and-restarted job) can share one file; readers never block the writer.
- `insert or ignore` keeps the *first* answer for a key: a response that arrives twice (a
  retried request, two processes racing) is never stored twice and never overwritten.
- Each `put` is its own committed transaction, so a process killed at any moment loses at most
  the responses still in flight; a rerun asks only for the keys that are missing.
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
_FIELDS = tuple(f.name for f in dataclasses.fields(ChatResponse))


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
    return json.dumps(dataclasses.asdict(response), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def response_from_json(text: str) -> ChatResponse:
    data = json.loads(text)
    return ChatResponse(**{k: v for k, v in data.items() if k in _FIELDS})


class ResponseCache:
    """SQLite-backed `key -> ChatResponse` store (see the module docstring). Thread-safe;
    safe across processes. `hits` / `misses` count `get` outcomes in this object."""

    def __init__(self, path: str | Path, *, busy_timeout_s: float = 60.0) -> None:
        self.path = Path(path)
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

    def get(self, key: str) -> ChatResponse | None:
        with self._lock:
            row = self._conn.execute("select response from responses where key = ?", (key,)).fetchone()
            if row is None:
                self.misses += 1
                return None
            self.hits += 1
        return response_from_json(row[0])

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return self._conn.execute("select 1 from responses where key = ?", (key,)).fetchone() is not None

    def put(self, key: str, response: ChatResponse) -> bool:
        """Store `response` under `key` unless the key is already there; committed on return."""
        if not isinstance(response, ChatResponse):
            raise TypeError(f"ResponseCache.put stores ChatResponse objects, not {type(response).__name__}")
        payload = response_to_json(response)
        with self._lock:
            cursor = self._conn.execute(
                "insert or ignore into responses (key, response, created_at) values (?, ?, ?)",
                (key, payload, time.time()),
            )
            inserted = cursor.rowcount == 1
            if inserted:
                self.stored += 1
        return inserted

    def keys(self) -> set[str]:
        with self._lock:
            return {row[0] for row in self._conn.execute("select key from responses")}

    def __len__(self) -> int:
        with self._lock:
            return int(self._conn.execute("select count(*) from responses").fetchone()[0])

    def stats(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses, "stored": self.stored}

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> "ResponseCache":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
