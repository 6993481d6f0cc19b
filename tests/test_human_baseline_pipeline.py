"""The human baseline for categories through Dagster: a RADIATE-shaped folder with a per-image
agreement file (`human_agreement: {location, columns}`) and a Chicago-Face-shaped folder with
its norming workbook are ingested, an imported model answers on both, each slice is refreshed,
and what spans slices builds marts.human_category_agreement and the HTML report. One run per
step in a separate process (the definitions read their config at import)."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from tests.support.dataset_layouts import build_chicago_face, build_radiate
from tests.support.slice_pipeline import materialize_slices

# RADIATE validation shares (the file's own column names, mapped by the config)
AGREEMENT = [("Black/BF01_HA_O.jpg", 0.95, 40), ("White/WM02_NE_C.jpg", 0.70, 40),
             ("Hispanic/HF03_SA_O.jpg", 0.60, 38), ("Asian/AM04_AN_C.jpg", 0.80, 41),
             ("Black/BF99_HA_O.jpg", 0.90, 40),  # no such image: quarantined
             ("White/WM02_NE_C.jpg ", 1.4, 40)]  # not a share: quarantined


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("human_baseline")
    radiate, cfd = build_radiate(root), build_chicago_face(root)
    pd.DataFrame(AGREEMENT, columns=["file", "prop_intended", "raters"]).to_csv(root / "radiate_validation.csv",
                                                                               index=False)
    answers = {"radiate": ["Black/BF01_HA_O.jpg", "White/WM02_NE_C.jpg", "Hispanic/HF03_SA_O.jpg",
                           "Asian/AM04_AN_C.jpg"],
               "cfd": ["Images/CFD/AF-200/CFD-AF-200-228-N.jpg", "Images/CFD-MR/MF-300/CFD-MF-300-001-N.jpg",
                       "Images/CFD/BM-201/CFD-BM-201-001-HC.jpg", "Images/CFD/BM-201/CFD-BM-201-002-HO.jpg",
                       "Images/CFD-INDIA/IM-600/CFD-IM-600-001-A.jpg"]}
    for dataset, images in answers.items():  # a model that reads every face as happy
        pd.DataFrame({"image": images, "label": "happy"}).to_csv(root / f"{dataset}_answers.csv", index=False)
    config = root / "benchmark.yaml"
    config.write_text(json.dumps({  # JSON is YAML
        "warehouse": str(root / "warehouse.duckdb"), "reports_dir": str(root / "reports"),
        "cache_dir": str(root / "cache"),
        "datasets": {
            "radiate": {"kind": "radiate", "location": str(radiate), "human_agreement": {
                "location": "radiate_validation.csv",
                "columns": {"image": "file", "agreement": "prop_intended", "n_raters": "raters"}}},
            "cfd": {"kind": "chicago_face", "location": str(cfd)},
        },
        "models": {"always_happy": {"kind": "imported", "family": "fer", "version": "v1", "options": {
            "files": {"radiate": "radiate_answers.csv", "cfd": "cfd_answers.csv"}}}},
    }))
    materialize_slices(config, root, report=True)
    con = duckdb.connect(str(root / "warehouse.duckdb"), read_only=True)
    yield {"con": con, "report": (root / "reports" / "report.html").read_text()}
    con.close()


def _cell(con, dataset: str, grouping: str, group_value: str, true_emotion: str, **where) -> pd.DataFrame:
    extra = "".join(f" and {k} = '{v}'" for k, v in where.items())
    return con.execute(
        "select reader, model, measure, human_sample, perceived_emotion, n_images, n_images_with_baseline, value "
        "from marts.human_category_agreement where dataset = ? and grouping = ? and group_value = ? "
        f"and true_emotion = ? {extra} order by reader, model", [dataset, grouping, group_value, true_emotion]).df()


def test_radiate_agreement_is_loaded_and_bad_rows_quarantined(built):
    con = built["con"]
    shares = con.execute(
        "select image_id, cast(json_extract(extra::json, '$.human_agreement.share_intended') as double) as share "
        "from raw.dataset_images where dataset = 'radiate' order by image_id").df()
    assert dict(zip(shares["image_id"], shares["share"])) == {
        "Asian/AM04_AN_C.jpg": 0.80, "Black/BF01_HA_O.jpg": 0.95, "Hispanic/HF03_SA_O.jpg": 0.60,
        "White/WM02_NE_C.jpg": 0.70}
    reasons = con.execute("select reason from raw.quarantine where dataset = 'radiate' and source like "
                          "'%radiate_validation.csv'").df()["reason"].tolist()
    assert len(reasons) == 2
    assert any("not a loaded image" in r and "BF99_HA_O" in r for r in reasons)
    assert any("not a share in [0, 1]" in r for r in reasons)


def test_human_row_beside_the_model_over_the_same_images(built):
    cells = _cell(built["con"], "radiate", "all", "all", "all").set_index("reader")
    assert set(cells["measure"]) == {"share_choosing_intended"}
    assert cells.loc["human", "value"] == pytest.approx((0.95 + 0.70 + 0.60 + 0.80) / 4)
    assert cells.loc["human", "n_images"] == 4
    assert cells.loc["model", "model"] == "always_happy"
    assert cells.loc["model", "value"] == pytest.approx(0.25)  # only the happy face is read right
    black = _cell(built["con"], "radiate", "race", "black", "all").set_index("reader")
    assert black.loc["human", "value"] == pytest.approx(0.95) and black.loc["model", "value"] == 1.0


def test_cfd_norming_ratings_stand_beside_the_share_read_as_each_emotion(built):
    cells = _cell(built["con"], "cfd", "all", "all", "neutral", human_sample="CFD U.S. Norming Data")
    human = cells[cells["reader"] == "human"].set_index("perceived_emotion")
    model = cells[cells["reader"] == "model"].set_index("perceived_emotion")
    # only AF-200's neutral photo is normed in the fixture: Afraid 1.4, Happy 2.1 (1..7)
    assert human["value"].to_dict() == {"fear": 1.4, "happy": 2.1}
    assert set(human["n_images"]) == {1}
    assert model["value"].to_dict() == {"fear": 0.0, "happy": 1.0}
    assert set(cells["measure"]) == {"mean_perceived_rating"}
    # the smiling photos of a normed target carry no norming rows (CFD normed the neutral ones)
    assert _cell(built["con"], "cfd", "all", "all", "happy").empty


def test_the_report_shows_the_human_baseline_and_what_it_means(built):
    report = built["report"]
    assert "Human baseline beside the models" in report
    assert "share_choosing_intended" in report and "mean_perceived_rating" in report
    assert "one random rater" in report  # the meaning of the share
    assert "not an accuracy" in report  # the meaning of a norming rating
    assert "always_happy" in report and "0.950" in report
