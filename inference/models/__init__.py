"""Model adapters, built from the `models:` entries of the benchmark config.

Every adapter exposes `.label_set` (the vocabulary of its labels, mapped to canonical labels
by a dbt seed), `.weights_sha256` (what exactly was evaluated) and
`.predict(images, batch_size=...) -> list[Answer]` (one Answer per image, in order).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from inference.config import ModelConfig


def _fer_xception(cfg: ModelConfig, cache_dir: Path) -> Any:
    # imported lazily: loading keras/torch is slow and only needed when a model runs
    from inference.models.xception import XceptionFER

    return XceptionFER.from_config(cfg, cache_dir)


MODEL_BUILDERS: dict[str, Callable[[ModelConfig, Path], Any]] = {
    "fer_xception": _fer_xception,
}


def build_model(cfg: ModelConfig, cache_dir: Path) -> Any:
    """Build the adapter for a model config; weights are obtained into `cache_dir`."""
    try:
        builder = MODEL_BUILDERS[cfg.kind]
    except KeyError:
        raise ValueError(
            f"models.{cfg.name}: no adapter for kind {cfg.kind!r}; known kinds: "
            f"{', '.join(sorted(MODEL_BUILDERS))}"
        ) from None
    return builder(cfg, Path(cache_dir))


__all__ = ["MODEL_BUILDERS", "build_model"]
