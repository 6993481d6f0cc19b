"""Offline download tests against a loopback mirror of part of the shared London Set."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from inference.datasets import load_london_set, obtain_london_set
from inference.datasets.london import ORIGINALS_SHA256, download_london_set
from inference.download import DownloadError, fetch_verified, read_checksums
try:
    from tests.support.http_server import FileServer
except ModuleNotFoundError:  # plain `pytest` puts tests/, not the repo root, on sys.path
    from support.http_server import FileServer

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
LONDON = SHARED / "datasets" / "london_set"
IDS = ("001", "005", "036")
SUBSET = [f"neutral_front/{i}_03.jpg" for i in IDS] + [f"smiling_front/{i}_08.jpg" for i in IDS]

pytestmark = pytest.mark.skipif(not LONDON.is_dir(), reason=f"shared London Set not at {LONDON}")


@pytest.fixture
def mirror(tmp_path: Path) -> tuple[Path, Path]:
    """(mirror dir with 6 images + a 3-row info CSV, checksum file for those 6 images)."""
    root = tmp_path / "mirror"
    for rel in SUBSET:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(LONDON / rel, root / rel)
    lines = (LONDON / "london_info.csv").read_text().splitlines()
    keep = [lines[0]] + [line for line in lines[1:] if line.split(",")[0] in IDS]
    (root / "london_info.csv").write_text("\n".join(keep) + "\n")
    # Resized copies: their checksums come from SHA256SUMS, not ORIGINALS.sha256.
    shared_sums = read_checksums(LONDON / "SHA256SUMS")
    sums = tmp_path / "subset.sha256"
    sums.write_text("".join(f"{shared_sums[rel]}  {rel}\n" for rel in SUBSET))
    return root, sums


@pytest.fixture
def server(mirror: tuple[Path, Path]):
    with FileServer(mirror[0]) as srv:
        yield srv


def _leftovers(dest: Path) -> list[str]:
    return sorted(p.name for p in dest.rglob("*") if p.is_file() and p.name.endswith(".part"))


def test_download_lands_byte_identical_and_loads(tmp_path, mirror, server):
    root, sums = mirror
    dest = download_london_set(tmp_path / "dest", base_url=server.url, checksums=sums)
    for rel in [*SUBSET, "london_info.csv"]:
        assert (dest / rel).read_bytes() == (root / rel).read_bytes(), rel
    assert server.total_requests == len(SUBSET) + 1
    load = load_london_set(dest)
    assert len(load.images) == 6 and load.quarantined == []


def test_second_download_makes_no_requests(tmp_path, mirror, server):
    _, sums = mirror
    download_london_set(tmp_path / "dest", base_url=server.url, checksums=sums)
    server.reset()
    download_london_set(tmp_path / "dest", base_url=server.url, checksums=sums)
    assert server.total_requests == 0


def test_damaged_local_file_is_fetched_again(tmp_path, mirror, server):
    root, sums = mirror
    dest = download_london_set(tmp_path / "dest", base_url=server.url, checksums=sums)
    (dest / SUBSET[0]).write_bytes(b"garbage")
    server.reset()
    download_london_set(dest, base_url=server.url, checksums=sums)
    assert dict(server.requests) == {SUBSET[0]: 1}
    assert (dest / SUBSET[0]).read_bytes() == (root / SUBSET[0]).read_bytes()


def test_checksum_mismatch_names_file_and_leaves_nothing(tmp_path, mirror, server):
    _, sums = mirror
    bad = SUBSET[2]
    server.corrupt(bad)
    dest = tmp_path / "dest"
    with pytest.raises(DownloadError, match="checksum mismatch") as err:
        download_london_set(dest, base_url=server.url, checksums=sums)
    assert bad in str(err.value)
    assert not (dest / bad).exists()
    assert _leftovers(dest) == []
    assert server.requests[bad] == 1  # a mismatch is not retried


def test_transient_server_errors_are_retried(tmp_path, mirror, server):
    root, sums = mirror
    server.fail(SUBSET[1], times=2)
    server.fail("london_info.csv", times=1)
    dest = download_london_set(tmp_path / "dest", base_url=server.url, checksums=sums)
    assert server.requests[SUBSET[1]] == 3
    assert server.requests["london_info.csv"] == 2
    assert (dest / SUBSET[1]).read_bytes() == (root / SUBSET[1]).read_bytes()


def test_not_found_is_a_clear_error(tmp_path, mirror, server):
    _, sums = mirror
    server.missing(SUBSET[4])
    with pytest.raises(DownloadError, match="404") as err:
        download_london_set(tmp_path / "dest", base_url=server.url, checksums=sums)
    assert SUBSET[4] in str(err.value)
    assert server.requests[SUBSET[4]] == 1  # a 404 is not retried
    assert _leftovers(tmp_path / "dest") == []


def test_info_csv_missing_is_a_clear_error(tmp_path, mirror, server):
    _, sums = mirror
    server.missing("london_info.csv")
    with pytest.raises(DownloadError, match="london_info.csv"):
        download_london_set(tmp_path / "dest", base_url=server.url, checksums=sums)
    assert not (tmp_path / "dest" / "london_info.csv").exists()


@pytest.mark.parametrize(
    "content, message",
    [
        ("id,age,gender,eth\n001,24,female,white\n", "header"),
        ("face_id,face_age,face_gender,face_eth\n001,24,female,white\n", "no row for face_id"),
        ("face_id,face_age,face_gender,face_eth\n001,old,female,white\n", "not a number"),
    ],
)
def test_unpinned_info_csv_is_validated(tmp_path, mirror, server, content, message):
    root, sums = mirror
    (root / "london_info.csv").write_text(content)
    with pytest.raises(DownloadError, match=message):
        download_london_set(tmp_path / "dest", base_url=server.url, checksums=sums)
    assert not (tmp_path / "dest" / "london_info.csv").exists()
    assert _leftovers(tmp_path / "dest") == []


def test_info_csv_can_be_pinned(tmp_path, mirror, server):
    root, sums = mirror
    digest = hashlib.sha256((root / "london_info.csv").read_bytes()).hexdigest()
    download_london_set(tmp_path / "ok", base_url=server.url, checksums=sums, info_sha256=digest)
    with pytest.raises(DownloadError, match="london_info.csv"):
        download_london_set(tmp_path / "bad", base_url=server.url, checksums=sums, info_sha256="0" * 64)
    assert not (tmp_path / "bad" / "london_info.csv").exists()


def test_fetch_verified_keeps_a_verified_file_and_writes_atomically(tmp_path, mirror, server):
    root, sums = mirror
    rel = SUBSET[0]
    digest = read_checksums(sums)[rel]
    dest = tmp_path / "one" / "x.jpg"
    fetch_verified(f"{server.url}/{rel}", dest, digest)
    fetch_verified(f"{server.url}/{rel}", dest, digest)
    assert server.requests[rel] == 1
    server.corrupt(rel)
    other = tmp_path / "one" / "y.jpg"
    with pytest.raises(DownloadError):
        fetch_verified(f"{server.url}/{rel}", other, digest)
    assert sorted(p.name for p in dest.parent.iterdir()) == ["x.jpg"]


def test_package_carries_the_originals_checksums():
    assert read_checksums(ORIGINALS_SHA256) == read_checksums(LONDON / "ORIGINALS.sha256")
    assert len(read_checksums(ORIGINALS_SHA256)) == 204


def test_obtain_prefers_local_copy_then_downloads(tmp_path, mirror, server):
    _, sums = mirror
    options = {"base_url": server.url, "checksums": str(sums)}
    assert obtain_london_set(LONDON, tmp_path / "cache", options) == LONDON
    assert server.total_requests == 0
    got = obtain_london_set(tmp_path / "nowhere", tmp_path / "cache", options)
    assert got == tmp_path / "cache" / "london_set"
    assert len(load_london_set(got).images) == 6
    got = obtain_london_set(None, tmp_path / "cache", options)
    assert server.total_requests == len(SUBSET) + 1  # the second call found everything verified
