"""Where CLIP weights come from: a checked local file, the user's open_clip / Hugging Face cache
(offline), or a seeded random model for tests; errors say what to download and where."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inference.download import sha256_file

RANDOM_PRETRAINED = ("random", "random_init", "none")


class ClipWeightsError(FileNotFoundError):
    """Weights for the configured architecture/tag are not available offline."""


# ----------------------------------------------------------------------------- helpers


def import_open_clip() -> Any:
    try:
        import open_clip
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the clip adapter needs open_clip; install it with "
            "`uv pip install open_clip_torch` (or `pip install open_clip_torch`)"
        ) from exc
    return open_clip


def state_dict_sha256(module: Any) -> str:
    """sha256 over a torch module's state dict: name, dtype, shape and bytes of every tensor."""
    import torch

    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous()
        digest.update(name.encode())
        digest.update(str(t.dtype).encode())
        digest.update(json.dumps(list(t.shape)).encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def prompt_hash(templates: Sequence[str], labels: Sequence[str], label_words: dict[str, str]) -> str:
    payload = json.dumps(
        {"templates": list(templates), "labels": list(labels), "label_words": [label_words[l] for l in labels]},
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def hf_hub_cache_dir() -> Path:
    """The Hugging Face hub cache, resolved from the environment at call time."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.path.expanduser(os.environ["HF_HUB_CACHE"]))
    if os.environ.get("HF_HOME"):
        return Path(os.path.expanduser(os.environ["HF_HOME"])) / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(os.path.expanduser(xdg)) if xdg else Path(os.path.expanduser("~/.cache"))
    return base / "huggingface" / "hub"


def open_clip_url_cache_dir() -> Path:
    """Where open_clip puts weights downloaded from a URL (its default cache_dir)."""
    return Path(os.path.expanduser("~/.cache/clip"))


def _hf_cached_file(repo_id: str, filename: str, cache_dir: Path) -> Path | None:
    """A file of an HF repo already in `cache_dir` (hub layout), or None; never touches the network."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover
        try_to_load_from_cache = None
    if try_to_load_from_cache is not None:
        found = try_to_load_from_cache(repo_id=repo_id, filename=filename, cache_dir=str(cache_dir))
        if isinstance(found, str) and os.path.isfile(found):
            return Path(found)
    # fall back to scanning the snapshots (any revision)
    folder = cache_dir / f"models--{repo_id.replace('/', '--')}" / "snapshots"
    if folder.is_dir():
        for snapshot in sorted(folder.iterdir()):
            candidate = snapshot / filename
            if candidate.is_file():
                return candidate
    return None


def _url_file_ok(path: Path, url: str) -> bool:
    """open_clip's own check of a URL-cached file: the sha256 prefix encoded in the URL."""
    if not path.is_file():
        return False
    name = os.path.basename(url)
    if "openaipublic" in url:
        expected = url.split("/")[-2]
    elif "mlfoundations" in url:
        expected = os.path.splitext(name)[0].split("-")[-1]
    else:
        expected = ""
    return not expected or sha256_file(path).startswith(expected)


@dataclass(frozen=True)
class ResolvedWeights:
    path: Path | None  # None: random init
    sha256: str | None  # of the file; None until computed for random init
    source: str  # how it was found (for preprocessing/model_runs)
    quick_gelu: bool = False
    preprocess: dict[str, Any] | None = None  # the tag's mean/std/interpolation/resize_mode


def resolve_pretrained(
    architecture: str,
    pretrained: str,
    cache_dir: Path | None,
    *,
    sha256: str | None = None,
    allow_download: bool = False,
) -> ResolvedWeights:
    """Find the weights for (architecture, pretrained) without network access.

    `pretrained` is a file path or an open_clip tag. Tags are looked up in the HF hub cache,
    open_clip's URL cache and `<cache_dir>/open_clip`; with `allow_download` they are downloaded
    into `<cache_dir>/open_clip` when missing. Raises ClipWeightsError naming what to fetch.
    """
    open_clip = import_open_clip()
    expected = sha256.lower() if sha256 else None
    if str(pretrained).lower() in RANDOM_PRETRAINED:
        return ResolvedWeights(path=None, sha256=None, source="random_init")
    candidate_path = Path(os.path.expanduser(str(pretrained)))
    pcfg = open_clip.get_pretrained_cfg(architecture, str(pretrained)) or {}
    looks_like_path = os.sep in str(pretrained) or candidate_path.suffix in (".pt", ".pth", ".bin", ".safetensors")
    if not pcfg:
        if candidate_path.is_file():
            got = sha256_file(candidate_path)
            if expected and got != expected:
                raise ClipWeightsError(
                    f"CLIP checkpoint {candidate_path}: sha256 {got} does not match the expected "
                    f"{expected}; replace the file or fix `sha256:`"
                )
            return ResolvedWeights(path=candidate_path, sha256=got, source=f"path:{candidate_path}")
        tags = open_clip.list_pretrained_tags_by_model(architecture)
        if looks_like_path:
            raise ClipWeightsError(
                f"CLIP checkpoint {candidate_path} (option `pretrained:` for architecture "
                f"{architecture!r}) does not exist; fix the path or use a pretrained tag"
                + (f" ({', '.join(tags)})" if tags else "")
            )
        raise ClipWeightsError(
            f"pretrained {pretrained!r} is neither an open_clip tag for architecture "
            f"{architecture!r} nor an existing file; known tags for {architecture}: "
            f"{', '.join(tags) if tags else '(none: use a local checkpoint path)'}"
        )

    quick_gelu = bool(pcfg.get("quick_gelu", False))
    preprocess = {k: pcfg[k] for k in ("mean", "std", "interpolation", "resize_mode") if k in pcfg}
    hf_hub = pcfg.get("hf_hub") or ""
    url = pcfg.get("url") or ""
    hf_dirs = [hf_hub_cache_dir()]
    url_dirs = [open_clip_url_cache_dir()]
    if cache_dir is not None:
        hf_dirs.append(Path(cache_dir) / "open_clip" / "hf")
        url_dirs.append(Path(cache_dir) / "open_clip")
    looked: list[str] = []
    found: Path | None = None
    repo_id = filenames = None
    if hf_hub:
        from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

        repo_id, filename = os.path.split(hf_hub)  # 'org/repo/' -> no file name: the default one
        filename = filename or HF_WEIGHTS_NAME
        filenames = []
        if filename == HF_WEIGHTS_NAME:
            filenames.append(HF_SAFE_WEIGHTS_NAME)
        elif filename.endswith((".bin", ".pth")):
            filenames.append(filename[:-4] + ".safetensors")
        filenames.append(filename)
        for directory in hf_dirs:
            for name in filenames:
                looked.append(f"{directory} (HF repo {repo_id}, file {name})")
                hit = _hf_cached_file(repo_id, name, directory)
                if hit is not None:
                    found = hit
                    break
            if found:
                break
    if found is None and url:
        for directory in url_dirs:
            target = directory / os.path.basename(url)
            looked.append(str(target))
            if _url_file_ok(target, url):
                found = target
                break
    source = f"tag:{pretrained}"
    if found is None and allow_download:
        target_dir = Path(cache_dir or open_clip_url_cache_dir()) / "open_clip"
        try:
            from open_clip.pretrained import download_pretrained

            cfg = dict(pcfg)
            if hf_hub:
                got = download_pretrained(cfg, cache_dir=str(target_dir / "hf"))
            else:
                got = download_pretrained(cfg, cache_dir=str(target_dir))
            found = Path(got) if got else None
            source = f"tag:{pretrained} (downloaded)"
        except Exception as exc:  # noqa: BLE001 - network/hub errors of any kind end in the message below
            looked.append(f"download failed: {exc}")
    if found is None:
        hint = []
        if hf_hub and repo_id:
            hint.append(
                f"`hf download {repo_id} {filenames[0] if filenames else ''}` (Hugging Face CLI; "
                f"lands in {hf_hub_cache_dir()}, or set HF_HOME/HF_HUB_CACHE to a copied cache)"
            )
        if url:
            hint.append(f"download {url} into {open_clip_url_cache_dir()}/")
        hint.append(
            f"or, on a machine with internet, run `python -c \"import open_clip; "
            f"open_clip.create_model('{architecture}', pretrained='{pretrained}')\"` and copy its "
            f"cache here"
        )
        hint.append("or put any open_clip checkpoint file somewhere and set `pretrained: /path/to/file` (+ `sha256:`)")
        hint.append("or set `allow_download: true` where the network is reachable")
        raise ClipWeightsError(
            f"open_clip weights for architecture {architecture!r} with pretrained tag "
            f"{pretrained!r} are not available offline. Looked in: {'; '.join(looked)}. "
            f"To fix: {'; '.join(hint)}."
        )
    got = sha256_file(found)
    if expected and got != expected:
        raise ClipWeightsError(
            f"CLIP weights {found} ({architecture} / {pretrained}): sha256 {got} does not match the "
            f"expected {expected}; fix `sha256:` or replace the cached file"
        )
    return ResolvedWeights(path=found, sha256=got, source=source, quick_gelu=quick_gelu, preprocess=preprocess)


