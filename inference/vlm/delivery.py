"""How a VLM model's requests reach the provider: standard, flex, batch, or auto.

`models.<name>.options.delivery`:
- `standard`: the chat endpoint at the standard price.
- `flex` (OpenAI): the same endpoint with `service_tier: "flex"`, billed at Batch prices, slower;
  when the provider sheds the request ("429 Resource Unavailable": flex capacity is short) it is
  sent again at once at the standard tier, which is never shed (`TieredBackend`).
- `batch`: the provider's batch API (OpenAI: JSONL files, `inference.vlm.batch`; Gemini: inline
  requests, `inference.vlm.gemini_batch`), answered within its batch window (24 h) at half
  price; submitted and collected by the warehouse.
- `auto`: batch when `deliver_within_h` is at least the provider's batch window, else flex where
  the provider offers it, else standard.

Every answer records the tier that served it (`ChatResponse.service_tier`: the provider's own
report when it sends one, else the tier asked for), stored in raw.predictions.preprocessing and
priced per tier in marts.answer_costs.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from inference.vlm.types import ChatBackend, ChatRequest, ChatResponse, TransportError

# Hours within which a provider promises a batch's answers (its "completion window").
BATCH_WINDOW_H = {"openai": 24.0, "gemini": 24.0}
FLEX_KINDS = ("openai",)
BATCH_KINDS = tuple(BATCH_WINDOW_H)


def check_delivery(kind: str, options: Any) -> None:
    """Raise ValueError (with the fix) when `options.delivery` is not offered by this kind."""
    delivery = options.delivery
    if delivery == "flex" and kind not in FLEX_KINDS:
        raise ValueError(f"kind {kind} has no flex tier (only {', '.join(FLEX_KINDS)}); use standard or batch")
    if delivery == "batch" and kind not in BATCH_KINDS:
        raise ValueError(f"kind {kind} has no batch delivery here (only {', '.join(BATCH_KINDS)}); use standard")
    if delivery == "auto":
        if kind not in FLEX_KINDS + BATCH_KINDS:
            raise ValueError(f"kind {kind} has one tier only; use standard")
        if options.deliver_within_h is None:
            raise ValueError("auto picks the tier by a deadline: set deliver_within_h (hours), "
                             "e.g. 48 for batch, 2 for flex")


def resolve_delivery(kind: str, options: Any) -> str:
    """The tier a run of this model uses: 'standard', 'flex' or 'batch' (`auto` resolved)."""
    if options.delivery != "auto":
        return options.delivery
    window = BATCH_WINDOW_H.get(kind)
    if window is not None and options.deliver_within_h >= window:
        return "batch"
    return "flex" if kind in FLEX_KINDS else "standard"


def is_flex_shed(error: TransportError) -> bool:
    """Whether the provider refused a flex request for lack of flex capacity (OpenAI: HTTP 429
    "Resource Unavailable"), as opposed to a rate limit of the account, which is waited out."""
    text = error.message.lower()
    return error.status == 429 and ("resource unavailable" in text or "resource_unavailable" in text)


class TieredBackend:
    """Sends through `primary` at `tier`; labels each answer with the tier that served it. With a
    `fallback` (flex: the same model at the standard tier), a request the provider sheds is sent
    there at once; `fallbacks` counts them."""

    def __init__(self, primary: ChatBackend, tier: str, fallback: ChatBackend | None = None) -> None:
        self.inner = primary
        self.tier = tier
        self.fallback = fallback
        self.name = getattr(primary, "name", type(primary).__name__)
        self.fallbacks = 0

    @property
    def limit_key(self) -> Any:  # one provider budget for both tiers
        return getattr(self.inner, "limit_key", None)

    def prepare(self) -> None:
        for backend in (self.inner, self.fallback):
            prepare = getattr(backend, "prepare", None)
            if prepare is not None:
                prepare()

    async def aclose(self) -> None:
        for backend in (self.inner, self.fallback):
            closer = getattr(backend, "aclose", None)
            if closer is not None:
                await closer()

    async def complete(self, request: ChatRequest) -> ChatResponse:
        try:
            return _labelled(await self.inner.complete(request), self.tier)
        except TransportError as error:
            if self.fallback is None or not is_flex_shed(error):
                raise
        self.fallbacks += 1
        return _labelled(await self.fallback.complete(request), "standard")


def _labelled(response: ChatResponse, asked: str) -> ChatResponse:
    if response.service_tier is not None:
        return response
    return dataclasses.replace(response, service_tier=asked)


__all__ = ["BATCH_KINDS", "BATCH_WINDOW_H", "FLEX_KINDS", "TieredBackend", "check_delivery",
           "is_flex_shed", "resolve_delivery"]
