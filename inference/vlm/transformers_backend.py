"""Chat backend for local vision-language models run with Hugging Face `transformers`.

(Over 400 lines: one backend class -- loading, per-family prompts, micro-batching -- and ~70
lines of docstring on its families and decoding; the parts share the loaded model.)

    backend = TransformersBackend("google/paligemma-3b-mix-224")         # from the HF hub cache
    backend = TransformersBackend("/models/gemma-3-4b-it", device="cuda", dtype="bfloat16")
    response = await backend.complete(request)   # ChatResponse, or raises TransportError

Config (`models.<name>`, kind `transformers`): `options.model_id` (default: the version) is the
first argument; `options.backend` holds the keyword arguments below, e.g.
`backend: {device: cuda, dtype: bfloat16, max_batch_size: 16}`.

Families (`family=None` reads `model_type` from the checkpoint's config.json):

- ``paligemma``  PaliGemma (1 and 2). No chat template: the prompt is
  ``<image><bos>{task prefix} {lower-case text}\\n`` as the model was trained (Chhua et al. send
  the GPT-4o prompt in lower case behind ``answer en``). A text that already starts with a task
  prefix (``answer en ...``, as template `paligemma_answer_en` does) keeps it; any other gets
  ``answer en``. PaliGemma is single-turn, so a conversation is FLATTENED into one prompt: the
  system text, then every earlier user text and model answer, in order, then the current
  question, joined by spaces (lower-cased; a task prefix leading a user text is moved to the
  front, once) behind one task prefix -- e.g. step 3 of a context-carry conversation reads
  ``answer en what is the facial expression ... happy you identified this face as happy ...
  3 you identified ... how intense ...``. This is an approximation of carrying context, not something the model was trained on.
- ``gemma3``, ``mllama`` (LLaMA-3.2-Vision), ``qwen2_vl`` (and ``qwen2_5_vl``): the processor's
  own chat template (`processor.apply_chat_template`). The image goes at the start of the first
  turn marked `with_image` (the first user turn when none is marked); the request carries one
  image, so later turns marked `with_image` do not repeat it (it is already in the context).
  System turns are sent as plain strings, other text turns as text content.

Weights. `model_path_or_id` is a local directory (as written by `save_pretrained` or
`hf download --local-dir`) or a hub repo id looked up in the user's Hugging Face cache
(`HF_HOME` / `HF_HUB_CACHE`). With `local_files_only=True` (the default; always when
`HF_HUB_OFFLINE=1`) nothing is downloaded: a model that is not there fails at construction
with the repo id, the revision, the cache directory searched and the command that fetches it.
`local_files_only=False` lets `huggingface_hub` download into the cache.

Other arguments: `revision` (hub revision; default main), `processor_kwargs` (passed to
`AutoProcessor.from_pretrained`, e.g. Qwen2-VL's image budget
`{size: {shortest_edge: 3136, longest_edge: 401408}}` -- by default a 1350x1350 London Set
face becomes ~2,300 image tokens), `name` (the backend's name; default
`transformers:<model_path_or_id>`).

Micro-batching. Concurrent `complete` calls are queued; one worker thread (so the event loop is
never blocked) takes up to `max_batch_size` queued requests with the same decoding settings
(greedy vs. sampling, temperature, top_p, max_tokens) as soon as that many are waiting, or when
the oldest has waited `batch_wait_ms`, and answers them with ONE `model.generate` call over the
left-padded batch. The engine's `max_in_flight` must be >= `max_batch_size` for batches to fill.
`generate_calls` / `batch_sizes` count what ran.

Decoding. temperature == 0: greedy (`do_sample=False`), deterministic; with float32 weights,
batched and one-at-a-time answers agree (left padding is masked) -- in bfloat16/float16,
padding can change the rounding of a few logits and, rarely, a near-tie token. temperature > 0:
sampling from the full distribution at that temperature with `top_p` (default 1.0; the
checkpoint's own `top_k` default is switched off so the setting matches the API backends).
Seeds: transformers' `generate` draws from the global torch RNG (it takes no
`torch.Generator`), so the worker calls `torch.manual_seed(seed)` before each sampled batch,
`seed` being the `params.seed` of the batch's first request. One RNG stream serves the whole
batch, so a sampled answer is reproducible only for the same batch composition and order, the
same device, dtype and library versions (GPU kernels may be non-deterministic besides). For
answers that depend only on their own seed use `max_batch_size=1`.

Response. `text` (special tokens removed, stripped), `finish_reason` 'stop' (end-of-sequence
generated) or 'length', `input_tokens` (the prompt's tokens incl. image placeholders, padding
excluded), `output_tokens` (generated tokens incl. the end-of-sequence token, padding
excluded), `latency_ms` (from the `complete` call to the answer: queueing + the batch's
generate). Errors: an image PIL cannot read -> TransportError('client_error'); an exception in
preprocessing or generation (e.g. out of GPU memory) -> TransportError('server_error').
"""

