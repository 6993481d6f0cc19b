"""Model adapters, built from the `models:` entries of the benchmark config.

Every adapter exposes `.label_set` (the vocabulary of its labels, mapped to canonical labels
by a dbt seed), `.weights_sha256` (what exactly was evaluated) and
`.predict(images, batch_size=...) -> list[Answer]` (one Answer per image, in order; an
imported model gives its file's answers). An adapter may also expose `.quarantined`
(rows it could not use, filled by `predict`) and `.quarantine_sources` (the files whose
rows in raw.quarantine it owns).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from inference.config import DatasetConfig, ModelConfig


@dataclass(frozen=True)
class BuildContext:
    """What a builder may need besides the model config."""

    cache_dir: Path  # downloads (weights) land here; VLM response cache: <cache_dir>/responses.sqlite
    resolve: Callable[[str], Path]  # a path written in the config -> absolute path
    dataset: str | None  # the dataset the model is about to answer on
    dataset_config: DatasetConfig | None = None  # its config (external-API consent)


def _fer_xception(cfg: ModelConfig, ctx: BuildContext) -> Any:
    # imported lazily: loading keras/torch is slow and only needed when a model runs
    from inference.models.xception import XceptionFER

    return XceptionFER.from_config(cfg, ctx.cache_dir)


def _imported(cfg: ModelConfig, ctx: BuildContext) -> Any:
    from inference.models.imported import ImportedOptionsError, ImportedPredictions

    if ctx.dataset is None:
        raise ImportedOptionsError(
            f"models.{cfg.name}: an imported model is built per dataset; pass dataset=<name>"
        )
    return ImportedPredictions.from_config(cfg, ctx.dataset, ctx.resolve)


def _vlm(cfg: ModelConfig, ctx: BuildContext) -> Any:
    # openai / gemini / transformers / mlx: a prompt protocol through a chat backend
    from inference.models.vlm import VLMAdapter

    return VLMAdapter.from_config(cfg, ctx.cache_dir, dataset=ctx.dataset_config)


def _clip(cfg: ModelConfig, ctx: BuildContext) -> Any:
    import importlib

    try:
        module = importlib.import_module("inference.models.clip")
        model_cls = module.ClipModel
    except (ImportError, AttributeError) as exc:
        raise ValueError(
            f"models.{cfg.name}: kind 'clip' needs inference.models.clip.ClipModel, which is not "
            f"available ({type(exc).__name__}: {exc})"
        ) from None
    import inspect

    if "resolve" in inspect.signature(model_cls.from_config).parameters:
        return model_cls.from_config(cfg, ctx.cache_dir, resolve=ctx.resolve)
    return model_cls.from_config(cfg, ctx.cache_dir)


MODEL_BUILDERS: dict[str, Callable[[ModelConfig, BuildContext], Any]] = {
    "fer_xception": _fer_xception,
    "imported": _imported,
    "openai": _vlm,
    "gemini": _vlm,
    "transformers": _vlm,
    "mlx": _vlm,
    "clip": _clip,
}


def _relative_to_cwd(location: str) -> Path:
    return Path(os.path.expanduser(location)).resolve()


def build_model(
    cfg: ModelConfig,
    cache_dir: Path,
    *,
    resolve: Callable[[str], Path] | None = None,
    dataset: str | None = None,
    dataset_config: DatasetConfig | None = None,
) -> Any:
    """Build the adapter for a model config; weights are obtained into `cache_dir`.

    `resolve` turns paths written in the config into absolute ones (pass
    `BenchmarkConfig.resolve`; default: relative to the working directory); `dataset` is
    the dataset the model will answer on (imported models read that dataset's file);
    `dataset_config` its config (VLMs calling an external API need its allow_external_apis).
    """
    try:
        builder = MODEL_BUILDERS[cfg.kind]
    except KeyError:
        raise ValueError(
            f"models.{cfg.name}: no adapter for kind {cfg.kind!r}; known kinds: "
            f"{', '.join(sorted(MODEL_BUILDERS))}"
        ) from None
    if dataset_config is not None and dataset is None:
        dataset = dataset_config.name
    return builder(cfg, BuildContext(Path(cache_dir), resolve or _relative_to_cwd, dataset, dataset_config))


__all__ = ["MODEL_BUILDERS", "BuildContext", "build_model"]
