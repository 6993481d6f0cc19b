"""Discover model versions at their providers, so new ones can be evaluated by themselves.

A model in benchmark.yaml may be *watched* instead of (or beside) pinned: a provider lists what
it serves and a glob pattern picks the family, e.g. `gpt-4o-*` at an OpenAI-compatible
`/v1/models`, `gemini-2.*-flash*` in the Gemini model list, the head revision of a Hugging Face
repo, or the sub-folders of a local weights folder. Listing failures raise ProviderUnavailable
with a reason, which the Dagster sensor turns into a skip instead of a crash.
"""

from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, model_validator

# Same rule as inference.config: the version becomes part of a partition key.
VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
PROVIDERS = ("openai", "gemini", "huggingface", "folder")


class ProviderUnavailable(RuntimeError):
    """The provider could not be listed now (down, unreachable, refused); try again later."""


class WatchConfig(BaseModel):
    """`models.<name>.watch:` in benchmark.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: Literal["openai", "gemini", "huggingface", "folder"]
    pattern: str = "*"  # glob over the provider's model ids (openai, gemini, folder)
    base_url: str | None = None  # OpenAI-compatible server, Gemini endpoint or HF endpoint
    api_key_env: str | None = None  # variable holding the key; never the key itself
    repo_id: str | None = None  # huggingface: e.g. google/paligemma-3b-mix-224
    revision: str = "main"  # huggingface: branch or tag to follow
    path: str | None = None  # folder: directory whose entries are versions
    interval_s: int = 3600  # how often the sensor polls this provider
    timeout_s: float = 20.0

    @model_validator(mode="after")
    def _provider_needs(self) -> "WatchConfig":
        if self.provider == "huggingface" and not self.repo_id:
            raise ValueError("provider huggingface needs repo_id (e.g. google/paligemma-3b-mix-224)")
        if self.provider == "folder" and not self.path:
            raise ValueError("provider folder needs path (a directory whose entries are versions)")
        return self


@dataclass(frozen=True)
class DiscoveredVersion:
    version: str  # becomes the partition key's version part
    provider: str
    source: str  # where it was seen (URL or path; never a secret)
    details: dict[str, Any] = field(default_factory=dict)


def list_versions(watch: WatchConfig, resolve=lambda p: Path(p)) -> list[DiscoveredVersion]:
    """Versions the provider serves now that match the pattern, sorted."""
    try:
        found = _LISTERS[watch.provider](watch, resolve)
    except ProviderUnavailable:
        raise
    except Exception as exc:  # noqa: BLE001 - any client/transport error means "not now"
        raise ProviderUnavailable(f"{watch.provider}: {type(exc).__name__}: {_scrub(str(exc), watch)}") from None
    usable = [v for v in found if VERSION_RE.match(v.version)]
    return sorted(usable, key=lambda v: v.version)


def _matching(ids: list[str], pattern: str) -> list[str]:
    return [i for i in ids if fnmatch.fnmatchcase(i, pattern)]


def _key(watch: WatchConfig, default_env: str | None) -> str | None:
    name = watch.api_key_env or default_env
    return os.environ.get(name) if name else None


def _scrub(text: str, watch: WatchConfig) -> str:
    for name in filter(None, (watch.api_key_env, "OPENAI_API_KEY", "GEMINI_API_KEY", "HF_TOKEN")):
        secret = os.environ.get(name)
        if secret:
            text = text.replace(secret, "***")
    return text


def _openai(watch: WatchConfig, resolve) -> list[DiscoveredVersion]:
    from openai import OpenAI

    client = OpenAI(
        base_url=watch.base_url, api_key=_key(watch, "OPENAI_API_KEY") or "no-key",
        max_retries=0, timeout=watch.timeout_s,
    )
    ids = [m.id for m in client.models.list()]
    source = watch.base_url or "https://api.openai.com/v1"
    return [DiscoveredVersion(i, "openai", f"{source.rstrip('/')}/models") for i in _matching(ids, watch.pattern)]


def _gemini(watch: WatchConfig, resolve) -> list[DiscoveredVersion]:
    from google import genai
    from google.genai import types

    options = types.HttpOptions(
        base_url=watch.base_url, api_version="v1beta", timeout=int(watch.timeout_s * 1000),
        retry_options=types.HttpRetryOptions(attempts=1),
    )
    client = genai.Client(api_key=_key(watch, "GEMINI_API_KEY") or "no-key", http_options=options)
    ids = [m.name.removeprefix("models/") for m in client.models.list()]
    source = (watch.base_url or "https://generativelanguage.googleapis.com").rstrip("/") + "/v1beta/models"
    return [DiscoveredVersion(i, "gemini", source) for i in _matching(ids, watch.pattern)]


def _huggingface(watch: WatchConfig, resolve) -> list[DiscoveredVersion]:
    from huggingface_hub import HfApi

    api = HfApi(endpoint=watch.base_url, token=_key(watch, "HF_TOKEN") or False)
    info = api.model_info(watch.repo_id, revision=watch.revision, timeout=watch.timeout_s)
    sha = info.sha or ""
    if not sha:
        raise ProviderUnavailable(f"huggingface: {watch.repo_id}@{watch.revision} has no commit sha")
    # The version is the commit: a moved branch head is a new version, the same commit is not.
    return [DiscoveredVersion(f"{watch.revision}-{sha[:12]}", "huggingface", f"{watch.repo_id}@{watch.revision}",
                              {"sha": sha, "repo_id": watch.repo_id, "revision": watch.revision})]


def _folder(watch: WatchConfig, resolve) -> list[DiscoveredVersion]:
    root = resolve(watch.path)
    if not root.is_dir():
        raise ProviderUnavailable(f"folder: {root} is not a directory")
    entries = [p for p in root.iterdir() if not p.name.startswith(".")]
    return [
        DiscoveredVersion(p.name, "folder", str(p), {"mtime": p.stat().st_mtime})
        for p in sorted(entries)
        if fnmatch.fnmatchcase(p.name, watch.pattern)
    ]


_LISTERS = {"openai": _openai, "gemini": _gemini, "huggingface": _huggingface, "folder": _folder}
