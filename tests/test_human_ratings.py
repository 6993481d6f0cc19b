"""Human ratings loader: CSV and Parquet, renames, scales, and every quarantine reason."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from inference.config import ConfigError, load_config
from inference.datasets.labels import load_label_map
from inference.datasets.ratings import load_human_ratings
from inference.frames import human_ratings_frame

IMAGES = {"img/0.jpg", "img/1.jpg"}


@pytest.fixture(scope="module")
def labels():
    return load_label_map()


def write(root: Path, rows: list[dict], name: str = "ratings.csv") -> Path:
    path = root / name
    frame = pd.DataFrame(rows)
    frame.to_parquet(path) if name.endswith(".parquet") else frame.to_csv(path, index=False)
    return path


GOOD = [
    {"rater": "r1", "image": "img/0.jpg", "dimension": "emotion", "value": "smiling"},
    {"rater": "r1", "image": "img/0.jpg", "dimension": "Valence", "value": "7"},
    {"rater": "r2", "image": "./img/1.jpg", "dimension": "arousal", "value": "1"},
    {"rater": "r2", "image": "img/1.jpg", "dimension": "naturalness", "value": "9"},
]


@pytest.mark.parametrize("name", ["ratings.csv", "ratings.parquet"])
def test_good_rows_load_from_csv_and_parquet(tmp_path, labels, name):
    path = write(tmp_path, GOOD, name)
    load = load_human_ratings(path, label_set="london_set", label_map=labels, image_ids=IMAGES)
    assert load.quarantined == []
    got = {(r.rater, r.image_id, r.dimension): r for r in load.ratings}
    assert set(got) == {("r1", "img/0.jpg", "emotion"), ("r1", "img/0.jpg", "valence"),
                        ("r2", "img/1.jpg", "arousal"), ("r2", "img/1.jpg", "naturalness")}
    emotion = got[("r1", "img/0.jpg", "emotion")]
    assert emotion.label == "smiling" and emotion.value is None and emotion.scale_min is None
    valence = got[("r1", "img/0.jpg", "valence")]
    assert valence.value == 7.0 and valence.label is None and (valence.scale_min, valence.scale_max) == (1.0, 9.0)
    frame = human_ratings_frame("ds", load.ratings)
    assert list(frame.columns) == ["dataset", "rater", "image_id", "dimension", "value", "label",
                                   "scale_min", "scale_max", "loaded_at"]
    assert frame["value"].dtype == "float64" and len(frame) == 4


def test_parquet_numbers_and_numeric_raters(tmp_path, labels):
    path = write(tmp_path, [{"rater": 3, "image": "img/0.jpg", "dimension": "valence", "value": 2.5}],
                 "ratings.parquet")
    load = load_human_ratings(path, label_set="canonical", label_map=labels, image_ids=IMAGES)
    assert [(r.rater, r.value) for r in load.ratings] == [("3", 2.5)]


def test_column_renames_and_per_row_scales(tmp_path, labels):
    rows = [
        {"who": "a", "file": "img/0.jpg", "what": "valence", "score": "-0.5", "lo": "-1", "hi": "1"},
        {"who": "a", "file": "img/1.jpg", "what": "valence", "score": "6", "lo": "", "hi": ""},
        {"who": "b", "file": "img/1.jpg", "what": "valence", "score": "8", "lo": "", "hi": ""},
    ]
    path = write(tmp_path, rows)
    load = load_human_ratings(
        path, label_set="canonical", label_map=labels, image_ids=IMAGES,
        columns={"rater": "who", "image": "file", "dimension": "what", "value": "score",
                 "scale_min": "lo", "scale_max": "hi"},
        scale=(1, 7),
    )
    got = {(r.rater, r.image_id): (r.value, r.scale_min, r.scale_max) for r in load.ratings}
    assert got == {("a", "img/0.jpg"): (-0.5, -1.0, 1.0), ("a", "img/1.jpg"): (6.0, 1.0, 7.0)}
    # 8 is outside the default scale [1, 7] of rows without their own
    assert len(load.quarantined) == 1
    assert "value 8 of dimension 'valence' is outside the scale [1, 7]" in load.quarantined[0].reason


def test_each_bad_row_is_quarantined_with_reason_row_and_fix(tmp_path, labels):
    rows = GOOD[:2] + [
        {"rater": "r3", "image": "img/9.jpg", "dimension": "valence", "value": "5"},     # 3 unknown image
        {"rater": "r3", "image": "img/0.jpg", "dimension": "emotion", "value": "bored"},  # 4 unknown label
        {"rater": "r3", "image": "img/0.jpg", "dimension": "valence", "value": "high"},    # 5 not numeric
        {"rater": "r3", "image": "img/1.jpg", "dimension": "valence", "value": "0"},       # 6 below scale
        {"rater": "r3", "image": "img/1.jpg", "dimension": "arousal", "value": "9.5"},     # 7 above scale
        {"rater": "", "image": "img/1.jpg", "dimension": "arousal", "value": "5"},         # 8 missing rater
        {"rater": "r4", "image": "img/1.jpg", "dimension": "", "value": ""},               # 9 missing fields
        {"rater": "r1", "image": "img/0.jpg", "dimension": "valence", "value": "3"},       # 10 duplicate of 2
        {"rater": "r3", "image": "img/0.jpg", "dimension": "valence", "value": "4"},       # 11 ok (5 was bad)
    ]
    path = write(tmp_path, rows)
    load = load_human_ratings(path, label_set="london_set", label_map=labels, image_ids=IMAGES)
    assert len(load.ratings) == 3
    reasons = {q.row_number: q.reason for q in load.quarantined}
    assert sorted(reasons) == [3, 4, 5, 6, 7, 8, 9, 10]
    assert all(q.source == str(path) for q in load.quarantined)
    assert all(r.startswith(f"ratings.csv row {n}: ") for n, r in reasons.items())
    assert "image 'img/9.jpg' is not a loaded image of this dataset" in reasons[3]
    assert "label 'bored' is not in label_set 'london_set'" in reasons[4]
    assert "'london_set,bored,<canonical emotion>' to dbt/seeds/emotion_label_map.csv" in reasons[4]
    assert "value 'high' of dimension 'valence' is not a number" in reasons[5]
    assert "value 0 of dimension 'valence' is outside the scale [1, 9]" in reasons[6]
    assert "value 9.5 of dimension 'arousal' is outside the scale [1, 9]" in reasons[7]
    assert "missing value for required field(s) rater" in reasons[8]
    assert "missing value for required field(s) dimension, value" in reasons[9]
    assert "duplicate of row 2" in reasons[10] and "delete this one" in reasons[10]
    record = next(q.record for q in load.quarantined if q.row_number == 3)
    assert record["image"] == "img/9.jpg"


def test_file_problems_raise(tmp_path, labels):
    with pytest.raises(ValueError, match="does not exist; fix the dataset's 'human_ratings.location'"):
        load_human_ratings(tmp_path / "nope.csv", label_set="canonical", label_map=labels, image_ids=IMAGES)
    path = write(tmp_path, [{"rater": "a", "image": "img/0.jpg", "value": "3"}])
    with pytest.raises(ValueError, match="no column 'dimension'.*human_ratings.columns.dimension"):
        load_human_ratings(path, label_set="canonical", label_map=labels, image_ids=IMAGES)


def test_config_declares_human_ratings(tmp_path):
    base = """
