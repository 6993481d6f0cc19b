"""Chat backend for local vision-language models on Apple silicon with `mlx-vlm`.

    backend = MlxBackend("mlx-community/Qwen2-VL-2B-Instruct-4bit")   # path or HF repo id
    response = await backend.complete(request)   # ChatResponse, or raises TransportError

Config (`models.<name>`, kind `mlx`): `options.model_id` (default: the version) is the model
path / repo id; `options.backend` holds the keyword arguments below.

This module imports on every platform (mlx is imported inside methods only). Constructing a
backend anywhere but macOS on Apple silicon (arm64) raises `MlxUnavailableError`
("mlx-vlm runs on Apple silicon only; use kind: transformers"): MLX has no Linux/Windows/x86
wheels, so the same model runs there through `inference.vlm.transformers_backend`.

- Loading: `mlx_vlm.load(model_path)` (a local directory, or a repo id that mlx-vlm fetches /
  finds in the Hugging Face cache; `HF_HUB_OFFLINE=1` keeps it offline), then
  `mlx_vlm.utils.load_config`.
- Prompts: the conversation (system, user, assistant turns, in order) goes through
  `mlx_vlm.prompt_utils.apply_chat_template(processor, config, messages, num_images=1)`, which
  puts the model's image token in the first user turn -- the request carries one image.
  PaliGemma checkpoints have no chat template; their conversation is flattened exactly as in
  the transformers backend (`paligemma_prompt`: "answer en <lower-case text>").
- Generation: `mlx_vlm.generate(model, processor, prompt, image=[path], max_tokens=...,
  temperature=..., top_p=...)` one request at a time (MLX uses the whole GPU per call; requests
  are serialised by a lock and run in a worker thread, so the event loop is not blocked).
  temperature 0 is greedy; with a seed, `mx.random.seed(seed)` is set before each sampled call,
  so a sampled answer repeats for the same seed, model, mlx and mlx-vlm versions.
- Response: text, input/output token counts when mlx-vlm reports them (GenerationResult's
  prompt_tokens / generation_tokens; older versions return a bare string: counts None),
  finish_reason 'length' when output_tokens reached max_tokens, else 'stop'; latency_ms.
  An unreadable image -> TransportError('client_error'); an exception while generating ->
  TransportError('server_error').
"""

from __future__ import annotations

import asyncio
import io
import os
import platform
import sys
import tempfile
import threading
import time
from typing import Any

from inference.vlm.types import ChatRequest, ChatResponse, TransportError, Turn

UNAVAILABLE_MESSAGE = "mlx-vlm runs on Apple silicon only; use kind: transformers"


class MlxUnavailableError(RuntimeError):
    """mlx / mlx-vlm cannot run here (not macOS on arm64, or mlx-vlm not installed)."""


def mlx_supported_platform() -> bool:
    return sys.platform == "darwin" and platform.machine() == "arm64"


def mlx_messages(turns: tuple[Turn, ...] | list[Turn]) -> list[dict[str, str]]:
    return [{"role": t.role, "content": t.text} for t in turns]


class MlxBackend:
    """ChatBackend over an mlx-vlm model (Apple silicon only)."""

    def __init__(self, model_path: str, *, name: str | None = None,
                 trust_remote_code: bool = False) -> None:
        if not mlx_supported_platform():
            raise MlxUnavailableError(
                f"{UNAVAILABLE_MESSAGE} (this is {sys.platform}/{platform.machine()})")
        try:
            from mlx_vlm import load
            from mlx_vlm.utils import load_config
        except ImportError as exc:
            raise MlxUnavailableError(
                f"mlx-vlm is not installed ({exc}); pip install mlx-vlm (Apple silicon only), "
                f"or use kind: transformers") from None
        self.model_path = model_path
        self.name = name or f"mlx:{model_path}"
        kwargs: dict[str, Any] = {"trust_remote_code": True} if trust_remote_code else {}
        self.model, self.processor = load(model_path, **kwargs)
        self.config = load_config(model_path, **kwargs)
        model_type = (self.config.get("model_type") if isinstance(self.config, dict)
                      else getattr(self.config, "model_type", None))
        self.family = model_type
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"MlxBackend({self.model_path!r})"

    def render_prompt(self, turns: tuple[Turn, ...]) -> str:
        if self.family == "paligemma":
            from inference.vlm.transformers_backend import paligemma_prompt

            return paligemma_prompt(turns)
        from mlx_vlm.prompt_utils import apply_chat_template

        return apply_chat_template(self.processor, self.config, mlx_messages(turns), num_images=1)

    async def complete(self, request: ChatRequest) -> ChatResponse:
        from PIL import Image, UnidentifiedImageError

        try:
            image = Image.open(io.BytesIO(request.image_bytes))
            image.load()
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise TransportError("client_error", f"{self.name}: image is not readable ({exc})") from None
        started = time.perf_counter()
        try:
            return await asyncio.to_thread(self._generate, request, started)
        except TransportError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise TransportError("server_error", f"{self.name}: generation failed: "
                                 f"{type(exc).__name__}: {exc}") from None

    def _generate(self, request: ChatRequest, started: float) -> ChatResponse:
        import mlx.core as mx
        from mlx_vlm import generate

        prompt = self.render_prompt(request.turns)
        params = request.params
        suffix = ".png" if request.image_mime == "image/png" else ".jpg"
        with self._lock, tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "image" + suffix)
            with open(path, "wb") as fh:
                fh.write(request.image_bytes)
            kwargs: dict[str, Any] = {"max_tokens": int(params.max_tokens), "verbose": False,
                                      "temperature": float(params.temperature)}
            if params.top_p is not None and params.temperature > 0:
                kwargs["top_p"] = float(params.top_p)
            if params.seed is not None and params.temperature > 0:
                mx.random.seed(int(params.seed))
            result = generate(self.model, self.processor, prompt, image=[path], **kwargs)
        text = result if isinstance(result, str) else getattr(result, "text", None)
        n_in = getattr(result, "prompt_tokens", None)
        n_out = getattr(result, "generation_tokens", None)
        finish = "length" if n_out is not None and n_out >= params.max_tokens else "stop"
        return ChatResponse(text=(text or "").strip(), refused=False, finish_reason=finish,
                            input_tokens=n_in, output_tokens=n_out,
                            latency_ms=(time.perf_counter() - started) * 1000.0)
