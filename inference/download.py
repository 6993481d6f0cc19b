"""Checksum-verified downloads into a cache, written atomically.

A file lands at its final path only after its SHA-256 matched; a mismatch or a broken
connection leaves nothing behind (the partial download is a temp file that is removed).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

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


def fetch_verified(
    url: str,
    dest: Path,
    sha256: str,
    *,
    timeout_s: float = 60.0,
    retries: int = 3,
) -> Path:
    """Download `url` to `dest` unless a file with the right checksum is already there."""
    if dest.exists() and sha256_file(dest) == sha256.lower():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    last_error: Exception | None = None
    for attempt in range(1, retries + 1):
        try:
            _download_once(url, dest, sha256.lower(), timeout_s)
            return dest
        except DownloadError:
            raise  # a checksum mismatch will not fix itself on retry
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
            last_error = exc
            if isinstance(exc, urllib.error.HTTPError) and exc.code < 500 and exc.code != 429:
                break
            time.sleep(min(2.0 ** attempt, 10.0) * 0.1)
    raise DownloadError(
        f"could not download {url} -> {dest}: {last_error}. Check the network, or place a "
        f"verified copy at {dest} yourself (sha256 {sha256})."
    )


def _download_once(url: str, dest: Path, sha256: str, timeout_s: float) -> None:
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(request, timeout=timeout_s) as resp:
            for block in iter(lambda: resp.read(CHUNK), b""):
                digest.update(block)
                out.write(block)
        got = digest.hexdigest()
        if got != sha256:
            raise DownloadError(
                f"checksum mismatch for {url}: expected sha256 {sha256}, got {got}; the file "
                f"was discarded and {dest} was not written. The source may have changed or the "
                f"transfer was corrupted; retry, or verify the published checksum."
            )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
