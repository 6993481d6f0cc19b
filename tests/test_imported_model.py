"""Imported predictions adapter (models of kind 'imported') and the scale helper."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import pytest

from inference.config import ConfigError, ModelConfig, load_config
from inference.datasets.base import ImageRecord
from inference.frames import predictions_frame
from inference.models import build_model
from inference.models.imported import ImportedOptionsError
from inference.scales import as_scale, mapping_formula, rescale

MAPPING = "[-1, 1] -> [1, 9]: v' = (v + 1) / 2 * 8 + 1"


def images(root: Path) -> list[ImageRecord]:
    return [
        ImageRecord(f"img/{i}.jpg", root / "img" / f"{i}.jpg", f"hash{i}", "happy", f"p{i}",
                    "white", "female", None, 10, 10)
        for i in range(5)
    ]


def model_cfg(options: dict) -> ModelConfig:
    return ModelConfig(name="ext", kind="imported", family="vlm", version="run-1", options=options)


def build(tmp_path: Path, rows: list[dict], name: str = "preds.csv", **options):
    path = tmp_path / name
    frame = pd.DataFrame(rows)
    frame.to_parquet(path) if name.endswith(".parquet") else frame.to_csv(path, index=False)
    opts = {"files": {"ds": name}, **options}
    resolve = lambda loc: (tmp_path / loc).resolve()  # noqa: E731 - config-relative paths
    return build_model(model_cfg(opts), tmp_path / "cache", resolve=resolve, dataset="ds"), path


@pytest.mark.parametrize(("value", "expected"), [(-1, 1.0), (0, 5.0), (1, 9.0), (0.5, 7.0)])
def test_rescale_minus_one_one_to_one_nine(value, expected):
    assert rescale(value, source=(-1, 1), target=(1, 9)) == expected


def test_mapping_formula_and_scale_validation():
    assert mapping_formula((-1, 1), (1, 9)) == MAPPING
    assert mapping_formula((1, 9), (1, 9)) == "[1, 9] -> [1, 9]: v' = v"
    assert mapping_formula((0, 1), (1, 9)) == "[0, 1] -> [1, 9]: v' = v * 8 + 1"
    assert rescale(4, (1, 7), (-1, 1)) == 0.0
    assert as_scale(None, "x", (1.0, 9.0)) == (1.0, 9.0)
    with pytest.raises(ValueError, match="low end must be below"):
        as_scale([3, 3], "options.value_scale")
    with pytest.raises(ValueError, match=r"\[low, high\]"):
        as_scale("1-9", "options.value_scale")


@pytest.mark.parametrize("name", ["preds.csv", "preds.parquet"])
def test_labels_and_dimensional_steps(tmp_path, name):
    rows = [
        {"image": "img/0.jpg", "label": "happy", "valence": -1, "arousal": 0.5},
        {"image": "img/1.jpg", "label": "sad", "valence": 0, "arousal": 1},
        {"image": "img/2.jpg", "label": None, "valence": 0.5, "arousal": None},
    ]
    model, path = build(tmp_path, rows, name, value_scale=[-1, 1])
    assert model.label_set == "canonical" and model.kind == "imported"
    assert model.weights_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    answers = model.predict(images(tmp_path))
    assert model.quarantined == []
    got = {(a.image_id, a.step, a.step_name): a for a in answers}
    assert len(answers) == 9
    e0 = got[("img/0.jpg", 1, "emotion")]
    assert (e0.parse_status, e0.predicted_label, e0.image_hash, e0.protocol) == ("ok", "happy", "hash0", "imported")
    assert e0.sample_index == 0 and e0.attempt == 1
    e2 = got[("img/2.jpg", 1, "emotion")]
    assert (e2.parse_status, e2.predicted_label) == ("unparseable", None)  # empty label: no answer
    values = {(i, s): (got[(i, n, s)].raw_value, got[(i, n, s)].predicted_value)
              for (i, n, s) in got if s != "emotion"}
    assert values == {
        ("img/0.jpg", "valence"): (-1.0, 1.0), ("img/0.jpg", "arousal"): (0.5, 7.0),
        ("img/1.jpg", "valence"): (0.0, 5.0), ("img/1.jpg", "arousal"): (1.0, 9.0),
        ("img/2.jpg", "valence"): (0.5, 7.0), ("img/2.jpg", "arousal"): (None, None),
    }
    assert got[("img/2.jpg", 3, "arousal")].parse_status == "unparseable"
    assert got[("img/0.jpg", 2, "valence")].value_mapping == MAPPING
    frame = predictions_frame(answers, run_id="r", model="ext", model_version="run-1",
                              model_kind="imported", label_set=model.label_set, dataset="ds")
    row = frame[(frame.image_id == "img/1.jpg") & (frame.step_name == "valence")].iloc[0]
    assert (row.raw_value, row.predicted_value, row.value_mapping) == (0.0, 5.0, MAPPING)


def test_optional_columns_renames_protocol_and_label_set(tmp_path):
    rows = [
        {"path": "img/0.jpg", "pred": "smiling", "sample_index": 0, "raw_text": "Smiling!"},
        {"path": "img/0.jpg", "pred": "neutral", "sample_index": 1, "raw_text": "calm"},
        {"path": "img/1.jpg", "pred": "", "sample_index": 0, "parse_status": "refused"},
        {"path": "img/2.jpg", "pred": "grumpy", "sample_index": 0, "parse_status": "off_label"},
    ]
    model, _ = build(tmp_path, rows, label_set="london_set", protocol="maj_at_k",
                     columns={"image": "path", "label": "pred"})
    answers = model.predict(images(tmp_path))
    assert model.quarantined == [] and model.label_set == "london_set"
    assert {a.step_name for a in answers} == {"emotion"}  # no valence / arousal columns
    got = {(a.image_id, a.sample_index): a for a in answers}
    assert got[("img/0.jpg", 1)].predicted_label == "neutral" and got[("img/0.jpg", 0)].raw_text == "Smiling!"
    assert (got[("img/1.jpg", 0)].parse_status, got[("img/1.jpg", 0)].predicted_label) == ("refused", None)
    assert (got[("img/2.jpg", 0)].parse_status, got[("img/2.jpg", 0)].predicted_label) == ("off_label", "grumpy")
    assert {a.protocol for a in answers} == {"maj_at_k"}


def test_unknown_images_labels_and_bad_values_are_quarantined(tmp_path):
    rows = [
        {"image": "img/0.jpg", "label": "happy", "valence": 5},
        {"image": "img/99.jpg", "label": "happy", "valence": 5},   # 2 unknown image
        {"image": "img/1.jpg", "label": "smiling", "valence": 5},  # 3 label not in canonical
        {"image": "img/2.jpg", "label": "sad", "valence": 12},     # 4 outside value_scale
        {"image": "img/3.jpg", "label": "sad", "valence": "lots"},  # 5 not a number
        {"image": "img/0.jpg", "label": "sad", "valence": 3},      # 6 duplicate of 1
        {"image": "img/4.jpg", "label": "sad", "valence": 9},
    ]
    model, path = build(tmp_path, rows)
    answers = model.predict(images(tmp_path))
    assert sorted({a.image_id for a in answers}) == ["img/0.jpg", "img/4.jpg"]
    reasons = {q.row_number: q.reason for q in model.quarantined}
    assert sorted(reasons) == [2, 3, 4, 5, 6]
    assert {q.source for q in model.quarantined} == {str(path)} == set(model.quarantine_sources)
    assert "image 'img/99.jpg' is not a loaded image of this dataset" in reasons[2]
    assert "label 'smiling' is not in label_set 'canonical'" in reasons[3]
    assert "outside options.value_scale [1, 9]" in reasons[4]
    assert "valence 'lots' is not a number" in reasons[5]
    assert "duplicate of row 1" in reasons[6]
    # value_scale == target_scale: the value is kept, the mapping says so
    v4 = next(a for a in answers if a.image_id == "img/4.jpg" and a.step_name == "valence")
    assert (v4.raw_value, v4.predicted_value, v4.value_mapping) == (9.0, 9.0, "[1, 9] -> [1, 9]: v' = v")


def test_missing_file_for_dataset_names_model_dataset_and_option(tmp_path):
    _, _ = build(tmp_path, [{"image": "img/0.jpg", "label": "happy"}])
    cfg = model_cfg({"files": {"ds": "preds.csv"}})
    with pytest.raises(ImportedOptionsError) as err:
        build_model(cfg, tmp_path, resolve=lambda loc: tmp_path / loc, dataset="other")
    assert "model 'ext' (kind imported) has no predictions file for dataset 'other'" in str(err.value)
    assert "models.ext.options.files" in str(err.value)
    with pytest.raises(ImportedOptionsError, match=r"files.ds: .*gone.csv does not exist"):
        build_model(model_cfg({"files": {"ds": "gone.csv"}}), tmp_path,
                    resolve=lambda loc: tmp_path / loc, dataset="ds")
    with pytest.raises(ImportedOptionsError, match="unknown key"):
        build_model(model_cfg({"files": {"ds": "preds.csv"}, "valuescale": [1, 9]}), tmp_path,
                    resolve=lambda loc: tmp_path / loc, dataset="ds")
    assert not cfg.covers("other") and cfg.covers("ds")


def test_config_accepts_the_imported_kind(tmp_path):
    path = tmp_path / "benchmark.yaml"
    path.write_text(
        "datasets: {faces: {kind: manifest, location: m.csv}}\n"
        "models: {ext: {kind: imported, family: vlm, version: v1, options: {files: {faces: p.csv}}}}\n"
    )
    assert load_config(path).models["ext"].kind == "imported"
    path.write_text(
        "datasets: {faces: {kind: manifest, location: m.csv}}\n"
        "models: {ext: {kind: importd, version: v1}}\n"
    )
    with pytest.raises(ConfigError, match="use one of: fer_xception, imported"):
        load_config(path)
