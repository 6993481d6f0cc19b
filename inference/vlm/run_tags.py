"""Dagster run tags that keep runs in separate processes inside one provider budget.

Inside a process every engine of one (provider, endpoint, account, model) shares a limiter
(`inference.vlm.limiter.shared_limiter`). Runs in separate processes cannot share memory, so
they carry a `fer/provider` tag and the Dagster instance caps runs per tag value, e.g. in
`dagster.yaml`:

    concurrency:
      runs:
        tag_concurrency_limits:
          - key: fer/provider
            value: {applyLimitPerUniqueValue: true}
            limit: 1

(older instances: the same list under `run_coordinator: {module: dagster.core.run_coordinator,
class: QueuedRunCoordinator, config: {tag_concurrency_limits: [...]}}`).
"""

from __future__ import annotations

from inference.config import EXTERNAL_API_KINDS, ModelConfig

PROVIDER_TAG = "fer/provider"


def provider_tag(kind: str, base_url: str | None, api_key_env: str | None) -> str:
    """A Dagster run-tag value (`fer/provider`) for runs that spend one provider account's quota:
    runs in separate processes cannot share a limiter, so a tag concurrency limit keyed on this
    serialises them. Only [A-Za-z0-9_.-] (tag values must be short and plain)."""
    host = "default"
    if base_url:
        host = base_url.split("://", 1)[-1].split("/", 1)[0]
    raw = f"{kind}.{host}.{api_key_env or 'nokey'}"
    return "".join(c if c.isalnum() or c in "_.-" else "_" for c in raw)[:63]


def provider_run_tags(cfg: ModelConfig) -> dict[str, str]:
    """{"fer/provider": "<kind>.<host>.<key variable>"} for a model that calls a remote API
    (openai / gemini kinds, whatever the endpoint), {} for local kinds."""
    if cfg.kind not in EXTERNAL_API_KINDS:
        return {}
    from inference.models.vlm_options import vlm_options  # the kind's own options module

    options = vlm_options(cfg)
    return {PROVIDER_TAG: provider_tag(cfg.kind, options.base_url, options.api_key_variable(cfg.kind))}
