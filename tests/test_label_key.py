"""One label-matching rule: Python's `label_key` and dbt's `label_key` macro agree, and a
manifest label spelled `Happy` loads (it was quarantined by Python while SQL mapped it)."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import jinja2
import pandas as pd
import pytest

from inference.datasets import load_label_map, load_manifest
from inference.datasets.labels import default_seeds_dir, label_key

ROOT = Path(__file__).resolve().parents[1]
MACRO = ROOT / "dbt" / "macros" / "label_key.sql"
LONDON = ROOT.parent / "shared" / "datasets" / "london_set"

TRICKY = [
    "happy", " Happy ", "HAPPY\t", "\nSad\r", "\x0bfear\x0c", "surprise\xa0", "\xa0\xa0Anger ",
    "Ärger", "STRASSE", "east_asian/White ", "neutral\u2003",  # em space: kept by both
    "a b", " ", "", "\t\n",
]


def macro_sql(expr: str) -> str:
    """The SQL dbt renders for `{{ label_key(expr) }}` (the macro uses no dbt-only context)."""
    template = jinja2.Environment().from_string(MACRO.read_text() + "{{ label_key('" + expr + "') }}")
    return template.render().strip()


def test_python_and_sql_rules_agree_on_tricky_strings():
    sql = macro_sql("x")
    assert sql.startswith("lower(trim(x,"), sql
    con = duckdb.connect()
    got = [row[0] for row in con.execute(
        f"select {sql} from (select unnest(?) as x, generate_subscripts(?, 1) as i) order by i",
        [TRICKY, TRICKY]).fetchall()]
    assert got == [label_key(s) for s in TRICKY]
    assert got[:7] == ["happy", "happy", "happy", "sad", "fear", "surprise", "anger"]
    assert got[10] == "neutral\u2003"  # only the listed whitespace is trimmed, on both sides


def test_every_dbt_model_matches_labels_through_the_macro():
    models = (ROOT / "dbt" / "models").rglob("*.sql")
    offenders = [p.name for p in models if "lower(trim(" in p.read_text() or "lower(emotion_label_map" in p.read_text()]
    assert offenders == []


def test_seeds_ship_with_the_package_and_dbt_reads_the_same_files():
    seeds = default_seeds_dir()
    assert seeds == ROOT / "inference" / "datasets" / "seeds"
    assert (ROOT / "dbt" / "seeds").resolve() == seeds.resolve()
    assert {"emotion_label_map.csv", "emotions.csv", "race_map.csv", "gender_map.csv"} <= {
        p.name for p in seeds.iterdir()}


def test_label_map_matches_by_label_key(tmp_path):
    labels = load_label_map()
    assert labels.knows("canonical", " Happy ") and labels.canonical("london_set", "SMILING\t") == "happy"
    assert not labels.knows("canonical", None) and labels.canonical("canonical", None) is None
    (tmp_path / "emotion_label_map.csv").write_text(
        "label_set,source_label,emotion\nmine,Joy,happy\nmine,joy ,sad\n", encoding="utf-8")
    with pytest.raises(ValueError, match="data row 2 maps mine/joy to 'sad' but an earlier row maps it to 'happy'"):
        load_label_map(tmp_path)


@pytest.mark.skipif(not LONDON.is_dir(), reason=f"shared London Set not at {LONDON}")
def test_a_manifest_label_spelled_happy_loads(tmp_path):
    (tmp_path / "img").mkdir()
    shutil.copyfile(LONDON / "smiling_front" / "001_08.jpg", tmp_path / "img" / "0.jpg")
    shutil.copyfile(LONDON / "neutral_front" / "001_03.jpg", tmp_path / "img" / "1.jpg")
    path = tmp_path / "manifest.csv"
    pd.DataFrame([{"image": "img/0.jpg", "emotion": "Happy"},
                  {"image": "img/1.jpg", "emotion": " NEUTRAL "}]).to_csv(path, index=False)
    load = load_manifest(path, "canonical", load_label_map(), {})
    assert load.quarantined == []
    assert [i.source_label for i in load.images] == ["Happy", "NEUTRAL"]  # as written; dbt maps it
    assert [load_label_map().canonical("canonical", i.source_label) for i in load.images] == ["happy", "neutral"]
