"""A new dataset kind's images reach the warehouse: what the ingestion asset does for one
partition (adapter load -> frames -> `warehouse.write_dataset`, one transaction), then dbt builds
the seeds, the staging views and `int_images_labeled` on that file, so the kind's seed rows map
its codes to canonical emotions, races and genders in SQL, and its exclusions are counted.

Dagster reads one config per process (tests/conftest.py), so, like test_imported_pipeline.py,
this drives the asset's pieces on a temporary warehouse. (The same check through the
`ingest_dataset` job in a subprocess took 40 s CPU against this one's ~18 s; the job's wiring of
raw.dataset_exclusions runs in the session demo's ingestion.)"""

from __future__ import annotations

import duckdb
import pytest

from dbt_support import run_dbt
from inference import warehouse
from inference.config import DatasetConfig
from inference.datasets import dataset_adapter, load_label_map
from inference.frames import dataset_images_frame, exclusions_frame, quarantined_rows_frame
from tests.support.dataset_layouts import LAYOUTS

KINDS = ("chicago_face", "radiate", "caer")
SELECT = ["emotion_label_map", "emotions", "race_map", "gender_map",
          "source:raw.dataset_exclusions", "stg_dataset_images", "stg_dataset_exclusions", "int_images_labeled"]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("kinds_warehouse")
    path = root / "warehouse.duckdb"
    with warehouse.writer(path) as con:
        for layout in (x for x in LAYOUTS if x.kind in KINDS):
            cfg = DatasetConfig(name=layout.kind, kind=layout.kind, location=str(layout.build(root / layout.kind)),
                                options=layout.options)
            adapter = dataset_adapter(cfg)
            load = adapter.load(adapter.locate(), load_label_map())
            warehouse.write_dataset(
                con, cfg.name, images=dataset_images_frame(cfg.name, cfg.effective_label_set, load),
                quarantined=quarantined_rows_frame(cfg.name, load.quarantined), ratings=_no_ratings(con),
                keep_sources=[], exclusions=exclusions_frame(cfg.name, load))
    run_dbt(["build", "--indirect-selection", "cautious", "--select", *SELECT], warehouse=path, target_dir=root / "target")
    con = duckdb.connect(str(path), read_only=True)
    yield con
    con.close()


def _no_ratings(con):
    return con.execute("select * from raw.human_ratings limit 0").df()


def test_codes_become_canonical_groups_in_sql(built):
    rows = built.execute("""
        select true_emotion, race, gender, count(*) as n from intermediate.int_images_labeled
        where dataset = 'chicago_face' group by all order by all""").fetchall()
    assert rows == [("anger", "south_asian", "male", 1), ("happy", "black", "male", 2),
                    ("neutral", "asian", "female", 1), ("neutral", "multiracial", "female", 1)]
    unmapped = built.execute("select count(*) from intermediate.int_images_labeled where true_emotion is null").fetchone()
    assert unmapped == (0,)


def test_exclusions_and_media_types_reach_staging(built):
    excluded = built.execute("""
        select dataset, excluded_field, excluded_value, count(*) from staging.stg_dataset_exclusions
        group by all order by all""").fetchall()
    assert excluded == [("caer", "emotion", "Disgust", 1), ("chicago_face", "emotion", "F", 1),
                        ("radiate", "emotion", "CA", 1), ("radiate", "race", "O", 1)]
    media = built.execute("""select dataset, media_type, count(*) from staging.stg_dataset_images
                             group by all order by all""").fetchall()
    assert media == [("caer", "video", 3), ("chicago_face", "image", 5), ("radiate", "image", 4)]


def test_an_older_warehouse_gets_media_type_and_its_rows_stay_images(tmp_path):
    from inference.frames import records_from_rows

    con = duckdb.connect(str(tmp_path / "old.duckdb"))
    con.execute("create schema raw")
    line = next(x for x in warehouse.DATASET_IMAGES_DDL.splitlines(keepends=True) if "media_type" in x)
    con.execute(warehouse.DATASET_IMAGES_DDL.replace(line, ""))
    con.execute("insert into raw.dataset_images (dataset, image_id, image_hash, label_set, source_label, width, "
                "height, loaded_at) values ('old', 'a.jpg', 'h', 'canonical', 'happy', 4, 4, now())")
    warehouse.ensure_raw_schema(con)
    tables = {r[0] for r in con.execute(
        "select table_name from information_schema.tables where table_schema = 'raw'").fetchall()}
    assert "dataset_exclusions" in tables
    rows = con.execute("select * from raw.dataset_images").df()
    assert rows["media_type"].isna().all()
    assert [r.media_type for r in records_from_rows(rows, tmp_path)] == ["image"]
    con.close()
