"""Checksum-verified downloads into a cache, written atomically.

Files are fetched by pooch (download to a temp file, SHA-256 check, atomic move; a file already
there with the right checksum is kept without a request). Transient failures (network errors,
timeouts, 5xx, 429) are retried by tenacity under `download_retrying`, the one retry policy for
downloads; a 4xx or a checksum mismatch is not retried, since neither fixes itself.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import requests
import tenacity

USER_AGENT = "fer-bias-warehouse/0.1 (+https://github.com/)"
CHUNK = 1 << 16


class DownloadError(RuntimeError):
    """A file could not be fetched or did not match its published checksum."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def read_checksums(path: Path) -> dict[str, str]:
    """Parse a `sha256sum`-style file into {relative path: hex digest}."""
    sums: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2 or len(parts[0]) != 64:
            raise DownloadError(f"{path}:{number}: expected '<sha256>  <path>', got {line!r}")
        sums[parts[1].strip().lstrip("*")] = parts[0].lower()
    return sums


def is_transient(exc: BaseException) -> bool:
    """Worth another try: the network, a timeout, a server error or rate limit (not a 4xx)."""
    if isinstance(exc, requests.HTTPError):
        status = exc.response.status_code if exc.response is not None else 500
        return status >= 500 or status == 429
    return isinstance(exc, requests.ConnectionError | requests.Timeout)


def download_retrying(retries: int) -> tenacity.Retrying:
    """At most `retries` tries of a transient failure, 0.2 s, 0.4 s, ... (at most 1 s) apart."""
    return tenacity.Retrying(
        stop=tenacity.stop_after_attempt(max(retries, 1)),
        wait=tenacity.wait_exponential(multiplier=0.2, max=1.0),
        retry=tenacity.retry_if_exception(is_transient),
        reraise=True,
    )


def fetch_verified(
    url: str,
    dest: Path,
    sha256: str,
    *,
    timeout_s: float = 60.0,
    retries: int = 3,
) -> Path:
    """Download `url` to `dest` unless a file with the right checksum is already there."""
    import pooch

    # pooch's own logger prints every download to stderr; our errors name the file instead.
    pooch.get_logger().setLevel(logging.WARNING)
    downloader = pooch.HTTPDownloader(headers={"User-Agent": USER_AGENT}, timeout=timeout_s)
    try:
        download_retrying(retries)(
            pooch.retrieve, url, known_hash=f"sha256:{sha256.lower()}", fname=dest.name,
            path=dest.parent, downloader=downloader,
        )
    except ValueError as exc:  # pooch: the downloaded file's hash differs
        raise DownloadError(
            f"checksum mismatch for {url}: {exc}; the file was discarded and {dest} was not "
            f"written. The source may have changed or the transfer was corrupted; retry, or "
            f"verify the published checksum."
        ) from None
    except (requests.RequestException, OSError) as exc:
        raise DownloadError(
            f"could not download {url} -> {dest}: {exc}. Check the network, or place a "
            f"verified copy at {dest} yourself (sha256 {sha256})."
        ) from None
    return dest


def fetch_bytes(url: str, *, timeout_s: float = 60.0, retries: int = 3) -> bytes:
    """GET a small unpinned file (validated by the caller) under the same retry policy."""

    def get() -> bytes:
        response = requests.get(url, headers={"User-Agent": USER_AGENT}, timeout=timeout_s)
        response.raise_for_status()
        return response.content

    try:
        return download_retrying(retries)(get)
    except requests.RequestException as exc:
        raise DownloadError(f"could not download {url}: {exc}. Check the network or the URL.") from None
