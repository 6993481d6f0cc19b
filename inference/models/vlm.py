"""Vision-language models as model adapters: a prompt protocol over every image of a dataset.

(Over 400 lines: the adapter, its backend factory, response cache and external-API gate share one
model's options and state; the options schema already lives in vlm_options.py.)

Config (models.<name>, kinds openai / gemini / transformers / mlx; schema:
`inference.models.vlm_options.VLMOptions`, validated when the config loads):

    kind: openai
    version: gpt-4o-2024-08-06          # what is evaluated; model_id defaults to it
    options:
      model_id: gpt-4o-2024-08-06       # the provider's model name
      base_url: http://localhost:8000/v1   # openai/gemini: another endpoint (vLLM, Ollama, ...)
      api_key_env: OPENAI_API_KEY       # default OPENAI_API_KEY / GEMINI_API_KEY; null: no key
      protocol: {name: maj_at_k, k: 5, temperature: 1.0}   # template defaults per protocol
      max_in_flight: 16
      requests_per_minute: 500
      tokens_per_minute: 200000
      timeout_s: 60
      max_retries: 6                    # errors / timeouts; waits on a rate limit never use them
      deadline_s: 21600                 # the run's deadline; what is unanswered then waits for the next run
      price_per_million_tokens: {input: 2.5, output: 10}   # + flex / batch prices (default: half)
      delivery: standard                # flex | batch | auto (deliver_within_h); inference.vlm.delivery
      budget_usd: 25                    # refuse above the estimate; stop sending when billed reaches it
      backend: {image_detail: low}      # further keyword arguments of the chat backend

`VLMAdapter.predict(images)` runs `inference.vlm.protocols.run_protocol` for every image
through one `Engine` (bounded concurrency, rate limits, retries with backoff) and a durable
`ResponseCache` at `<cache_dir>/responses.sqlite`, keyed on (backend identity, version, prompt,
image hash, step, sample, attempt, generation params): re-running a finished partition makes no
call, and a killed run asks only for the answers it had not stored.

After `predict`: `.transport_failures` (rows for raw.transport_failures: requests that never got
a model answer after the engine's retries, including safety blocks -- never answers) and
`.usage` {calls, cache_hits, input_tokens, output_tokens, cost_usd} of this run.
`plan(images)` projects calls, tokens and cost without calling anything.

External APIs: an openai/gemini model whose endpoint is not on this machine (no base_url, or
one that is not localhost / a loopback address) sends face images to a third party; it runs
only on datasets with `allow_external_apis: true` and fails before any call otherwise.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import json
import logging
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from inference.config import EXTERNAL_API_KINDS, ConfigError, DatasetConfig, ModelConfig
from inference.datasets.base import ImageRecord
from inference.kinds import import_class
from inference.models.base import (
    Answer, BuildContext, Evaluation, EvaluationContext, ModelAdapter, Usage,
)
from inference.models.vlm_metering import (
    IMAGE_TOKENS_ESTIMATE, BudgetExceeded, Metered, calls_per_image, check_budget, plan_run,
)
from inference.models.vlm_options import VLMOptions, price_table, vlm_options
from inference.vlm.cache import ResponseCache, request_cache_key
from inference.vlm.delivery import TieredBackend, resolve_delivery
from inference.vlm.engine import Engine, estimate_tokens, limit_key, run_all
from inference.vlm.openai_backend import scrub
from inference.vlm.prompts import LABEL_SET, PromptTemplate, load_template
from inference.vlm.protocols import ProtocolConfig, check_template, run_protocol
from inference.vlm.types import VIDEO_MIMES, ChatBackend, ChatRequest, ChatResponse, GenerationParams

log = logging.getLogger(__name__)

CACHE_FILE = "responses.sqlite"
VIDEO_KINDS = ("gemini",)  # kinds whose backend takes a clip itself; the others get its frames


class ExternalAPIError(RuntimeError):
    """A dataset's images would be sent to an external API without the dataset's consent."""


# ----------------------------------------------------------------------------- external APIs


def is_local_url(url: str | None) -> bool:
    """True for http(s) URLs on this machine: localhost, *.localhost, loopback addresses."""
    if not url:
        return False
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def uses_external_api(cfg: ModelConfig, options: VLMOptions | None = None) -> bool:
    """Whether this model sends images off the machine."""
    if cfg.kind not in EXTERNAL_API_KINDS:
        return False
    options = options or vlm_options(cfg)
    return not is_local_url(options.base_url)


def check_external_api_allowed(cfg: ModelConfig, dataset: DatasetConfig,
                               options: VLMOptions | None = None) -> None:
    """Raise ExternalAPIError (naming the dataset key and the fix) unless allowed."""
    if uses_external_api(cfg, options) and not dataset.allow_external_apis:
        raise ExternalAPIError(
            f"model {cfg.name!r} (kind {cfg.kind}) would send the face images of dataset "
            f"{dataset.name!r} to an external API, and datasets.{dataset.name}.allow_external_apis "
            f"is not true; set 'allow_external_apis: true' under datasets.{dataset.name} if the "
            f"images' licence and consent allow it, or point models.{cfg.name}.options.base_url "
            f"at a local server"
        )


# ----------------------------------------------------------------------------- backends


def build_backend(cfg: ModelConfig, options: VLMOptions) -> ChatBackend:
    """The chat backend of a VLM kind (reads no key into memory: backends read it per client)."""
    model_id = options.model_id or cfg.provider_version
    extra = dict(options.backend)
    if cfg.kind == "openai":
        from inference.vlm.openai_backend import OpenAIChatBackend

        extra.setdefault("max_connections", max(64, options.max_in_flight * 2))

        def openai_backend(**tier_body: str) -> OpenAIChatBackend:
            body = {**dict(extra.get("extra_body") or {}), **tier_body}
            return OpenAIChatBackend(model_id, base_url=options.base_url,
                                     api_key_env=options.api_key_variable("openai"),
                                     timeout_s=options.timeout_s, **{**extra, "extra_body": body})

        if resolve_delivery(cfg.kind, options) == "flex":  # shed flex requests go out at standard
            return TieredBackend(openai_backend(service_tier="flex"), "flex", fallback=openai_backend())
        return TieredBackend(openai_backend(), "standard")
    if cfg.kind == "gemini":
        from inference.vlm.gemini_backend import GeminiBackend

        extra.setdefault("max_connections", max(64, options.max_in_flight * 2))
        return TieredBackend(GeminiBackend(model_id, api_key_env=options.api_key_variable("gemini"),
                                           base_url=options.base_url, timeout_s=options.timeout_s, **extra),
                             "standard")
    if cfg.kind == "transformers":
        cls = import_class("inference.vlm.transformers_backend:TransformersBackend", cfg.kind, f"models.{cfg.name}",
                           ConfigError)
        return cls(model_id, **extra)
    if cfg.kind == "mlx":
        cls = import_class("inference.vlm.mlx_backend:MlxBackend", cfg.kind, f"models.{cfg.name}", ConfigError)
        return cls(model_id, **extra)
    raise ConfigError(f"models.{cfg.name}: kind {cfg.kind!r} is not a VLM kind")


BACKEND_FACTORIES: dict[str, Callable[[ModelConfig, VLMOptions], ChatBackend]] = {
    kind: build_backend for kind in ("openai", "gemini", "transformers", "mlx")
}


def protocol_request_key(model: str, version: str, template: PromptTemplate, protocol: str,
                         request: ChatRequest) -> str:
    """The response-cache key of a protocol's request (also a batch request's custom_id)."""
    step = sum(1 for t in request.turns if t.role == "user")
    return request_cache_key(
        model, version, request, step=f"{protocol}/{template.id}@{template.hash}/{step}",
        sample_index=request.sample_index or 0, attempt=request.attempt or 1,
    )


class _CachedEngine:
    """The ChatBackend a protocol sees: every request goes through the engine with a cache key."""

    def __init__(self, engine: Engine, *, model: str, version: str, template: PromptTemplate,
                 protocol: str) -> None:
        self.engine = engine
        self.model, self.version = model, version
        self.template, self.protocol = template, protocol
        self.name = getattr(engine.backend, "name", "vlm")

    def key(self, request: ChatRequest) -> str:
        return protocol_request_key(self.model, self.version, self.template, self.protocol, request)

    async def complete(self, request: ChatRequest) -> ChatResponse:
        return await self.engine.complete(request, cache_key=self.key(request))


# ----------------------------------------------------------------------------- adapter


def image_payload(image: ImageRecord) -> tuple[bytes, str]:
    """The bytes sent for an image (the file itself for JPEG/PNG, else a PNG conversion) or a
    clip (the file itself), and their mime type."""
    if image.media_type == "video":
        mime = VIDEO_MIMES.get(Path(image.path).suffix.lower())
        if mime is None:
            raise ValueError(f"{image.path}: no video type for {Path(image.path).suffix!r} (known: "
                             f"{', '.join(VIDEO_MIMES)}); convert the clip, or set the model's "
                             f"`frames: middle` to send frames instead")
        return Path(image.path).read_bytes(), mime
    data = Path(image.path).read_bytes()
    if data[:3] == b"\xff\xd8\xff":
        return data, "image/jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return data, "image/png"
    import io

    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        out = io.BytesIO()
        img.convert("RGB").save(out, format="PNG")
    return out.getvalue(), "image/png"


def _run_sync(coro: Any) -> Any:
    """asyncio.run, also from a thread that already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            box["error"] = exc

    thread = threading.Thread(target=target, name="vlm-predict")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