datasets:
  faces:
    kind: manifest
    location: faces/manifest.csv
    human_ratings: {body}
models:
  mini:
    kind: fer_xception
    version: v1
"""
    path = tmp_path / "benchmark.yaml"
    path.write_text(base.format(body="{location: ratings/r.csv, columns: {rater: who}, scale: [1, 7]}"))
    cfg = load_config(path)
    hr = cfg.datasets["faces"].human_ratings
    assert cfg.resolve(hr.location) == tmp_path / "ratings" / "r.csv"
    assert hr.columns == {"rater": "who"} and hr.scale == (1.0, 7.0)
    path.write_text(base.format(body="{location: r.csv}"))
    assert load_config(path).datasets["faces"].human_ratings.scale == (1.0, 9.0)
    for body, msg in [
        ("{location: r.csv, columns: {judge: who}}", "human_ratings.columns: Value error, unknown field(s) judge"),
        ("{location: r.csv, scale: [9, 1]}", "the low end must be below the high end"),
        ("{columns: {}}", "datasets.faces.human_ratings.location: required key is missing"),
        ("{location: r.csv, scales: [1, 9]}", "human_ratings.scales: unknown key"),
    ]:
        path.write_text(base.format(body=body))
        with pytest.raises(ConfigError, match=msg.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
            load_config(path)