from __future__ import annotations

import asyncio
import copy
import io
import logging
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inference.vlm.types import ChatRequest, ChatResponse, TransportError, Turn

log = logging.getLogger(__name__)

FAMILIES = ("paligemma", "gemma3", "mllama", "qwen2_vl", "qwen2_5_vl")
DEVICES = ("cpu", "cuda", "auto")
DTYPES = ("float32", "bfloat16", "float16", "auto")
PALIGEMMA_DEFAULT_PREFIX = "answer en"
# PaliGemma task prefixes (big_vision): 'answer en', 'caption es', 'describe en', 'ocr', ...
_PALI_PREFIX_RE = re.compile(
    r"^\s*((?:answer|question|caption|describe|ocr|detect|segment)(?:\s+[a-z]{2}(?:-[a-z]{2})?)?)"
    r"(?=\s|$)", re.IGNORECASE)


class ModelNotAvailableError(RuntimeError):
    """The weights are neither at the given path nor in the local Hugging Face cache."""


# ----------------------------------------------------------------------------- prompts


def _squash(text: str) -> str:
    return " ".join(text.split())


def paligemma_prompt(turns: tuple[Turn, ...] | list[Turn]) -> str:
    """The single PaliGemma prompt for a conversation (without <image>/<bos>; see module doc)."""
    prefix: str | None = None
    parts: list[str] = []
    for turn in turns:
        text = _squash(turn.text)
        if turn.role == "user":
            match = _PALI_PREFIX_RE.match(text)
            if match:
                prefix = prefix or _squash(match.group(1)).lower()
                text = text[match.end():].strip()
        if text:
            parts.append(text.lower())
    return f"{prefix or PALIGEMMA_DEFAULT_PREFIX} {' '.join(parts)}".strip()


def chat_messages(turns: tuple[Turn, ...] | list[Turn]) -> list[dict[str, Any]]:
    """Chat-template messages with the image at the first turn marked with_image."""
    image_at = next((i for i, t in enumerate(turns) if t.with_image), None)
    if image_at is None:
        image_at = next((i for i, t in enumerate(turns) if t.role == "user"), None)
    messages: list[dict[str, Any]] = []
    for i, turn in enumerate(turns):
        if i == image_at:
            messages.append({"role": turn.role, "content": [
                {"type": "image"}, {"type": "text", "text": turn.text}]})
        elif turn.role == "system":
            messages.append({"role": "system", "content": turn.text})
        else:
            messages.append({"role": turn.role,
                             "content": [{"type": "text", "text": turn.text}]})
    return messages


# ----------------------------------------------------------------------------- loading


def _offline_env() -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return True
    try:
        from huggingface_hub import constants

        return bool(constants.HF_HUB_OFFLINE)
    except Exception:  # noqa: BLE001 - pragma: no cover - old hub versions
        return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def _looks_like_path(value: str) -> bool:
    return (value.startswith((".", "~", os.sep)) or os.path.isabs(value)
            or value.count("/") > 1 or "\\" in value)


