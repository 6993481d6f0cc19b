"""`models.<name>.options` of the VLM kinds (openai, gemini, transformers, mlx): the schema and
its validation, which `inference.config.parse_config` runs when the config loads.

Kept apart from `inference.models.vlm` (the adapter, with its HTTP and cache machinery) so that
loading a config imports only pydantic and the prompt templates.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator

from inference.config import ConfigError, ModelConfig, explain_errors
from inference.models.base import KindOptions
from inference.vlm.types import DEFAULT_DEADLINE_S

# Environment variable holding the API key of a kind whose default endpoint is a third-party API.
DEFAULT_API_KEY_ENV = {"openai": "OPENAI_API_KEY", "gemini": "GEMINI_API_KEY"}

# Prompt template used when `options.protocol.template` is not given.
DEFAULT_PROTOCOL_TEMPLATES = {
    "single": "chhua_single", "cot": "chhua_cot", "maj_at_k": "chhua_single",
    "retry_until_valid": "chhua_single", "context_carry": "tae_context_carry",
    "two_stage": "asanuma_two_stage", "n_class_without_neutral": "asanuma_6class",
    "free_description": "free_description",
}


class ProtocolOptions(KindOptions):
    """`models.<name>.options.protocol` of a VLM kind (see inference.vlm.protocols.ProtocolConfig)."""

    name: str = "single"
    template: str | None = None  # default: DEFAULT_PROTOCOL_TEMPLATES[name]
    k: int = Field(1, ge=1)  # samples (maj@k)
    temperature: float | None = Field(None, ge=0)  # default 0 (1 is Chhua's maj@5)
    max_tries: int = Field(10, ge=1)  # tries per step when retrying invalid answers
    retry_invalid: bool | None = None  # default: true for retry_until_valid only
    image_on_every_step: bool = False  # context_carry
    stored_as: str | None = None  # raw.predictions.protocol; default the name
    max_tokens: int = Field(256, ge=1)
    top_p: float | None = Field(None, gt=0, le=1)
    seed: int | None = None

    @field_validator("name")
    @classmethod
    def _known_protocol(cls, value: str) -> str:
        if value not in DEFAULT_PROTOCOL_TEMPLATES:
            raise ValueError(f"{value!r} is not a protocol; use one of: "
                             f"{', '.join(DEFAULT_PROTOCOL_TEMPLATES)}")
        return value

    @property
    def template_id(self) -> str:
        return self.template or DEFAULT_PROTOCOL_TEMPLATES[self.name]


class TierPrice(KindOptions):
    """USD per million tokens of one delivery tier."""

    input: float = Field(ge=0)
    output: float = Field(ge=0)


# Flex and Batch answers cost this share of the standard price unless `flex` / `batch` say
# otherwise (OpenAI and Gemini both bill them at half, 2025-26 price lists).
DISCOUNTED_TIER_SHARE = 0.5
PRICED_TIERS = ("standard", "flex", "batch")


class PriceOptions(KindOptions):
    """USD per million tokens, as the provider bills them: `input`/`output` at the standard
    tier; `flex` and `batch` their own prices (default: half the standard ones)."""

    input: float = Field(ge=0)
    output: float = Field(ge=0)
    flex: TierPrice | None = None
    batch: TierPrice | None = None

    def tier(self, name: str) -> TierPrice:
        """The price of tier `name` ('standard', 'flex' or 'batch')."""
        if name not in PRICED_TIERS:
            raise ValueError(f"no price tier {name!r}; tiers: {', '.join(PRICED_TIERS)}")
        if name == "standard":
            return TierPrice(input=self.input, output=self.output)
        own = getattr(self, name)
        if own is not None:
            return own
        return TierPrice(input=self.input * DISCOUNTED_TIER_SHARE, output=self.output * DISCOUNTED_TIER_SHARE)


def price_table(price: PriceOptions) -> dict[str, dict[str, float]]:
    """Every tier's price, resolved (raw.model_runs.prices)."""
    return {tier: price.tier(tier).model_dump() for tier in PRICED_TIERS}


