"""The per-image human agreement file (`datasets.<name>.human_agreement`) and the report's
human-baseline section, alone (the pipeline: tests/test_human_baseline_pipeline.py)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from dagster_project.analysis.report import Settings, render_report
from dagster_project.analysis.report_human import human_baseline_table
from inference.config import ConfigError, load_config
from inference.datasets.base import ImageRecord
from inference.datasets.human_agreement import join_agreement, read_agreement


def _image(image_id: str) -> ImageRecord:
    return ImageRecord(image_id=image_id, path=Path("/x") / image_id, image_hash="0" * 64, source_label="HA",
                       identity="BF01", race="B", gender="F", age=None, width=1, height=1)


def test_read_agreement_maps_columns_and_quarantines_bad_rows(tmp_path):
    path = tmp_path / "validation.csv"
    pd.DataFrame({"file": ["a/x.jpg", "b/y.jpg", "", "c/z.jpg"], "pct": [0.9, "n/a", 0.5, 0.7],
                  "k": [20, 20, 20, 0]}).to_csv(path, index=False)
    found, quarantined = read_agreement(path, {"image": "file", "agreement": "pct", "n_raters": "k"})
    assert found == {"a/x.jpg": {"share_intended": 0.9, "n_raters": 20.0}}
    assert [q.row_number for q in quarantined] == [2, 3, 4]
    assert "not a share in [0, 1]" in quarantined[0].reason
    assert "no image in column 'file'" in quarantined[1].reason
    assert "n_raters 0 is below 1" in quarantined[2].reason


def test_a_missing_column_names_the_field_and_the_fix(tmp_path):
    path = tmp_path / "validation.csv"
    pd.DataFrame({"image": ["a.jpg"], "share": [0.5]}).to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"no column 'agreement' \(field 'agreement'\).*human_agreement.columns"):
        read_agreement(path)


def test_join_keeps_other_extra_and_quarantines_unknown_images(tmp_path):
    path = tmp_path / "validation.csv"
    pd.DataFrame({"image": ["a.jpg", "gone.jpg"], "agreement": [0.8, 0.4]}).to_csv(path, index=False)
    a = replace(_image("a.jpg"), extra={"mouth": "open"})
    joined, quarantined = join_agreement([a, _image("b.jpg")], path)
    assert joined[0].extra == {"mouth": "open", "human_agreement": {"share_intended": 0.8, "n_raters": None}}
    assert joined[1].extra == {}
    assert [q.image_path for q in quarantined] == ["gone.jpg"]


def test_config_rejects_an_unknown_agreement_field(tmp_path):
    config = tmp_path / "benchmark.yaml"
    config.write_text("datasets:\n  r:\n    kind: radiate\n    location: .\n"
                      "    human_agreement: {location: v.csv, columns: {share: pct}}\n"
                      "models:\n  m: {kind: imported, version: v1, options: {files: {r: a.csv}}}\n")
    with pytest.raises(ConfigError, match="unknown field"):
        load_config(config)


AGREEMENT = pd.DataFrame([
    {"dataset": "r", "grouping": "all", "group_value": "all", "true_emotion": "all", "measure": "share_choosing_intended",
     "human_sample": "validation raters", "perceived_emotion": "intended", "reader": "human", "model": "human",
     "model_version": "validation raters", "protocol": "human_baseline", "n_images": 4, "n_images_with_baseline": 4,
     "value": 0.7625, "value_scale": "share 0..1", "meaning": "human: one random rater's expected accuracy"},
    {"dataset": "r", "grouping": "all", "group_value": "all", "true_emotion": "all", "measure": "share_choosing_intended",
     "human_sample": "validation raters", "perceived_emotion": "intended", "reader": "model", "model": "m",
     "model_version": "1", "protocol": "single", "n_images": 3, "n_images_with_baseline": 4,
     "value": 0.25, "value_scale": "share 0..1", "meaning": "human: one random rater's expected accuracy"},
])


def test_human_baseline_table_sets_the_human_value_beside_each_model():
    table = human_baseline_table(AGREEMENT)
    assert len(table) == 1
    row = table.iloc[0]
    assert (row["human"], row["human images"], row["model"], row["model value"], row["model answered"]) == \
        ("0.762", 4, "m", "0.250", 3)


def test_the_report_has_the_section_only_with_a_baseline():
    settings = Settings()
    with_human = render_report({"marts.human_category_agreement": AGREEMENT}, [], settings)
    assert "Human baseline beside the models" in with_human and "expected accuracy" in with_human
    assert "Human baseline" not in render_report({}, [], settings)