def resolve_model_dir(model_path_or_id: str, *, revision: str | None = None,
                      local_files_only: bool = True) -> Path:
    """A local directory holding the checkpoint: the path itself, or the hub snapshot."""
    expanded = Path(os.path.expanduser(model_path_or_id))
    if expanded.is_dir():
        if not (expanded / "config.json").is_file():
            raise ModelNotAvailableError(
                f"{expanded} has no config.json: point model_path_or_id at the directory "
                f"that `save_pretrained` / `hf download --local-dir` wrote")
        return expanded
    if _looks_like_path(model_path_or_id):
        raise ModelNotAvailableError(
            f"model directory {expanded} does not exist; download the weights into it with "
            f"`hf download <repo id> --local-dir {expanded}` (older huggingface_hub: "
            f"`huggingface-cli download <repo id> --local-dir {expanded}`)")
    from huggingface_hub import constants, snapshot_download

    offline = local_files_only or _offline_env()
    rev = revision or "main"
    try:
        return Path(snapshot_download(model_path_or_id, revision=revision,
                                      local_files_only=offline))
    except Exception as exc:  # noqa: BLE001 - not cached, gated repo, HTTP errors, ...
        why = ("HF_HUB_OFFLINE is set" if _offline_env()
               else "local_files_only=True" if local_files_only else f"{type(exc).__name__}: {exc}")
        raise ModelNotAvailableError(
            f"model {model_path_or_id!r} (revision {rev!r}) is not in the Hugging Face cache "
            f"{constants.HF_HUB_CACHE} and nothing is downloaded ({why}). Download it first: "
            f"`hf download {model_path_or_id} --revision {rev}` (older huggingface_hub: "
            f"`huggingface-cli download {model_path_or_id} --revision {rev}`; gated models such "
            f"as PaliGemma/Gemma/Llama need the licence accepted on huggingface.co and "
            f"`hf auth login`), or download it anywhere with `--local-dir DIR` and give DIR as "
            f"the model path (models.<name>.options.model_id), or pass local_files_only=False "
            f"to let the backend download it"
        ) from None


# ----------------------------------------------------------------------------- batching


@dataclass
class _Pending:
    prompt: str
    image: Any  # PIL.Image
    request: ChatRequest
    key: tuple
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future
    enqueued: float = field(default_factory=time.monotonic)


def _decode_key(request: ChatRequest) -> tuple:
    p = request.params
    if p.temperature <= 0:
        return ("greedy", int(p.max_tokens))
    return ("sample", float(p.temperature), float(p.top_p if p.top_p is not None else 1.0),
            int(p.max_tokens))


