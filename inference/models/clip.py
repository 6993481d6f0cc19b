"""CLIP (open_clip) adapter: zero-shot prompts or an identity-grouped linear probe on embeddings.

(Over 400 lines: the options, embedding and both answer modes share one model's state; weights,
images and the probe already live in clip_weights.py, clip_images.py and clip_probe.py.)

Kind `clip`. Options (`models.<name>.options`):

- `architecture`: an open_clip model name (`ViT-B-32`, `ViT-L-14`, ...; a custom one registered
  with `open_clip.add_model_config`, or the JSON file named by `model_config:`).
- `pretrained`: an open_clip pretrained tag (`openai`, `laion2b_s34b_b79k`, ...) or a local
  checkpoint file (`.pt`/`.pth`/`.bin`/`.safetensors` with an open_clip state dict), with optional
  `sha256:` (verified for both). A tag is resolved **offline** from the caches open_clip itself
  fills: the Hugging Face hub cache (`$HF_HUB_CACHE`, else `$HF_HOME/hub`, else
  `~/.cache/huggingface/hub`), open_clip's URL cache `~/.cache/clip`, and
  `<cache_dir>/open_clip/{hf,}`. Nothing is downloaded unless `allow_download: true` (then into
  `<cache_dir>/open_clip`). When nothing is cached the error names the architecture, the tag,
  the file to download and where to put it. `pretrained: random` builds a randomly initialised
  model (seeded by `seed:`), meant for tests and benchmarks only.
- `mode`: `zero_shot` (default) or `linear_probe`.
- `labels`: canonical labels to choose from (default the canonical 7: anger, disgust, fear,
  happy, neutral, sad, surprise). `label_words` maps a label to the word used in prompts
  (default adjectives: anger -> angry, surprise -> surprised, ...).
- `templates`: zero-shot prompt templates with one `{}` (default `DEFAULT_TEMPLATES`); the text
  embeddings of all templates of a label are averaged and re-normalised (CLIP's ensemble).
- `batch_size` (default 32), `device` (`auto` = cuda when available, else cpu), `num_workers`
  (threads that decode and preprocess images, default min(4, cpus)), `preprocess` (override of
  open_clip's preprocessing: mean, std, interpolation, resize_mode).
- `decode_draft` (default false): decode JPEGs at the libjpeg 1/2, 1/4 or 1/8 scale that keeps
  both sides >= 2x the model input size, before open_clip's own preprocessing (see
  `clip_images.py`). Several times faster on large photos, but pixels change slightly (mean
  ~0.35/255 on 512px London Set photos for a 64px model), so embeddings are not bit-identical
  to the default full decode; recorded as `jpeg_decode` in `preprocessing`.
- linear probe: `folds` (5), `inner_folds` (3), `Cs` (default `DEFAULT_CS`, logspace 1e-3..1e4),
  `scoring` (inner-CV score choosing C, default `neg_log_loss`), `max_iter` (1000), `seed` (0).

Zero-shot answers: softmax of `100 * cosine(image, label text)` over `labels`, protocol
`clip_zero_shot`, `prompt_hash` = sha256 of the templates, labels and label words.

Linear-probe answers (protocol `clip_linear_probe`): the images' canonical `true_labels` are
needed. Images are split with `StratifiedGroupKFold` where the group is the identity (an image
without identity is its own group), so no person's photos straddle train and test; each image
is predicted exactly once, by the fold model that never saw it. In every outer fold
`LogisticRegressionCV` chooses C by an inner `StratifiedGroupKFold` over the training
identities. `preprocessing` records the fold, chosen C and CV settings. A label with fewer
identities than `folds` (or whose training identities in some fold are fewer than
`inner_folds`) raises `ClipProbeError` naming the label and the fixes; nothing is dropped
silently. Probabilities cover `labels`; a label absent from the true labels gets 0.

After `predict`, `.embeddings` is a DataFrame (image_id, image_hash, embedding: list[float],
L2-normalised image embeddings) for the warehouse.

`.weights_sha256` is the sha256 of the checkpoint file that was loaded (tag or path). For
`pretrained: random` it is the sha256 of the initial state dict (`state_dict_sha256`: every
tensor's name, dtype, shape and bytes in key order), so a seeded random model is identified too.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from inference.datasets.base import ImageRecord
from inference.models.base import (
    Answer, BuildContext, Evaluation, EvaluationContext, KindOptions, ModelAdapter, parse_options,
)
from inference.models.clip_images import draft_size, load_image
from inference.models.clip_probe import (
    DEFAULT_CS,
    ClipProbeError,
    ProbeResult,
    canonical_label_set,
    identity_groups,
    linear_probe,
)
from inference.models.clip_weights import (
    RANDOM_PRETRAINED,
    ClipWeightsError,
    import_open_clip,
    prompt_hash,
    resolve_pretrained,
    state_dict_sha256,
)

log = logging.getLogger(__name__)

CANONICAL_7 = ("anger", "disgust", "fear", "happy", "neutral", "sad", "surprise")
# Words used in prompts; canonical labels are nouns/adjectives mixed ("a photo of a anger face").
DEFAULT_LABEL_WORDS = {
    "anger": "angry",
    "disgust": "disgusted",
    "fear": "fearful",
    "happy": "happy",
    "neutral": "neutral",
    "sad": "sad",
    "surprise": "surprised",
    "calm": "calm",
    "contempt": "contemptuous",
    "confusion": "confused",
}
DEFAULT_TEMPLATES = (
    "a photo of a {} face.",
    "a photo of a person looking {}.",
    "a close-up photo of a {} person.",
    "a face that looks {}.",
)
ZERO_SHOT_SCALE = 100.0
MODES = ("zero_shot", "linear_probe")
class ClipOptionsError(ValueError):
    """A clip model option is unknown or has a bad value; the message names it."""


class ClipOptions(KindOptions):
    """`models.<name>.options` of kind clip (meanings in the module docstring; values are
    checked by ClipModel, whose errors name the option)."""

    architecture: str | None = None  # required
    pretrained: str | None = None  # required
    sha256: str | None = None
    # a JSON open_clip model config (`model_config:`; pydantic reserves the name for itself)
    config_file: str | None = Field(None, alias="model_config")
    allow_download: bool = False
    mode: str | None = None
    labels: list[str] | None = None
    label_words: dict[str, str] | None = None
    templates: list[str] | str | None = None
    batch_size: int | None = None
    device: str | None = None
    num_workers: int | None = None
    preprocess: dict[str, Any] | None = None
    decode_draft: Any = None  # true/false; ClipModel refuses strings such as "false"
    folds: int | None = None
    inner_folds: int | None = None
    Cs: list[float] | None = None
    scoring: str | None = None
    max_iter: int | None = None
    seed: int | None = None


# ClipModel's keyword arguments among the options (the rest: architecture, pretrained, where from).
_MODEL_KWARGS = set(ClipOptions.model_fields) - {"architecture", "pretrained", "config_file", "allow_download"}


# ----------------------------------------------------------------------------- the adapter


class ClipModel(ModelAdapter):
    """open_clip image/text towers used zero-shot or through an identity-grouped linear probe."""

    kind = "clip"
    label_set = "canonical"

    def __init__(
        self,
        architecture: str,
        pretrained: str,
        *,
        cache_dir: Path | None = None,
        sha256: str | None = None,
        allow_download: bool = False,
        mode: str = "zero_shot",
        labels: Sequence[str] = CANONICAL_7,
        label_words: dict[str, str] | None = None,
        templates: Sequence[str] = DEFAULT_TEMPLATES,
        batch_size: int = 32,
        device: str = "auto",
        num_workers: int | None = None,
        preprocess: dict[str, Any] | None = None,
        decode_draft: bool = False,
        folds: int = 5,
        inner_folds: int = 3,
        Cs: Sequence[float] | None = None,
        scoring: str = "neg_log_loss",
        max_iter: int = 1000,
        seed: int = 0,
        version: str | None = None,
    ) -> None:
        import torch

        open_clip = import_open_clip()
        if mode not in MODES:
            raise ClipOptionsError(f"mode: {mode!r} is not one of {', '.join(MODES)}")
        labels = [str(l) for l in labels]
        if len(labels) < 2 or len(set(labels)) != len(labels):
            raise ClipOptionsError(f"labels: give at least two distinct labels, got {labels}")
        canonical = canonical_label_set()
        if canonical is not None:
            unknown = [l for l in labels if l not in canonical]
            if unknown:
                raise ClipOptionsError(
                    f"labels: {', '.join(unknown)} are not canonical labels (dbt/seeds/emotion_label_map.csv); "
                    f"use some of: {', '.join(sorted(canonical))}"
                )
        words = {**DEFAULT_LABEL_WORDS, **(label_words or {})}
        missing_words = [l for l in labels if l not in words]
        if missing_words:
            raise ClipOptionsError(f"label_words: give the prompt word for {', '.join(missing_words)}")
        templates = [str(t) for t in templates]
        bad = [t for t in templates if t.count("{}") != 1]
        if not templates or bad:
            raise ClipOptionsError(f"templates: each template needs exactly one '{{}}'; bad: {bad or 'none given'}")
        if int(batch_size) < 1:
            raise ClipOptionsError("batch_size must be at least 1")
        if not isinstance(decode_draft, bool):  # a YAML string "false" must not switch it on
            raise ClipOptionsError(f"decode_draft: use true or false, got {decode_draft!r}")
        if architecture not in open_clip.list_models():
            raise ClipOptionsError(
                f"architecture: {architecture!r} is not an open_clip model config; use e.g. ViT-B-32, "
                f"ViT-B-16, ViT-L-14 (open_clip.list_models()), or register yours with `model_config:`"
            )

        self.architecture = architecture
        self.pretrained = str(pretrained)
        self.version = version or f"{architecture}.{pretrained}"
        self.mode = mode
        self.labels = tuple(labels)
        self.label_words = {l: words[l] for l in labels}
        self.templates = tuple(templates)
        self.prompt_hash = prompt_hash(self.templates, self.labels, self.label_words)
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers) if num_workers is not None else min(4, os.cpu_count() or 1)
        self.folds, self.inner_folds = int(folds), int(inner_folds)
        self.Cs = tuple(float(c) for c in (Cs if Cs is not None else DEFAULT_CS))
        self.scoring = str(scoring)
        self.max_iter = int(max_iter)
        self.seed = int(seed)
        if device in (None, "auto"):
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)

        weights = resolve_pretrained(
            architecture, self.pretrained, cache_dir, sha256=sha256, allow_download=allow_download
        )
        force_preprocess = {**(weights.preprocess or {}), **(preprocess or {})}
        bad_keys = sorted(set(force_preprocess) - {"mean", "std", "interpolation", "resize_mode"})
        if bad_keys:
            raise ClipOptionsError(
                f"preprocess: unknown key(s) {', '.join(bad_keys)}; allowed: mean, std, interpolation, resize_mode"
            )
        if weights.path is None:
            torch.manual_seed(self.seed)
        self.model, _, self.preprocess = open_clip.create_model_and_transforms(
            architecture,
            pretrained=str(weights.path) if weights.path is not None else None,
            device=self.device,
            force_quick_gelu=weights.quick_gelu,
            image_mean=force_preprocess.get("mean"),
            image_std=force_preprocess.get("std"),
            image_interpolation=force_preprocess.get("interpolation"),
            image_resize_mode=force_preprocess.get("resize_mode"),
            pretrained_text=False,  # never fetch tower weights from the network
        )
        self.model.eval()
        self.decode_draft = decode_draft
        self._draft_side = draft_size(self.model, self.decode_draft)  # None: full decode
        self.tokenizer = open_clip.get_tokenizer(architecture)
        self.weights_path = weights.path
        self.weights_source = weights.source
        self.weights_sha256 = weights.sha256 or state_dict_sha256(self.model)
        self.embeddings = None  # DataFrame after predict()
        self._text_features: np.ndarray | None = None
        self.open_clip_version = getattr(open_clip, "__version__", "unknown")

    @property
    def protocol(self) -> str:
        return "clip_zero_shot" if self.mode == "zero_shot" else "clip_linear_probe"

    @property
    def needs_true_labels(self) -> bool:
        """Whether `predict` needs the images' canonical true labels (linear probe)."""
        return self.mode == "linear_probe"

    @classmethod
    def from_config(cls, cfg: Any, cache_dir: Path, resolve: Any = None) -> ClipModel:
        """Build from a `models:` entry (kind clip).

        `resolve` (e.g. `BenchmarkConfig.resolve` / `BuildContext.resolve`) turns paths written
        in the config into absolute ones: `model_config`, and `pretrained` when it is not an
        open_clip tag of the architecture. Without it paths are taken as written.
        """
        opts = dict(cfg.options or {})
        if resolve is not None:
            if isinstance(opts.get("model_config"), str):
                opts["model_config"] = str(resolve(opts["model_config"]))
            tag = str(opts.get("pretrained") or "")
            if tag and tag.lower() not in RANDOM_PRETRAINED and opts.get("architecture"):
                open_clip = import_open_clip()
                if not open_clip.get_pretrained_cfg(str(opts["architecture"]), tag):
                    opts["pretrained"] = str(resolve(tag))
        options = parse_options(ClipOptions, cfg, ClipOptionsError, options=opts)
        for key in ("architecture", "pretrained"):
            if not getattr(options, key):
                raise ClipOptionsError(
                    f"models.{cfg.name}.options.{key} is required (e.g. architecture: ViT-B-32, "
                    f"pretrained: openai or laion2b_s34b_b79k or /path/to/checkpoint.safetensors)"
                )
        if options.config_file:
            register_model_config(options.config_file, name=str(options.architecture))
        kwargs = options.model_dump(include=_MODEL_KWARGS, exclude_none=True)
        if isinstance(kwargs.get("templates"), str):
            kwargs["templates"] = [kwargs["templates"]]
        try:
            return cls(
                str(options.architecture),
                str(options.pretrained),
                cache_dir=Path(cache_dir) if cache_dir is not None else None,
                allow_download=options.allow_download,
                version=cfg.version,
                **kwargs,
            )
        except ClipOptionsError as exc:
            raise ClipOptionsError(f"models.{cfg.name}.options.{exc}") from None

    @classmethod
    def build(cls, cfg: Any, ctx: BuildContext) -> ClipModel:
        return cls.from_config(cfg, ctx.cache_dir, resolve=ctx.resolve)

    def evaluate(self, images: Sequence[ImageRecord], context: EvaluationContext) -> Evaluation:
        """Answers (a linear probe is trained out-of-fold on `context.true_labels`) and the
        images' embeddings."""
        truth = None
        if self.needs_true_labels and context.true_labels is not None:
            truth = list(context.true_labels)
        answers = self.predict(images, true_labels=truth)
        return Evaluation(answers=answers, label_set=self.label_set, weights_sha256=self.weights_sha256,
                          embeddings=self.embeddings)

    # -- embeddings --------------------------------------------------------------------

    def _load(self, record: ImageRecord | str | Path) -> Any:
        path = record.path if isinstance(record, ImageRecord) else Path(record)
        return load_image(path, self.preprocess, self._draft_side)

    def embed(self, images: Sequence[ImageRecord | str | Path], batch_size: int | None = None) -> np.ndarray:
        """L2-normalised image embeddings (n, d) as float32, computed in batches."""
        return self._embed(images, batch_size)[0]

    def _embed(self, images: Sequence[Any], batch_size: int | None = None) -> tuple[np.ndarray, list[float]]:
        import torch

        batch_size = int(batch_size or self.batch_size)
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        images = list(images)
        dim = int(self.model.visual.output_dim) if hasattr(self.model.visual, "output_dim") else None
        out: list[np.ndarray] = []
        latency: list[float] = []
        pool = ThreadPoolExecutor(self.num_workers) if self.num_workers > 1 and len(images) > 1 else None
        chunks = [images[lo : lo + batch_size] for lo in range(0, len(images), batch_size)]

        def submit(chunk: list[Any]) -> list[Any]:
            return [pool.submit(self._load, r) for r in chunk] if pool else chunk

        try:
            pending = submit(chunks[0]) if chunks else []
            for k, chunk in enumerate(chunks):
                start = time.perf_counter()
                tensors = [f.result() for f in pending] if pool else [self._load(r) for r in chunk]
                # decode the next batch in the loader threads while this one runs through the model
                pending = submit(chunks[k + 1]) if k + 1 < len(chunks) else []
                batch = torch.stack(tensors).to(self.device)
                with torch.inference_mode():
                    feats = self.model.encode_image(batch, normalize=True)
                out.append(feats.float().cpu().numpy())
                share = (time.perf_counter() - start) * 1000.0 / len(chunk)
                latency.extend([share] * len(chunk))
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)
        if not out:
            return np.zeros((0, dim or 0), dtype=np.float32), []
        return np.concatenate(out).astype(np.float32), latency

    def text_features(self) -> np.ndarray:
        """(len(labels), d): per label the normalised mean of its normalised template embeddings."""
        import torch

        if self._text_features is None:
            rows = []
            with torch.inference_mode():
                for label in self.labels:
                    prompts = [t.format(self.label_words[label]) for t in self.templates]
                    tokens = self.tokenizer(prompts).to(self.device)
                    feats = self.model.encode_text(tokens, normalize=True).float()
                    mean = feats.mean(dim=0)
                    rows.append((mean / mean.norm()).cpu().numpy())
            self._text_features = np.stack(rows)
        return self._text_features

    # -- answers -----------------------------------------------------------------------

    def _set_embeddings(self, images: Sequence[ImageRecord], emb: np.ndarray) -> None:
        import pandas as pd

        self.embeddings = pd.DataFrame(
            {
                "image_id": [r.image_id for r in images],
                "image_hash": [r.image_hash for r in images],
                "embedding": [row.astype(float).tolist() for row in emb],
            }
        )

    def _base_info(self, batch_size: int) -> dict[str, Any]:
        return {
            "architecture": self.architecture,
            "pretrained": self.pretrained,
            "weights_source": self.weights_source,
            "open_clip_version": self.open_clip_version,
            "image_preprocess": "open_clip preprocess_val (whole image, no face crop)",
            "jpeg_decode": f"draft, min side {self._draft_side}" if self._draft_side else "full",
            "batch_size": batch_size,
            "device": self.device.type,
        }

    def predict(
        self,
        images: Sequence[ImageRecord],
        true_labels: Sequence[str] | None = None,
        batch_size: int | None = None,
    ) -> list[Answer]:
        """One Answer per image, in order. `true_labels` (canonical) are required for the probe."""
        images = list(images)
        batch_size = int(batch_size or self.batch_size)
        if self.mode == "linear_probe":
            self._check_true_labels(images, true_labels)
        emb, latency = self._embed(images, batch_size)
        self._set_embeddings(images, emb)
        if not images:
            return []
        if self.mode == "zero_shot":
            return self._zero_shot(images, emb, latency, batch_size)
        return self._probe(images, emb, latency, list(true_labels or []), batch_size)

    def _check_true_labels(self, images: Sequence[ImageRecord], true_labels: Sequence[str] | None) -> None:
        if true_labels is None:
            raise ClipProbeError(
                "mode linear_probe needs true_labels: the canonical emotion of every image (map each "
                "record's source_label through dbt/seeds/emotion_label_map.csv, e.g. "
                "inference.datasets.labels.load_label_map().canonical(label_set, source_label))"
            )
        if len(true_labels) != len(images):
            raise ClipProbeError(f"true_labels has {len(true_labels)} entries for {len(images)} images")
        bad = [(r.image_id, l) for r, l in zip(images, true_labels) if l not in self.labels]
        if bad:
            shown = ", ".join(f"{i}: {l!r}" for i, l in bad[:5])
            raise ClipProbeError(
                f"{len(bad)} image(s) have a true label outside labels={list(self.labels)} ({shown}); "
                f"map them to canonical labels, add the label to `labels:`, or drop those images"
            )

    def _zero_shot(self, images: Sequence[ImageRecord], emb: np.ndarray, latency: list[float], batch_size: int) -> list[Answer]:
        text = self.text_features()
        logits = ZERO_SHOT_SCALE * emb.astype(np.float64) @ text.T.astype(np.float64)
        logits -= logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        probs /= probs.sum(axis=1, keepdims=True)
        info = {
            **self._base_info(batch_size),
            "logit_scale": ZERO_SHOT_SCALE,
            "n_templates": len(self.templates),
            "templates": list(self.templates),
            "label_words": self.label_words,
        }
        answers = []
        for i, record in enumerate(images):
            vector = probs[i]
            answers.append(
                Answer(
                    image_id=record.image_id,
                    image_hash=record.image_hash,
                    parse_status="ok",
                    predicted_label=self.labels[int(np.argmax(vector))],
                    probabilities={l: float(p) for l, p in zip(self.labels, vector)},
                    face_found=None,
                    preprocessing=info,
                    latency_ms=latency[i],
                    protocol=self.protocol,
                    step=1,
                    step_name="emotion",
                    prompt_hash=self.prompt_hash,
                )
            )
        return answers

    def _probe(
        self,
        images: Sequence[ImageRecord],
        emb: np.ndarray,
        latency: list[float],
        true_labels: list[str],
        batch_size: int,
    ) -> list[Answer]:
        groups = identity_groups([r.identity for r in images], [r.image_id for r in images])
        result = linear_probe(
            emb,
            true_labels,
            groups,
            folds=self.folds,
            inner_folds=self.inner_folds,
            Cs=self.Cs,
            scoring=self.scoring,
            max_iter=self.max_iter,
            seed=self.seed,
        )
        self.probe_result = result
        base = {
            **self._base_info(batch_size),
            "classifier": "sklearn LogisticRegressionCV (l2, lbfgs)",
            "folds": self.folds,
            "inner_folds": self.inner_folds,
            "cv": "StratifiedGroupKFold by identity (outer and inner)",
            "Cs": list(self.Cs),
            "scoring": self.scoring,
            "seed": self.seed,
            "classes": result.classes,
        }
        by_fold = {f["fold"]: f for f in result.folds}
        answers = []
        for i, record in enumerate(images):
            row = dict(zip(result.classes, result.probabilities[i]))
            vector = {l: float(row.get(l, 0.0)) for l in self.labels}
            fold = int(result.fold[i])
            info = {**base, "fold": fold, "C": float(result.C[i]),
                    "n_train": by_fold[fold]["n_train"], "n_train_groups": by_fold[fold]["n_train_groups"]}
            answers.append(
                Answer(
                    image_id=record.image_id,
                    image_hash=record.image_hash,
                    parse_status="ok",
                    predicted_label=max(vector, key=lambda l: (vector[l], -self.labels.index(l))),
                    probabilities=vector,
                    face_found=None,
                    preprocessing=info,
                    latency_ms=latency[i],
                    protocol=self.protocol,
                    step=1,
                    step_name="emotion",
                )
            )
        return answers


