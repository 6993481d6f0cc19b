"""What an API run spends: its plan (calls, tokens, cost per tier, without a call), the tokens
it is billed per delivery tier, and the model's `budget_usd` cap.

- `check_budget`: a run whose dry-run estimate (`VLMAdapter.plan`, at the model's delivery
  tier) exceeds `budget_usd` is refused before anything is sent, naming the estimate.
- `Metered` wraps the backend the engine calls: it sums the billed tokens of real (uncached)
  answers per tier that served them; once their cost reaches `budget_usd` it sends nothing
  more, and every later request of the run is a TransportError('budget') -- stored unanswered
  in raw.transport_failures, asked by the next run -- while what was answered is kept.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from inference.models.vlm_options import PRICED_TIERS
from inference.vlm.delivery import resolve_delivery
from inference.vlm.engine import estimate_tokens
from inference.vlm.types import ChatBackend, ChatRequest, ChatResponse, TransportError, Turn

log = logging.getLogger(__name__)

IMAGE_TOKENS_ESTIMATE = 800  # per attached image, for plans and the token bucket (deliberately high)
_STEPS_PER_SAMPLE = {"context_carry": 3, "two_stage": 2}


class BudgetExceeded(RuntimeError):
    """A run's dry-run estimate exceeds the model's budget_usd: nothing was sent."""


def check_budget(adapter: Any, images: Sequence[Any]) -> None:
    """Refuse to start a run whose dry-run estimate exceeds `budget_usd`, naming it."""
    budget = adapter.options.budget_usd
    if budget is None:
        return
    if adapter.options.price_per_million_tokens is None:
        raise BudgetExceeded(f"models.{adapter.cfg.name}: budget_usd {budget:g} needs price_per_million_tokens "
                             f"to price the run; add the provider's prices")
    plan = adapter.plan(images)
    if plan["projected_cost_usd"] > budget:
        raise BudgetExceeded(
            f"models.{adapter.cfg.name}: the dry-run estimate for {plan['n_images']} images is "
            f"${plan['projected_cost_usd']:.2f} at the {plan['delivery']} tier "
            f"({plan['expected_calls']} calls, ~{plan['projected_input_tokens']} input and <= "
            f"{plan['projected_output_tokens']} output tokens), over budget_usd {budget:g}: the run "
            f"is not started. Raise budget_usd, lower protocol.max_tokens or k, or use a cheaper "
            f"delivery ({', '.join(f'{t} ${c:.2f}' for t, c in plan['projected_cost_by_tier'].items())})")


class Metered:
    """Wraps the backend the engine calls: sums the tokens of real (uncached) answers per tier
    that served them; once their cost reaches `budget_usd` it sends nothing more (what is in
    flight still lands): each later request is a TransportError('budget'), stored unanswered."""

    def __init__(self, backend: ChatBackend, price: Any = None, budget_usd: float | None = None) -> None:
        self.inner = backend
        self.name = getattr(backend, "name", type(backend).__name__)
        self.tokens: dict[str, tuple[int, int]] = {}  # (input, output) per tier that served them
        self.price, self.budget_usd = price, budget_usd
        self.spent_usd = 0.0
        self.stopped = False

    def prepare(self) -> None:
        """The inner backend's client set-up (imports, pools), which the engine runs before its
        first call's timeout starts: without it a cold import counts as a slow answer."""
        prepare = getattr(self.inner, "prepare", None)
        if prepare is not None:
            prepare()

    async def complete(self, request: ChatRequest) -> ChatResponse:
        if self.stopped:
            raise TransportError("budget", f"{self.name}: not sent: the run's billed cost "
                                 f"${self.spent_usd:.4f} reached budget_usd {self.budget_usd:g}")
        response = await self.inner.complete(request)
        tier = response.service_tier or "standard"
        t_in, t_out = self.tokens.get(tier, (0, 0))
        self.tokens[tier] = (t_in + (response.input_tokens or 0), t_out + (response.output_tokens or 0))
        if self.price is not None and self.budget_usd is not None:
            tier_price = self.price.tier(tier if tier in PRICED_TIERS else "standard")
            self.spent_usd += ((response.input_tokens or 0) * tier_price.input
                               + (response.output_tokens or 0) * tier_price.output) / 1e6
            if self.spent_usd >= self.budget_usd and not self.stopped:
                self.stopped = True
                log.warning("%s: billed $%.4f reached budget_usd %g: sending nothing more this run",
                            self.name, self.spent_usd, self.budget_usd)
        return response


def calls_per_image(protocol: Any) -> tuple[int, int]:
    """(calls when every first try is valid, most calls with every retry) of a ProtocolConfig."""
    steps = _STEPS_PER_SAMPLE.get(protocol.name, 1)
    return protocol.k * steps, protocol.k * steps * protocol.tries


def plan_run(adapter: Any, images: Sequence[Any]) -> dict[str, Any]:
    """What running `adapter` (a VLMAdapter) on `images` would cost, without any call: calls,
    tokens (input: ~4 characters per token plus IMAGE_TOKENS_ESTIMATE per image; output: the
    max_tokens budget, an upper bound) and cost at price_per_million_tokens, at the model's
    delivery tier and at each tier."""
    protocol, template = adapter.protocol, adapter.template
    expected, most = calls_per_image(protocol)
    n = len(images)
    params = protocol.generation_params
    history: tuple[Turn, ...] = (Turn("system", template.system),) if template.system else ()
    per_sample_in = 0
    steps = template.steps if protocol.name in _STEPS_PER_SAMPLE else template.steps[:1]
    for i, step in enumerate(steps):
        text = step.render(emotion="neutral", valence=5) if step.placeholders else step.text
        history = history + (Turn("user", text, with_image=i == 0 or protocol.image_on_every_step),)
        request = ChatRequest(history, b"", "image/jpeg", params)
        per_sample_in += estimate_tokens(request, IMAGE_TOKENS_ESTIMATE) - params.max_tokens
        history = history + (Turn("assistant", "x" * 8),)
    input_tokens = per_sample_in * protocol.k * n
    output_tokens = params.max_tokens * expected * n
    price = adapter.options.price_per_million_tokens
    by_tier = None if price is None else {
        tier: round((input_tokens * price.tier(tier).input + output_tokens * price.tier(tier).output) / 1e6, 4)
        for tier in PRICED_TIERS}
    delivery = resolve_delivery(adapter.kind, adapter.options)
    return {
        "model": adapter.cfg.partition_key, "kind": adapter.kind, "model_id": adapter.model_id,
        "protocol": protocol.label, "template": template.id, "n_images": n,
        "expected_calls": expected * n, "max_calls": most * n,
        "projected_input_tokens": input_tokens, "projected_output_tokens": output_tokens,
        "projected_cost_usd": None if by_tier is None else by_tier[delivery], "external_api": adapter.external,
        "delivery": delivery, "projected_cost_by_tier": by_tier, "budget_usd": adapter.options.budget_usd,
    }


__all__ = ["IMAGE_TOKENS_ESTIMATE", "BudgetExceeded", "Metered", "calls_per_image", "check_budget", "plan_run"]
