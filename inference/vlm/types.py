"""The shared interface between prompt protocols and chat backends (HTTP APIs, local models).

A protocol (`inference.vlm.protocols`) builds `ChatRequest`s; a backend answers each with a
`ChatResponse` or raises `TransportError` when no model answer was obtained. Retrying
transport errors is the caller's/engine's job; protocols only record them.

Pure Python, no third-party imports.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

ROLES = ("system", "user", "assistant")
IMAGE_MIMES = ("image/jpeg", "image/png")
# Clips, for backends that take video (gemini), by file extension: the Gemini API's spellings.
VIDEO_MIMES = {".mp4": "video/mp4", ".mpeg": "video/mpeg", ".mpg": "video/mpg", ".mov": "video/mov",
               ".avi": "video/avi", ".flv": "video/x-flv", ".webm": "video/webm", ".wmv": "video/wmv",
               ".3gp": "video/3gpp"}


@dataclass(frozen=True)
class Turn:
    """One message of a conversation."""

    role: str  # 'system' | 'user' | 'assistant'
    text: str
    with_image: bool = False  # the image of the request is attached to this turn

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"Turn.role must be one of {ROLES}; got {self.role!r}")


@dataclass(frozen=True)
class GenerationParams:
    temperature: float = 0.0
    max_tokens: int = 256
    top_p: float | None = None
    seed: int | None = None

    def key(self) -> str:
        """Stable JSON (sorted keys, no whitespace) for cache keys."""
        return json.dumps(
            {"temperature": float(self.temperature), "max_tokens": int(self.max_tokens),
             "top_p": None if self.top_p is None else float(self.top_p), "seed": self.seed},
            sort_keys=True, separators=(",", ":"),
        )


@dataclass(frozen=True)
class ChatRequest:
    turns: tuple[Turn, ...]
    image_bytes: bytes  # the image, or the clip for a backend that takes video
    image_mime: str  # 'image/jpeg' | 'image/png', or one of VIDEO_MIMES
    params: GenerationParams
    # Optional additions (defaults keep the interface above unchanged): which of the k samples
    # of maj@k (0-based) and which try of retry-until-valid (1-based) this request is. They tell
    # apart requests that are otherwise identical on purpose, so a response cache keyed on
    # `key()` does not hand one cached answer to all of them. Backends never send them.
    sample_index: int | None = None
    attempt: int | None = None

    @property
    def variant(self) -> str:
        """(sample, attempt) as hashed into `key()` and prompt hashes: one-way, never parsed
        back (readers use the fields); the spelling keeps existing response caches valid."""
        if self.sample_index is None and self.attempt is None:
            return ""
        return f"sample={self.sample_index or 0};attempt={self.attempt or 1}"

    def key(self) -> str:
        """sha256 over the turns, the image's sha256, its mime, the params and the variant.
        The backend's/model's own identity is not part of it; cache callers add it."""
        payload = {
            "turns": [[t.role, t.text, t.with_image] for t in self.turns],
            "image_sha256": hashlib.sha256(self.image_bytes).hexdigest(),
            "image_mime": self.image_mime,
            "params": json.loads(self.params.key()),
            "variant": self.variant,
        }
        canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ChatResponse:
    text: str | None  # None when the provider refused / blocked with no text
    refused: bool = False  # provider-level refusal or safety block with no answer
    finish_reason: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    latency_ms: float | None = None
    # the delivery tier that served the answer ('standard', 'flex', 'batch'): as the provider
    # reported it, else as asked (inference.vlm.delivery); prices it in marts.answer_costs
    service_tier: str | None = None
    # the provider's rate budget reported with the answer (inference.vlm.budget.RateBudget);
    # for the limiter only: never stored, never compared
    budget: Any = field(default=None, compare=False, repr=False)


TRANSPORT_ERROR_KINDS = (
    "rate_limited", "timeout", "server_error", "safety_block", "bad_response", "client_error",
    "deadline",  # still unanswered when the run's deadline passed (the engine's `deadline_s`)
    "budget",  # never sent: the run's billed cost had reached the model's budget_usd
)
# A run's deadline: rate-limit waits never use up a request's retries, so this bounds them. Six
# hours: longer than a slice of tens of thousands of requests takes under a typical tier's rpm,
# short enough that a run stuck on an exhausted quota ends the same working day.
DEFAULT_DEADLINE_S = 6 * 3600.0
RETRYABLE_KINDS = frozenset({"rate_limited", "timeout", "server_error", "bad_response"})


class TransportError(Exception):
    """No model answer was obtained (HTTP failure, timeout, malformed provider payload, ...)."""

    def __init__(
        self, kind: str, message: str, retry_after: float | None = None, status: int | None = None
    ) -> None:
        if kind not in TRANSPORT_ERROR_KINDS:
            raise ValueError(f"TransportError kind must be one of {TRANSPORT_ERROR_KINDS}; got {kind!r}")
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message
        self.retry_after = retry_after
        self.status = status
        self.budget: Any = None  # the provider's rate budget sent with the refusal, if any

    @property
    def retryable(self) -> bool:
        return self.kind in RETRYABLE_KINDS


@runtime_checkable
class ChatBackend(Protocol):
    name: str

    async def complete(self, request: ChatRequest) -> ChatResponse: ...