class VLMAdapter(ModelAdapter):
    """A VLM kind as a model adapter (see the module docstring). Options: `VLMOptions`, validated
    when the config loads (inference.config)."""

    label_set = LABEL_SET

    def __init__(
        self,
        cfg: ModelConfig,
        cache_dir: Path | str,
        *,
        options: VLMOptions | None = None,
        dataset: DatasetConfig | None = None,
        backend: ChatBackend | None = None,
    ) -> None:
        """`dataset`: the dataset about to be answered (checked against the external-API rule;
        without it, an external endpoint is refused). `backend`: use this chat backend instead
        of the one built from the kind (local backends, tests)."""
        self.cfg = cfg
        self.kind = cfg.kind
        self.accepts_video = cfg.kind in VIDEO_KINDS
        self.options = options or vlm_options(cfg)
        self.model_id = self.options.model_id or cfg.provider_version
        self.cache_path = Path(cache_dir) / CACHE_FILE
        self.dataset = dataset
        popts = self.options.protocol
        self.protocol = ProtocolConfig(
            name=popts.name, template=popts.template_id, k=popts.k, temperature=popts.temperature,
            max_tries=popts.max_tries,
            params=GenerationParams(temperature=0.0, max_tokens=popts.max_tokens, top_p=popts.top_p,
                                    seed=popts.seed),
            retry_invalid=popts.retry_invalid, image_on_every_step=popts.image_on_every_step,
            stored_as=popts.stored_as,
        )
        self.template = load_template(self.protocol.template)
        check_template(self.protocol, self.template)
        self.external = uses_external_api(cfg, self.options)
        if dataset is not None:
            check_external_api_allowed(cfg, dataset, self.options)
        self._backend = backend
        self.weights_sha256 = self._identity_hash()
        self.transport_failures: list[dict[str, Any]] = []
        self.usage: dict[str, Any] = self._usage(0, 0, {})

    @classmethod
    def from_config(cls, cfg: ModelConfig, cache_dir: Path | str, *,
                    dataset: DatasetConfig | None = None) -> VLMAdapter:
        return cls(cfg, cache_dir, dataset=dataset)

    @classmethod
    def build(cls, cfg: ModelConfig, ctx: BuildContext) -> VLMAdapter:
        return cls(cfg, ctx.cache_dir, dataset=ctx.dataset_config)

    def evaluate(self, images: Sequence[ImageRecord], context: EvaluationContext) -> Evaluation:
        """Every answer about `images` through the engine; requests that got no answer are
        transport failures, and the run's calls, cache hits, tokens and cost its usage."""
        answers = self.predict(images, progress=context.progress, use_tqdm=context.show_progress_bar,
                               batch_ledger=context.batch_ledger)
        return Evaluation(answers=answers, label_set=self.label_set, weights_sha256=self.weights_sha256,
                          transport_failures=list(self.transport_failures), usage=Usage(**self.usage))

    def answer_protocol(self) -> str:
        return self.protocol.label

    def __repr__(self) -> str:
        return f"VLMAdapter({self.cfg.partition_key!r}, kind={self.kind!r}, protocol={self.protocol.label!r})"

    # -- identity
    def _identity_hash(self) -> str:
        """sha256 of what defines the answers: kind, model id, version, endpoint, protocol,
        template hash (never the key: only the variable's name is part of the options)."""
        payload = {
            "kind": self.kind, "model_id": self.model_id, "version": self.cfg.version,
            "base_url": self.options.base_url, "protocol": self.options.protocol.model_dump(),
            "template_hash": self.template.hash, "backend": self.options.backend,
        }
        canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    @property
    def cache_model(self) -> str:
        """Model identity in cache keys: kind, model id and, for HTTP kinds, the endpoint."""
        endpoint = self.options.base_url or "default" if self.kind in EXTERNAL_API_KINDS else "local"
        return f"{self.kind}:{self.model_id}@{endpoint}"

    # -- guards
    def _check_external(self) -> None:
        if not self.external:
            return
        if self.dataset is None:
            raise ExternalAPIError(
                f"model {self.cfg.name!r} (kind {self.kind}) calls an external API; build it with "
                f"the dataset's config (build_model(..., dataset_config=...)) so that "
                f"datasets.<name>.allow_external_apis can be checked"
            )
        check_external_api_allowed(self.cfg, self.dataset, self.options)

    def _check_budget(self, images: Sequence[ImageRecord]) -> None:
        check_budget(self, images)

    def _secret(self) -> str | None:
        var = self.options.api_key_variable(self.kind) if self.kind in EXTERNAL_API_KINDS else None
        return os.environ.get(var) if var else None

    def _usage(self, calls: int, hits: int, tokens: dict[str, tuple[int, int]]) -> dict[str, Any]:
        """Calls, cache hits, tokens and USD of a run; `tokens`: (input, output) per served tier."""
        price = self.options.price_per_million_tokens
        cost = None
        if price is not None:
            cost = round(sum(t_in * price.tier(tier).input + t_out * price.tier(tier).output
                             for tier, (t_in, t_out) in tokens.items()) / 1e6, 6)
        return {"calls": calls, "cache_hits": hits, "input_tokens": sum(t[0] for t in tokens.values()),
                "output_tokens": sum(t[1] for t in tokens.values()), "cost_usd": cost,
                "prices": None if price is None else price_table(price)}

    # -- predict
    def predict(
        self,
        images: Sequence[ImageRecord],
        batch_size: int | None = None,
        *,
        progress: Callable[[int, int], Any] | None = None,
        use_tqdm: bool = False,
        batch_ledger: Any = None,
    ) -> list[Answer]:
        """Every answer (steps, samples, tries) about `images`, in image order; requests that got
        no answer land in `.transport_failures`. `progress(done, total)` counts images.
        Batch delivery (`batch_ledger`: the slice's raw.api_batches) runs one round
        (`inference.models.vlm_batch`) and raises BatchPending until every answer is in."""
        del batch_size  # the engine's max_in_flight bounds concurrency
        self._check_external()
        self._check_budget(images)
        backend = self._backend
        if backend is None:
            try:
                backend = BACKEND_FACTORIES[self.kind](self.cfg, self.options)
            except RuntimeError as exc:  # e.g. the key's environment variable is not set
                raise RuntimeError(f"models.{self.cfg.name}: {exc}") from None
        if resolve_delivery(self.kind, self.options) == "batch":
            return self._predict_batch(backend, list(images), batch_ledger)
        return _run_sync(self._predict(backend, list(images), progress, use_tqdm))

    def _predict_batch(self, backend: ChatBackend, images: list[ImageRecord], ledger: Any) -> list[Answer]:
        from inference.models.vlm_batch import run_round

        if ledger is None:
            raise RuntimeError(f"models.{self.cfg.name}: delivery batch keeps its batches in the warehouse "
                               f"(raw.api_batches); evaluate it through the pipeline (evaluate_slice), "
                               f"which passes the slice's ledger")
        results, billed = run_round(self, backend, images, ledger)
        return self._outcome(images, results, calls=sum(len(r.custom_ids) for r in billed), hits=0,
                             tokens={"batch": (sum(r.input_tokens or 0 for r in billed),
                                               sum(r.output_tokens or 0 for r in billed))})

    def request_key(self, request: ChatRequest) -> str:
        """The response-cache key of one of this model's protocol requests."""
        return protocol_request_key(self.cache_model, self.cfg.version, self.template, self.protocol.label,
                                    request)

    async def _predict(self, backend: ChatBackend, images: list[ImageRecord],
                       progress: Callable[[int, int], Any] | None, use_tqdm: bool) -> list[Answer]:
        metered = Metered(backend, self.options.price_per_million_tokens, self.options.budget_usd)
        cache = ResponseCache(self.cache_path)
        opts = self.options
        engine = Engine(
            metered, max_in_flight=opts.max_in_flight, requests_per_minute=opts.requests_per_minute,
            tokens_per_minute=opts.tokens_per_minute, max_retries=opts.max_retries,
            deadline_s=opts.deadline_s, timeout_s=opts.timeout_s, cache=cache,
            token_estimator=lambda r: estimate_tokens(r, IMAGE_TOKENS_ESTIMATE),
            shared_key=limit_key(backend),  # one window and budget per provider+model in this process
        )
        chat = _CachedEngine(engine, model=self.cache_model, version=self.cfg.version,
                             template=self.template, protocol=self.protocol.label)
        # at most this many images are read and in flight at once (each image's steps are sequential)
        gate = asyncio.Semaphore(max(2 * opts.max_in_flight, 4))

        async def one(image: ImageRecord):
            async with gate:
                data, mime = image_payload(image)
                return await run_protocol(chat, self.protocol, image, data, mime, LABEL_SET,
                                          template=self.template)

        try:
            results = await run_all([one(img) for img in images], progress=progress, use_tqdm=use_tqdm,
                                    desc=f"{self.cfg.partition_key}")
        finally:
            cache.close()
            closer = getattr(backend, "aclose", None)
            if closer is not None:
                try:
                    await closer()
                except Exception:  # noqa: BLE001 - closing is best effort
                    pass
        answers = self._outcome(images, results, calls=engine.stats["calls"], hits=engine.stats["cache_hits"],
                                tokens=metered.tokens)
        self.usage["stopped_at_budget"] = metered.stopped
        self.usage["rate_limited_calls"] = engine.stats["error:rate_limited"]
        self.usage["concurrency"] = engine.concurrency_report()  # the window over time (run metadata)
        return answers

    def _outcome(self, images: list[ImageRecord], results: list[Any], *, calls: int, hits: int,
                 tokens: dict[str, tuple[int, int]]) -> list[Answer]:
        """The answers of every image; transport failures and usage kept on the adapter."""
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]
        secret = self._secret()
        answers: list[Answer] = []
        failures: list[dict[str, Any]] = []
        for image, result in zip(images, results):
            answers.extend(result.answers)
            for f in result.failures:
                failures.append({
                    "image_id": image.image_id, "image_hash": image.image_hash,
                    "protocol": self.protocol.label, "step": f.step,
                    "step_name": f.step_name or "", "sample_index": f.sample_index,
                    "attempt": f.attempt, "kind": f.kind, "status": f.status,
                    "message": scrub(f.message, secret),
                })
        self.transport_failures = failures
        self.usage = self._usage(calls, hits, tokens)
        return answers

    # -- plan
    def calls_per_image(self) -> tuple[int, int]:
        """(calls when every first try is valid, most calls with every retry)."""
        return calls_per_image(self.protocol)

    def plan(self, images: Sequence[ImageRecord]) -> dict[str, Any]:
        """What running on `images` would cost, without any call (`vlm_metering.plan_run`)."""
        return plan_run(self, images)

__all__ = [
    "BACKEND_FACTORIES", "BudgetExceeded", "CACHE_FILE", "ExternalAPIError", "VLMAdapter", "build_backend",
    "check_external_api_allowed", "image_payload", "is_local_url", "uses_external_api",
]
