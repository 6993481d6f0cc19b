"""Model adapters, built from the `models:` entries of the benchmark config.

Every kind is a `ModelAdapter` (inference.models.base) registered in
`inference.kinds.MODEL_ADAPTERS`; its module is imported only when a model of that kind is
built. The orchestration calls `build_model(...)` then `adapter.evaluate(images, context)`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from inference.config import DatasetConfig, ModelConfig
from inference.kinds import MODEL_ADAPTERS, adapter_class
from inference.models.base import BuildContext, Evaluation, EvaluationContext, ModelAdapter, Usage


def _relative_to_cwd(location: str) -> Path:
    return Path(os.path.expanduser(location)).resolve()


def build_model(
    cfg: ModelConfig,
    cache_dir: Path,
    *,
    resolve: Callable[[str], Path] | None = None,
    dataset: str | None = None,
    dataset_config: DatasetConfig | None = None,
) -> ModelAdapter:
    """Build the adapter for a model config; weights are obtained into `cache_dir`.

    `resolve` turns paths written in the config into absolute ones (pass
    `BenchmarkConfig.resolve`; default: relative to the working directory); `dataset` is
    the dataset the model will answer on (imported models read that dataset's file);
    `dataset_config` its config (VLMs calling an external API need its allow_external_apis).
    """
    adapter = adapter_class(MODEL_ADAPTERS, cfg.kind, f"models.{cfg.name}")
    if dataset_config is not None and dataset is None:
        dataset = dataset_config.name
    return adapter.build(cfg, BuildContext(Path(cache_dir), resolve or _relative_to_cwd, dataset, dataset_config))


__all__ = ["BuildContext", "Evaluation", "EvaluationContext", "ModelAdapter", "Usage", "build_model"]