class TransformersBackend:
    """ChatBackend over a local transformers VLM with micro-batched generation."""

    def __init__(
        self,
        model_path_or_id: str,
        *,
        family: str | None = None,
        device: str = "cpu",
        dtype: str = "float32",
        load_in_4bit: bool = False,
        max_batch_size: int = 8,
        batch_wait_ms: float = 20,
        local_files_only: bool = True,
        revision: str | None = None,
        processor_kwargs: dict[str, Any] | None = None,
        name: str | None = None,
    ) -> None:
        if device not in DEVICES:
            raise ValueError(f"device must be one of {DEVICES}; got {device!r}")
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}; got {dtype!r}")
        if not isinstance(max_batch_size, int) or max_batch_size < 1:
            raise ValueError(f"max_batch_size must be an integer >= 1; got {max_batch_size!r}")
        if batch_wait_ms < 0:
            raise ValueError(f"batch_wait_ms must be >= 0; got {batch_wait_ms!r}")
        import torch

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device == "cuda" and not torch.cuda.is_available():
            raise ValueError("device='cuda' but torch sees no CUDA GPU "
                             f"(torch {torch.__version__}); use device='cpu' or 'auto'")
        if load_in_4bit:
            if device != "cuda":
                raise ValueError(
                    "load_in_4bit=True needs a CUDA GPU (bitsandbytes 4-bit kernels); on "
                    f"device={device!r} load the model unquantised (dtype='float32' or "
                    "'bfloat16') or run on a GPU")
            try:
                import bitsandbytes  # noqa: F401
            except ImportError:
                raise ValueError("load_in_4bit=True needs the bitsandbytes package: "
                                 "pip install bitsandbytes (CUDA only)") from None
        if dtype == "auto":
            dtype = ("bfloat16" if device == "cuda" and torch.cuda.is_bf16_supported()
                     else "float16" if device == "cuda" else "float32")
        self.device, self.dtype = device, dtype
        self._torch_dtype = getattr(torch, dtype)
        self.max_batch_size = max_batch_size
        self.batch_wait_ms = float(batch_wait_ms)
        self.model_path_or_id = model_path_or_id
        self.model_dir = resolve_model_dir(model_path_or_id, revision=revision,
                                           local_files_only=local_files_only)

        from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

        config = AutoConfig.from_pretrained(self.model_dir, local_files_only=True)
        detected = getattr(config, "model_type", None)
        if family is None:
            family = detected
        if family not in FAMILIES:
            raise ValueError(f"{model_path_or_id}: family {family!r} (config model_type "
                             f"{detected!r}) is not supported; supported: {', '.join(FAMILIES)}")
        self.family = family
        kwargs: dict[str, Any] = {"local_files_only": True, "dtype": self._torch_dtype}
        if load_in_4bit:
            from transformers import BitsAndBytesConfig

            kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=True, bnb_4bit_compute_dtype=self._torch_dtype)
            kwargs["device_map"] = {"": 0}
        self.processor = AutoProcessor.from_pretrained(self.model_dir, local_files_only=True,
                                                       **(processor_kwargs or {}))
        self.model = AutoModelForImageTextToText.from_pretrained(self.model_dir, **kwargs)
        if not load_in_4bit:
            self.model.to(device)
        self.model.eval()
        tok = self.processor.tokenizer
        tok.padding_side = "left"
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        eos = self.model.generation_config.eos_token_id
        if eos is None:
            eos = tok.eos_token_id
        self._eos_ids = set(eos if isinstance(eos, (list, tuple)) else [eos])
        self._pad_id = tok.pad_token_id
        self.name = name or f"transformers:{model_path_or_id}"
        self.generate_calls = 0
        self.batch_sizes: list[int] = []
        self._cv = threading.Condition()
        self._queue: list[_Pending] = []
        self._closed = False
        self._worker: threading.Thread | None = None

    def __repr__(self) -> str:
        return (f"TransformersBackend({self.model_path_or_id!r}, family={self.family!r}, "
                f"device={self.device!r}, dtype={self.dtype!r}, "
                f"max_batch_size={self.max_batch_size})")

    # -- prompts ---------------------------------------------------------------------------

    def render_prompt(self, turns: tuple[Turn, ...]) -> str:
        """The exact text given to the processor for these turns (placeholders unexpanded)."""
        if self.family == "paligemma":
            return "<image>" + paligemma_prompt(turns)
        return self.processor.apply_chat_template(chat_messages(turns), tokenize=False,
                                                  add_generation_prompt=True)

    # -- ChatBackend -----------------------------------------------------------------------

    async def complete(self, request: ChatRequest) -> ChatResponse:
        from PIL import Image, UnidentifiedImageError

        if not request.turns or request.turns[-1].role != "user":
            raise TransportError("client_error", f"{self.name}: the last turn must be a user turn")
        def decode() -> Any:
            with Image.open(io.BytesIO(request.image_bytes)) as im:
                return im.convert("RGB")

        try:  # decoding a large JPEG takes milliseconds: off the event loop
            image = await asyncio.to_thread(decode)
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise TransportError("client_error",
                                 f"{self.name}: image is not readable ({exc})") from None
        try:
            prompt = self.render_prompt(request.turns)
        except Exception as exc:  # noqa: BLE001
            raise TransportError("client_error", f"{self.name}: chat template failed: "
                                 f"{type(exc).__name__}: {exc}") from None
        loop = asyncio.get_running_loop()
        pending = _Pending(prompt, image, request, _decode_key(request), loop, loop.create_future())
        with self._cv:
            if self._closed:
                raise TransportError("client_error", f"{self.name}: backend is closed")
            self._queue.append(pending)
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._work, name=f"{self.name} batcher",
                                                daemon=True)
                self._worker.start()
            self._cv.notify_all()
        return await pending.future

    def close(self) -> None:
        """Stop the worker after the queued requests are answered."""
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        if self._worker is not None:
            self._worker.join()

    # -- worker ----------------------------------------------------------------------------

    def _take_batch(self) -> list[_Pending] | None:
        with self._cv:
            while True:
                while not self._queue and not self._closed:
                    self._cv.wait()
                if not self._queue:
                    return None
                first = self._queue[0]
                same = [p for p in self._queue if p.key == first.key]
                remaining = first.enqueued + self.batch_wait_ms / 1000.0 - time.monotonic()
                if len(same) >= self.max_batch_size or remaining <= 0 or self._closed:
                    batch = same[: self.max_batch_size]
                    taken = {id(p) for p in batch}
                    self._queue = [p for p in self._queue if id(p) not in taken]
                    return batch
                self._cv.wait(remaining)

    def _work(self) -> None:
        while True:
            batch = self._take_batch()
            if batch is None:
                return
            try:
                results: list[ChatResponse | BaseException] = list(self._generate(batch))
            except Exception as exc:  # noqa: BLE001 - whole batch failed
                log.warning("%s: batch of %d failed: %s", self.name, len(batch), exc)
                message = f"{self.name}: generation failed: {type(exc).__name__}: {exc}"
                results = [TransportError("server_error", message) for _ in batch]
            for pending, result in zip(batch, results):
                try:
                    pending.loop.call_soon_threadsafe(_resolve, pending.future, result)
                except RuntimeError:  # the caller's event loop is closed: nobody waits
                    pass

    def _generate(self, batch: list[_Pending]) -> list[ChatResponse]:
        import torch

        params = batch[0].request.params
        images: list[Any]
        if self.family == "paligemma":
            images = [p.image for p in batch]
        else:
            images = [[p.image] for p in batch]
        inputs = self.processor(text=[p.prompt for p in batch], images=images, padding=True,
                                return_tensors="pt")
        inputs.pop("labels", None)
        inputs = inputs.to(self.model.device)
        for key in ("pixel_values",):
            if key in inputs and torch.is_floating_point(inputs[key]):
                inputs[key] = inputs[key].to(self.model.dtype)
        gen = copy.deepcopy(self.model.generation_config)
        gen.max_new_tokens = int(params.max_tokens)
        gen.max_length = None
        gen.pad_token_id = self._pad_id
        if params.temperature <= 0:
            gen.do_sample = False
            gen.temperature, gen.top_p, gen.top_k = None, None, None
        else:
            gen.do_sample = True
            gen.temperature = float(params.temperature)
            gen.top_p = float(params.top_p) if params.top_p is not None else 1.0
            gen.top_k = 0
            seed = next((p.request.params.seed for p in batch
                         if p.request.params.seed is not None), None)
            if seed is not None:
                torch.manual_seed(int(seed))
        prompt_len = inputs["input_ids"].shape[1]
        with torch.inference_mode():
            out = self.model.generate(**inputs, generation_config=gen)
        self.generate_calls += 1
        self.batch_sizes.append(len(batch))
        done = time.monotonic()
        new = out[:, prompt_len:].tolist()
        attention = inputs["attention_mask"].sum(dim=1).tolist()
        responses = []
        for pending, ids, n_in in zip(batch, new, attention):
            stop = next((i for i, t in enumerate(ids) if t in self._eos_ids), None)
            kept = ids if stop is None else ids[: stop + 1]
            text = self.processor.decode(kept, skip_special_tokens=True).strip()
            responses.append(ChatResponse(
                text=text, refused=False, finish_reason="stop" if stop is not None else "length",
                input_tokens=int(n_in), output_tokens=len(kept),
                latency_ms=(done - pending.enqueued) * 1000.0))
        return responses


def _resolve(future: asyncio.Future, result: ChatResponse | BaseException) -> None:
    if future.done():  # cancelled by the caller meanwhile
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)
