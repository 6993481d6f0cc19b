"""Human ratings and imported predictions through the warehouse and dbt, in-process.

Dagster reads one config per process (tests/conftest.py), so this test drives the same pure
pieces the assets call (dataset + ratings loaders, the imported adapter, frames, warehouse
writes) on a temporary warehouse, then runs `dbt build` so the new staging and
intermediate models see real rows.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd
import pytest
from PIL import Image

from dbt_support import run_dbt
from inference import warehouse
from inference.config import load_config
from inference.datasets import load_dataset, load_label_map
from inference.datasets.ratings import load_human_ratings
from inference.frames import (
    dataset_images_frame,
    human_ratings_frame,
    predictions_frame,
    quarantined_rows_frame,
)
from inference.models import build_model
from inference.pipeline import dataset_location, human_ratings_location, model_quarantine_sources

MAPPING = "[-1, 1] -> [1, 9]: v' = (v + 1) / 2 * 8 + 1"


def _benchmark(root: Path) -> Path:
    faces = root / "faces"
    (faces / "img").mkdir(parents=True)
    people = [("a", "happy", "black", "female"), ("b", "sad", "white", "male"),
              ("c", "neutral", "east_asian", "female")]
    for i, (_, _, _, _) in enumerate(people):
        Image.new("RGB", (8, 8), (40 * i, 90, 200)).save(faces / "img" / f"{i}.png")
    pd.DataFrame({
        "image": [f"img/{i}.png" for i in range(3)] + ["img/missing.png"],
        "emotion": [p[1] for p in people] + ["happy"],
        "race": [p[2] for p in people] + ["white"],
        "gender": [p[3] for p in people] + ["male"],
        "identity": [p[0] for p in people] + ["d"],
    }).to_csv(faces / "manifest.csv", index=False)
    pd.DataFrame([
        {"who": "r1", "image": "img/0.png", "dimension": "emotion", "value": "happy"},
        {"who": "r1", "image": "img/0.png", "dimension": "valence", "value": "8"},
        {"who": "r2", "image": "img/0.png", "dimension": "valence", "value": "6"},
        {"who": "r1", "image": "img/1.png", "dimension": "emotion", "value": "surprise"},
        {"who": "r1", "image": "img/1.png", "dimension": "arousal", "value": "3"},
        {"who": "r2", "image": "img/9.png", "dimension": "valence", "value": "5"},   # unknown image
        {"who": "r2", "image": "img/1.png", "dimension": "valence", "value": "11"},  # outside [1, 9]
    ]).to_csv(root / "ratings.csv", index=False)
    pd.DataFrame([
        {"image": "img/0.png", "label": "happy", "valence": 0.5, "arousal": 0, "sample_index": 0},
        {"image": "img/0.png", "label": "happy", "valence": 1, "arousal": 0, "sample_index": 1},
        {"image": "img/1.png", "label": "", "valence": -1, "arousal": "", "sample_index": 0},
        {"image": "img/2.png", "label": "bored", "valence": 0, "arousal": 0, "sample_index": 0},
    ]).to_csv(root / "ext.csv", index=False)
    config = root / "benchmark.yaml"
    config.write_text(f"""
warehouse: {root / 'warehouse.duckdb'}
datasets:
  faces:
    kind: manifest
    location: faces/manifest.csv
    human_ratings:
      location: ratings.csv
      columns: {{rater: who}}
  plain:
    kind: manifest
    location: faces/manifest.csv
models:
  ext:
    kind: imported
    family: vlm
    version: run-1
    options:
      files: {{faces: ext.csv}}
      value_scale: [-1, 1]
