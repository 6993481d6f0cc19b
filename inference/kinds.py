"""The registry of model and dataset kinds: kind -> "module:Class" of its adapter.

Only strings here: the config validates kinds against these keys without importing any adapter,
and a kind's module (with its heavy dependencies: keras, torch, open_clip, HTTP clients) is
imported only when a model or dataset of that kind is built. Adding a kind = its module (the
adapter class and its pydantic options) + one line here.
"""

from __future__ import annotations

import importlib
from typing import Any

MODEL_ADAPTERS: dict[str, str] = {
    "fer_xception": "inference.models.xception:XceptionFER",
    "imported": "inference.models.imported:ImportedPredictions",
    "openai": "inference.models.vlm:VLMAdapter",
    "gemini": "inference.models.vlm:VLMAdapter",
    "transformers": "inference.models.vlm:VLMAdapter",
    "mlx": "inference.models.vlm:VLMAdapter",
    "clip": "inference.models.clip:ClipModel",
    "image_classifier": "inference.models.image_classifier:ImageClassifier",
    "hsemotion": "inference.models.hsemotion:HSEmotion",
    "emonet": "inference.models.emonet:EmoNetModel",
}

# The family a model of each kind belongs to unless `models.<name>.family` says otherwise (Tae et
# al.'s strength inversion compares the families). `imported` answers can come from any model:
# its family has no default and must be declared.
MODEL_FAMILIES = ("fer", "vlm", "clip", "other")
DEFAULT_MODEL_FAMILY: dict[str, str] = {
    "fer_xception": "fer", "image_classifier": "fer", "hsemotion": "fer", "emonet": "fer",
    "openai": "vlm", "gemini": "vlm", "transformers": "vlm", "mlx": "vlm",
    "clip": "clip",
}



def model_family(kind: str, declared: str | None) -> str:
    """A model's family: the one declared (`models.<name>.family`), else its kind's default;
    an error (phrased as the fix) for an unknown family or an `imported` model without one."""
    if declared is None:
        if kind in DEFAULT_MODEL_FAMILY:
            return DEFAULT_MODEL_FAMILY[kind]
        raise ValueError(f"required for kind {kind!r} (its answers may come from any model): add "
                         f"'family: fer' (a FER classifier), 'family: vlm' (a vision-language model), "
                         f"'family: clip' or 'family: other'")
    if declared not in MODEL_FAMILIES:
        raise ValueError(f"{declared!r} is not a model family; use one of: {', '.join(MODEL_FAMILIES)}")
    return declared


DATASET_ADAPTERS: dict[str, str] = {
    "london_set": "inference.datasets.london:LondonSetAdapter",
    "manifest": "inference.datasets.manifest:ManifestAdapter",
    # Folder layouts (inference/datasets/presets.yaml holds the named kinds' defaults).
    "folders": "inference.datasets.pattern:PatternAdapter",
    "filename_pattern": "inference.datasets.pattern:PatternAdapter",
    "chicago_face": "inference.datasets.chicago:ChicagoFaceAdapter",
    "radiate": "inference.datasets.pattern:PatternAdapter",
    "tarr": "inference.datasets.pattern:PatternAdapter",
    "caer_s": "inference.datasets.pattern:PatternAdapter",
    "caer": "inference.datasets.pattern:PatternAdapter",
    "kdef": "inference.datasets.pattern:PatternAdapter",
    "raf_db": "inference.datasets.raf_db:RafDbAdapter",
    "affectnet": "inference.datasets.affectnet:AffectNetAdapter",
}


def adapter_class(registry: dict[str, str], kind: str, where: str) -> Any:
    """Import the adapter class registered for `kind`; errors name `where` (e.g. models.mini)."""
    try:
        spec = registry[kind]
    except KeyError:
        raise ValueError(
            f"{where}: no adapter for kind {kind!r}; known kinds: {', '.join(sorted(registry))}"
        ) from None
    return import_class(spec, kind, where)


def import_class(spec: str, kind: str, where: str, error: type[Exception] = ValueError) -> Any:
    """Import "module:Class" lazily; a missing optional dependency names `where`, the kind and the fix."""
    module, _, name = spec.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise error(
            f"{where}: kind {kind!r} needs {module}.{name}, which is not available "
            f"({type(exc).__name__}: {exc}); install its dependencies or use another kind"
        ) from None
