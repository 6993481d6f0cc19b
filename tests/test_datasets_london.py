"""London Set loader against the shared resized copy, intact and damaged."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest

from inference.config import DatasetConfig
from inference.datasets import load_dataset, load_label_map, load_london_set
from inference.download import read_checksums

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
LONDON = SHARED / "datasets" / "london_set"

pytestmark = pytest.mark.skipif(not LONDON.is_dir(), reason=f"shared London Set not at {LONDON}")


@pytest.fixture(scope="module")
def real_load():
    return load_london_set(LONDON)


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    dest = tmp_path / "london_set"
    shutil.copytree(LONDON, dest)
    return dest


def test_real_copy_loads_completely(real_load):
    assert len(real_load.images) == 204
    assert real_load.quarantined == []
    assert Counter(i.source_label for i in real_load.images) == {"neutral": 102, "smiling": 102}
    assert len({i.image_id for i in real_load.images}) == 204


def test_identity_counts_per_ethnicity_match_readme(real_load):
    race_of = {i.identity: i.race for i in real_load.images}
    assert len(race_of) == 102
    assert Counter(race_of.values()) == {
        "white": 69, "black": 13, "west_asian": 10, "east_asian": 9, "east_asian/white": 1,
    }
    assert {i.gender for i in real_load.images} == {"female", "male"}


def test_record_fields(real_load):
    by_id = {i.image_id: i for i in real_load.images}
    first = by_id["neutral_front/001_03.jpg"]
    assert (first.identity, first.race, first.gender, first.age) == ("001", "white", "female", 24.0)
    assert (first.width, first.height) == (512, 512)
    assert first.path == LONDON.resolve() / "neutral_front/001_03.jpg"
    assert by_id["smiling_front/036_08.jpg"].race == "east_asian/white"
    assert by_id["smiling_front/036_08.jpg"].source_label == "smiling"
    no_age = sorted({i.identity for i in real_load.images if i.age is None})
    assert no_age == ["031", "135"]


def test_hashes_match_published_checksums(real_load):
    sums = read_checksums(LONDON / "SHA256SUMS")
    assert {i.image_id: i.image_hash for i in real_load.images} == sums


def test_missing_and_corrupt_images_are_quarantined(copy):
    (copy / "neutral_front/002_03.jpg").unlink()
    damaged = copy / "smiling_front/003_08.jpg"
    damaged.write_bytes(damaged.read_bytes()[:2000])  # truncated JPEG
    load = load_london_set(copy)
    assert len(load.images) == 202
    reasons = {q.image_path: q.reason for q in load.quarantined}
    assert set(reasons) == {"neutral_front/002_03.jpg", "smiling_front/003_08.jpg"}
    assert "does not exist" in reasons["neutral_front/002_03.jpg"]
    assert "not a readable image" in reasons["smiling_front/003_08.jpg"]
    assert all(q.record["identity"] in {"002", "003"} for q in load.quarantined)


def test_garbage_bytes_are_quarantined(copy):
    (copy / "neutral_front/004_03.jpg").write_bytes(b"not a jpeg at all")
    load = load_london_set(copy)
    assert [q.image_path for q in load.quarantined] == ["neutral_front/004_03.jpg"]


def test_bad_csv_rows_are_quarantined_with_their_images(copy):
    info = copy / "london_info.csv"
    lines = info.read_text().splitlines()
    lines[1] = "001,old,female,white"  # bad age
    lines[2] = "002,24,female"  # missing field
    lines.append("003,38,female,white")  # duplicate id
    info.write_text("\n".join(lines) + "\n")
    load = load_london_set(copy)
    rows = [q for q in load.quarantined if q.image_path is None]
    assert [q.row_number for q in rows] == [1, 2, 103]
    assert "not a number" in rows[0].reason and "face_age" in rows[0].reason
    assert "expected 4" in rows[1].reason
    assert "repeats data row 3" in rows[2].reason
    orphans = sorted(q.image_path for q in load.quarantined if q.image_path)
    assert orphans == ["neutral_front/001_03.jpg", "neutral_front/002_03.jpg",
                       "smiling_front/001_08.jpg", "smiling_front/002_08.jpg"]
    assert len(load.images) == 200


def test_missing_info_csv_raises(copy):
    (copy / "london_info.csv").unlink()
    with pytest.raises(FileNotFoundError, match="london_info.csv"):
        load_london_set(copy)


def test_wrong_header_raises(copy):
    (copy / "london_info.csv").write_text("id,age\n001,24\n")
    with pytest.raises(ValueError, match="header"):
        load_london_set(copy)


def test_dispatcher_quarantines_labels_the_seed_does_not_know(tmp_path):
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    (seeds / "emotion_label_map.csv").write_text(
        "label_set,source_label,emotion\nlondon_set,neutral,neutral\n"
    )
    cfg = DatasetConfig(name="london", kind="london_set")
    load = load_dataset(cfg, LONDON, load_label_map(seeds))
    assert len(load.images) == 102
    assert len(load.quarantined) == 102
    assert "emotion_label_map.csv" in load.quarantined[0].reason


def test_dispatcher_with_repo_seed_loads_everything():
    cfg = DatasetConfig(name="london", kind="london_set")
    load = load_dataset(cfg, LONDON, load_label_map())
    assert len(load.images) == 204 and load.quarantined == []
