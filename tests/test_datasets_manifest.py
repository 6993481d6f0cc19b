"""Manifest adapter and the label map it checks labels against."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

from inference.config import DatasetConfig
from inference.datasets import UnknownLabelSetError, load_dataset, load_label_map, load_manifest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
LONDON = SHARED / "datasets" / "london_set"

pytestmark = pytest.mark.skipif(not LONDON.is_dir(), reason=f"shared London Set not at {LONDON}")


@pytest.fixture(scope="module")
def labels():
    return load_label_map()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A dataset folder with four real JPEGs, one corrupt file, and a file outside it."""
    data = tmp_path / "data"
    (data / "img").mkdir(parents=True)
    for n, src in enumerate(["neutral_front/001_03.jpg", "smiling_front/001_08.jpg",
                             "neutral_front/002_03.jpg", "smiling_front/002_08.jpg"]):
        shutil.copyfile(LONDON / src, data / "img" / f"{n}.jpg")
    (data / "img" / "broken.jpg").write_bytes((LONDON / "neutral_front/003_03.jpg").read_bytes()[:1500])
    shutil.copyfile(LONDON / "neutral_front/004_03.jpg", tmp_path / "outside.jpg")
    os.symlink(tmp_path / "outside.jpg", data / "img" / "link.jpg")
    return data


def write(root: Path, rows: list[dict], name: str = "manifest.csv") -> Path:
    path = root / name
    frame = pd.DataFrame(rows)
    frame.to_parquet(path) if name.endswith(".parquet") else frame.to_csv(path, index=False)
    return path


GOOD = [
    {"image": "img/0.jpg", "emotion": "neutral", "race": "white", "gender": "female", "age": "24", "identity": "001"},
    {"image": "img/1.jpg", "emotion": "happy", "race": "white", "gender": "female", "age": "", "identity": "001"},
]


def test_label_map(labels):
    assert labels.knows("london_set", "smiling")
    assert not labels.knows("london_set", "angry")
    assert labels.canonical("london_set", "smiling") == "happy"
    assert labels.canonical("canonical", "nope") is None
    assert labels.labels("london_set") == ["neutral", "smiling"]
    with pytest.raises(UnknownLabelSetError) as err:
        labels.labels("affectnet_v9")
    assert "emotion_label_map.csv" in str(err.value) and "affectnet_v9" in str(err.value)


def test_clean_csv_loads(root, labels):
    load = load_manifest(write(root, GOOD), "canonical", labels, {})
    assert load.quarantined == []
    first, second = load.images
    assert (first.image_id, first.source_label, first.identity, first.age) == ("img/0.jpg", "neutral", "001", 24.0)
    assert second.age is None and second.width == 512
    assert first.path == root.resolve() / "img/0.jpg"


def test_every_row_problem_is_quarantined(root, labels):
    rows = [
        *GOOD,
        {"image": "../outside.jpg", "emotion": "happy"},                  # 3 escapes via ..
        {"image": str(root / "img/2.jpg"), "emotion": "happy"},           # 4 absolute
        {"image": "img/link.jpg", "emotion": "happy"},                    # 5 symlink outside
        {"image": "img/missing.jpg", "emotion": "happy"},                 # 6 missing file
        {"image": "img/broken.jpg", "emotion": "happy"},                  # 7 corrupt image
        {"image": "img/2.jpg", "emotion": "smirk"},                       # 8 unknown label
        {"image": "img/3.jpg", "emotion": ""},                            # 9 missing required
        {"image": "./img/0.jpg", "emotion": "sad"},                       # 10 duplicate of 1
        {"image": "img/3.jpg", "emotion": "sad", "age": "old"},           # 11 bad age
    ]
    load = load_manifest(write(root, rows), "canonical", labels, {})
    assert [i.image_id for i in load.images] == ["img/0.jpg", "img/1.jpg"]
    reasons = {q.row_number: q.reason for q in load.quarantined}
    expected = {
        3: "outside the dataset root", 4: "absolute", 5: "outside the dataset root",
        6: "does not exist", 7: "not a readable image",
        8: "add a row 'canonical,smirk,<canonical emotion>' to dbt/seeds/emotion_label_map.csv",
        9: "missing value for required field(s) emotion", 10: "duplicate of row 1",
        11: "not a number",
    }
    assert set(reasons) == set(expected)
    for number, fragment in expected.items():
        assert fragment in reasons[number], (number, reasons[number])
        assert f"row {number}" in reasons[number]
    q8 = next(q for q in load.quarantined if q.row_number == 8)
    assert q8.record["emotion"] == "smirk" and q8.image_path == "img/2.jpg"
    json.dumps([q.record for q in load.quarantined])


def test_parquet_renamed_columns_and_extras(root, labels):
    rows = [
        {"filepath": "img/2.jpg", "label": "smiling", "ethnicity": "black", "subject": 7,
         "score": 0.5, "pose": "front"},
        {"filepath": "img/3.jpg", "label": "neutral", "ethnicity": None, "subject": 8,
         "score": float("nan"), "pose": "left"},
    ]
    options = {"columns": {"image": "filepath", "emotion": "label", "race": "ethnicity",
                           "identity": "subject"}}
    load = load_manifest(write(root, rows, "m.parquet"), "london_set", labels, options)
    assert load.quarantined == []
    a, b = load.images
    assert (a.source_label, a.race, a.identity, a.gender, a.age) == ("smiling", "black", "7", None, None)
    assert a.extra == {"score": 0.5, "pose": "front"}
    assert b.race is None and b.extra == {"score": None, "pose": "left"}
    json.dumps([a.extra, b.extra])


def test_extra_required_fields(root, labels):
    rows = [{**GOOD[0]}, {**GOOD[1], "race": ""}]
    load = load_manifest(write(root, rows), "canonical", labels, {"required": ["race", "identity"]})
    assert len(load.images) == 1
    assert "race" in load.quarantined[0].reason


def test_file_level_problems_raise(root, labels):
    with pytest.raises(ValueError, match="does not exist"):
        load_manifest(root / "nope.csv", "canonical", labels, {})
    path = write(root, [{"image": "img/0.jpg", "label": "neutral"}])
    with pytest.raises(ValueError, match="no column 'emotion'") as err:
        load_manifest(path, "canonical", labels, {})
    assert str(path) in str(err.value)
    with pytest.raises(ValueError, match="no column 'race'"):
        load_manifest(path, "canonical", labels, {"columns": {"emotion": "label"}, "required": ["race"]})
    with pytest.raises(ValueError, match="options.columns"):
        load_manifest(path, "canonical", labels, {"columns": {"mood": "label"}})
    with pytest.raises(UnknownLabelSetError):
        load_manifest(path, "no_such_set", labels, {"columns": {"emotion": "label"}})


def test_dispatcher_routes_manifests(root, labels):
    path = write(root, [{"img": "img/0.jpg", "y": "neutral"}])
    cfg = DatasetConfig(name="mine", kind="manifest", options={"columns": {"image": "img", "emotion": "y"}})
    load = load_dataset(cfg, path, labels)
    assert [i.source_label for i in load.images] == ["neutral"]