def register_model_config(source: Any, name: str | None = None) -> str:
    """Register a custom architecture with open_clip: a JSON file path or a dict config.

    A dict (or a file whose stem differs from `name`) is written to a temporary JSON named
    `<name>.json`; returns the registered name.
    """
    import tempfile

    open_clip = import_open_clip()
    if isinstance(source, dict):
        if not name:
            raise ClipOptionsError("model_config: a dict config needs the architecture name")
        folder = Path(tempfile.mkdtemp(prefix="open_clip_cfg_"))
        path = folder / f"{name}.json"
        path.write_text(json.dumps(source), encoding="utf-8")
    else:
        path = Path(os.path.expanduser(str(source)))
        if not path.is_file():
            raise ClipOptionsError(f"model_config: {path} does not exist (a JSON open_clip model config)")
        if name and path.stem != name:
            cfg = json.loads(path.read_text(encoding="utf-8"))
            return register_model_config(cfg, name)
    cfg = json.loads(path.read_text(encoding="utf-8"))
    if not all(k in cfg for k in ("embed_dim", "vision_cfg", "text_cfg")):
        raise ClipOptionsError(f"model_config: {path} needs embed_dim, vision_cfg and text_cfg")
    open_clip.add_model_config(path)
    return path.stem


__all__ = [
    "CANONICAL_7",
    "DEFAULT_CS",
    "DEFAULT_TEMPLATES",
    "ClipModel",
    "ClipOptionsError",
    "ClipProbeError",
    "ClipWeightsError",
    "ProbeResult",
    "linear_probe",
    "prompt_hash",
    "register_model_config",
    "resolve_pretrained",
    "state_dict_sha256",
]