""")
    return config


def _ingest(con, bench, name: str) -> None:
    """What the ingestion asset does for one dataset partition."""
    ds = bench.datasets[name]
    labels = load_label_map()
    load = load_dataset(ds, dataset_location(bench, ds), labels)
    quarantined, ratings = list(load.quarantined), []
    path = human_ratings_location(bench, ds)
    if path is not None:
        rl = load_human_ratings(path, label_set=ds.effective_label_set, label_map=labels,
                                image_ids={i.image_id for i in load.images},
                                columns=ds.human_ratings.columns, scale=ds.human_ratings.scale)
        ratings, quarantined = rl.ratings, quarantined + rl.quarantined
    warehouse.replace_slice(con, "raw.dataset_images", {"dataset": name},
                            dataset_images_frame(name, ds.effective_label_set, load))
    warehouse.replace_quarantine(con, name, quarantined_rows_frame(name, quarantined),
                                 keep_sources=model_quarantine_sources(bench, name))
    warehouse.replace_slice(con, "raw.human_ratings", {"dataset": name}, human_ratings_frame(name, ratings))


def _evaluate(con, bench, model_name: str, dataset: str) -> None:
    """What the inference asset does for one (model version x dataset) partition."""
    from inference.frames import records_from_rows
    from inference.pipeline import dataset_root

    cfg, ds = bench.models[model_name], bench.datasets[dataset]
    rows = con.execute("select * from raw.dataset_images where dataset = ? order by image_id", [dataset]).df()
    images = records_from_rows(rows, dataset_root(ds, dataset_location(bench, ds)))
    model = build_model(cfg, bench.cache_dir, resolve=bench.resolve, dataset=dataset)
    answers = model.predict(images)
    warehouse.replace_quarantine(con, dataset, quarantined_rows_frame(dataset, model.quarantined),
                                 sources=model.quarantine_sources)
    frame = predictions_frame(answers, run_id="run-ext", model=cfg.name, model_version=cfg.version,
                              model_kind=cfg.kind, label_set=model.label_set, dataset=dataset)
    warehouse.replace_slice(con, "raw.predictions",
                            {"model": cfg.name, "model_version": cfg.version, "dataset": dataset}, frame)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("imported_pipeline")
    with pytest.MonkeyPatch.context() as mp:
        # the dbt asset of an earlier in-process run exports FER_WAREHOUSE; use our own file
        mp.delenv("FER_WAREHOUSE", raising=False)
        bench = load_config(_benchmark(root))
    assert bench.warehouse == root / "warehouse.duckdb"
    with warehouse.writer(bench.warehouse) as con:
        for name in bench.datasets:
            _ingest(con, bench, name)
        _evaluate(con, bench, "ext", "faces")
        _ingest(con, bench, "faces")  # re-ingestion keeps the model's quarantined rows
        _ingest(con, bench, "faces")
    results = run_dbt(["build"], warehouse=bench.warehouse, target_dir=root / "target")
    con = duckdb.connect(str(bench.warehouse), read_only=True)
    yield {"con": con, "results": results, "bench": bench, "root": root}
    con.close()


def q(built, sql: str) -> pd.DataFrame:
    return built["con"].execute(sql).df()


def test_dbt_build_passes_with_the_new_models(built):
    statuses = {r["unique_id"]: r["status"] for r in built["results"]["results"]}
    assert all(s in ("success", "pass") for s in statuses.values()), statuses
    for name in ("stg_human_ratings", "int_human_ratings_labeled", "int_model_dimensional_answers"):
        assert statuses[f"model.fer_bias_warehouse.{name}"] == "success"


def test_raw_tables_hold_ratings_predictions_and_every_quarantine(built):
    ratings = q(built, "select * from raw.human_ratings order by rater, image_id, dimension")
    assert len(ratings) == 5 and set(ratings["dataset"]) == {"faces"}  # 'plain' has none
    quarantine = q(built, "select dataset, source, row_number, reason from raw.quarantine order by all")
    root = built["root"]
    by_source = quarantine.groupby(["dataset", "source"]).size().to_dict()
    assert by_source == {
        ("faces", str(root / "faces" / "manifest.csv")): 1,   # missing image (ingestion)
        ("faces", str(root / "ratings.csv")): 2,              # unknown image, outside the scale
        ("faces", str(root / "ext.csv")): 1,                  # unknown label 'bored' (model asset)
        ("plain", str(root / "faces" / "manifest.csv")): 1,
    }
    preds = q(built, "select * from raw.predictions where step_name = 'valence' order by image_id, sample_index")
    assert preds["raw_value"].tolist() == [0.5, 1.0, -1.0]
    assert preds["predicted_value"].tolist() == [7.0, 9.0, 1.0]
    assert set(preds["value_mapping"]) == {MAPPING}


def test_ratings_get_canonical_labels_and_image_attributes(built):
    got = q(built, "select * from intermediate.int_human_ratings_labeled order by rater, image_id, dimension")
    emotion = got[got["dimension"] == "emotion"].set_index("image_id")
    assert emotion.loc["img/0.png", "label"] == "happy" and emotion.loc["img/1.png", "label"] == "surprise"
    assert emotion.loc["img/1.png", "true_emotion"] == "sad" and emotion.loc["img/1.png", "race"] == "white"
    valence = got[got["dimension"] == "valence"]
    assert sorted(valence["value"]) == [6.0, 8.0] and valence["label"].isna().all()
    assert set(valence["race"]) == {"black"} and set(valence["gender"]) == {"female"}
    assert set(valence["scale_min"]) == {1.0} and set(valence["scale_max"]) == {9.0}


def test_model_dimensional_answers_average_samples_on_the_target_scale(built):
    every = q(built, "select * from intermediate.int_model_dimensional_answers order by image_id, dimension")
    got = every[every["protocol"] == "imported"]
    # sample 0 of the two-sample file is also its own protocol ("single", Chhua's Table 1)
    single = every[every["protocol"] == "single_of_imported"]
    assert set(every["protocol"]) == {"imported", "single_of_imported"} and set(single["n_samples"]) == {1}
    rows = {(r.image_id, r.dimension): r for r in got.itertuples()}
    assert set(rows) == {("img/0.png", "arousal"), ("img/0.png", "valence"),
                         ("img/1.png", "arousal"), ("img/1.png", "valence")}
    assert rows[("img/0.png", "valence")].value == 8.0  # mean of 7 and 9
    assert rows[("img/0.png", "valence")].n_samples == 2 and rows[("img/0.png", "valence")].n_valid == 2
    assert rows[("img/0.png", "arousal")].value == 5.0
    assert rows[("img/1.png", "valence")].value == 1.0
    assert pd.isna(rows[("img/1.png", "arousal")].value) and rows[("img/1.png", "arousal")].n_valid == 0
    assert set(got["protocol"]) == {"imported"} and set(got["model_kind"]) == {"imported"}
    assert rows[("img/0.png", "valence")].race == "black" and rows[("img/0.png", "valence")].true_emotion == "happy"
    assert set(got["value_mapping"].dropna()) == {MAPPING}
    # the emotion step of the same file feeds the classification marts
    finals = q(built, "select image_id, predicted_emotion, answer_status from intermediate.int_final_answers "
                      "where protocol = 'imported' order by image_id")
    assert finals.fillna("-").values.tolist() == [["img/0.png", "happy", "answered"],
                                                  ["img/1.png", "-", "unparseable"]]


def test_existing_warehouses_get_the_new_columns(tmp_path):
    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    con.execute("create schema raw")
    con.execute(warehouse.PREDICTIONS_DDL.replace(
        "    raw_value       double,            -- numeric answer as the model / file gave it\n", "").replace(
        "    value_mapping   varchar,           -- how raw_value became predicted_value, e.g. '[-1, 1] -> [1, 9]: ...'\n", ""))
    cols = {r[0] for r in con.execute("select column_name from information_schema.columns where table_name = 'predictions'").fetchall()}
    assert "raw_value" not in cols
    warehouse.ensure_raw_schema(con)
    warehouse.ensure_raw_schema(con)  # idempotent
    cols = {r[0] for r in con.execute("select column_name from information_schema.columns where table_name = 'predictions'").fetchall()}
    assert {"raw_value", "value_mapping"} <= cols
    tables = {r[0] for r in con.execute("select table_name from information_schema.tables where table_schema = 'raw'").fetchall()}
    assert "human_ratings" in tables
    con.close()