class VLMOptions(KindOptions):
    """`models.<name>.options` of kinds openai, gemini, transformers, mlx."""

    model_id: str | None = None  # the provider's model name; default: the model's version
    base_url: str | None = None  # openai/gemini: another endpoint (vLLM, Ollama, a loopback server)
    # Environment variable holding the API key; null for a keyless local server.
    # Default OPENAI_API_KEY / GEMINI_API_KEY (see `api_key_variable`).
    api_key_env: str | None = None
    protocol: ProtocolOptions = ProtocolOptions()
    max_in_flight: int = Field(8, ge=1)
    requests_per_minute: float | None = Field(None, gt=0)
    tokens_per_minute: float | None = Field(None, gt=0)
    timeout_s: float = Field(60.0, gt=0)
    max_retries: int = Field(6, ge=0)  # errors and timeouts; a rate limit's wait is no retry
    # The run's deadline: requests still unanswered then (rate-limited, or never sent) are
    # stored as unanswered (raw.transport_failures kind 'deadline'); the next run asks only them.
    deadline_s: float | None = Field(DEFAULT_DEADLINE_S, gt=0)
    price_per_million_tokens: PriceOptions | None = None
    # How requests reach the provider (inference.vlm.delivery): standard; flex (half price,
    # slower, falls back to standard when the provider sheds it); batch (half price, answers
    # within the provider's batch window, submitted and collected by the warehouse); auto
    # (batch when `deliver_within_h` allows the batch window, else flex where offered).
    delivery: Literal["standard", "flex", "batch", "auto"] = "standard"
    deliver_within_h: float | None = Field(None, gt=0)  # for `auto`: when the answers are needed
    # The most this model may bill per run (USD at the served tiers' prices): a run whose
    # dry-run estimate exceeds it refuses to start; one whose billed tokens reach it stops sending.
    budget_usd: float | None = Field(None, gt=0)
    # Further keyword arguments of the chat backend (e.g. image_detail, extra_body for openai;
    # device, dtype for local backends).
    backend: dict[str, Any] = Field(default_factory=dict)

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
            raise ValueError(
                "give the NAME of an environment variable (e.g. OPENAI_API_KEY), never the key itself"
            )
        return value

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(f"give an http(s) URL such as http://localhost:8000/v1; got {value!r}")
        return value

    def api_key_variable(self, kind: str) -> str | None:
        """The variable to read the key from: the configured one, null for none, else the kind's default."""
        if "api_key_env" in self.model_fields_set:
            return self.api_key_env
        return DEFAULT_API_KEY_ENV.get(kind)


# The hint for an unknown key lists every allowed one, nested keys included.
_VLM_FIXES = {
    "extra_forbidden": (
        "unknown key; allowed: model_id, base_url, api_key_env, protocol {name, template, k, "
        "temperature, max_tries, retry_invalid, image_on_every_step, stored_as, max_tokens, top_p, "
        "seed}, max_in_flight, requests_per_minute, tokens_per_minute, timeout_s, max_retries, "
        "deadline_s, price_per_million_tokens {input, output, flex, batch}, delivery, "
        "deliver_within_h, budget_usd, backend"
    ),
}


def vlm_options(model: ModelConfig, cfg_path: Path | str | None = None) -> VLMOptions:
    """Validate the options of a VLM-kind model; errors name models.<name>.options.<key>."""
    where = f"models.{model.name}.options"
    prefix = f"{cfg_path}: " if cfg_path else ""
    opts = dict(model.options)
    if "base_url" in opts and model.kind not in ("openai", "gemini"):
        raise ConfigError(f"{prefix}{where}.base_url: kind {model.kind} runs locally and takes no "
                          f"base_url; remove it (or use kind openai for an OpenAI-compatible server)")
    if "api_key_env" in opts and model.kind not in ("openai", "gemini"):
        raise ConfigError(f"{prefix}{where}.api_key_env: kind {model.kind} needs no API key; remove it")
    try:
        options = VLMOptions(**opts)
    except ValidationError as exc:
        raise ConfigError(explain_errors(exc, Path(str(cfg_path)) if cfg_path else Path("benchmark.yaml"),
                                         where, fixes=_VLM_FIXES)) from None
    from inference.vlm.delivery import check_delivery

    try:
        check_delivery(model.kind, options)
    except ValueError as exc:
        raise ConfigError(f"{prefix}{where}.delivery: {exc}") from None
    from inference.vlm.prompts import PromptTemplateError, load_template
    from inference.vlm.protocols import check_template

    try:
        template = load_template(options.protocol.template_id)
        check_template(_protocol_probe(options.protocol), template)
    except (PromptTemplateError, ValueError) as exc:
        raise ConfigError(f"{prefix}{where}.protocol.template: {exc}") from None
    return options


def _protocol_probe(protocol: ProtocolOptions) -> Any:
    from inference.vlm.protocols import ProtocolConfig

    return ProtocolConfig(name=protocol.name, template=protocol.template_id, k=protocol.k,
                          max_tries=protocol.max_tries)
