"""A new model version costs only its own slices: the dbt slice models rebuild just the slices
evaluated since the last build, and the statistics recompute just the changed slices.

The dbt test tampers with a stored mart row of an old version: an incremental build that
adds a new version must leave it as it is (it was not rebuilt), and a full refresh must
restore it (it is derived from the raw rows).
"""

from __future__ import annotations

import json
from datetime import timedelta

import duckdb
import pandas as pd
import pytest

from dagster_project.analysis.slices import SLICE_KEYS, merge_results, plan_slices
from dbt_support import run_dbt
from test_dbt_project import NOW, write_raw

OLD_SLICE = "model = 'clf' and model_version = '1'"
NEW_SLICE = "model = 'clf' and model_version = '2'"
TAMPERED = -999


def _add_version_2(path) -> None:
    """clf version 2: the same answers as version 1, evaluated a day later."""
    con = duckdb.connect(str(path))
    try:
        con.execute("insert into raw.predictions select * replace ('2' as model_version, 'run-clf-2' as run_id) "
                    "from raw.predictions where model = 'clf'")
        con.execute("insert into raw.model_runs select * replace ('2' as model_version, 'run-clf-2' as run_id, "
                    "finished_at + interval 1 day as finished_at) from raw.model_runs where model = 'clf'")
    finally:
        con.close()


def _query(path, sql: str) -> pd.DataFrame:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(sql).df()
    finally:
        con.close()


def test_dbt_rebuilds_only_new_slices_and_full_refresh_rebuilds_all(tmp_path):
    path = tmp_path / "warehouse.duckdb"
    write_raw(path)
    run_dbt(["build"], warehouse=path, target_dir=tmp_path / "target")
    before = _query(path, f"select * from marts.group_accuracy where {OLD_SLICE} order by all")
    assert len(before) and before["slice_updated_at"].eq(pd.Timestamp(NOW)).all()

    con = duckdb.connect(str(path))
    con.execute(f"update marts.group_accuracy set correct = {TAMPERED} where {OLD_SLICE} and grouping = 'all'")
    con.execute(f"update marts.confusion_counts set n = {TAMPERED} where {OLD_SLICE}")
    con.close()
    _add_version_2(path)
    run_dbt(["build", "--select", "marts", "+marts"], warehouse=path, target_dir=tmp_path / "target")

    # Version 1 was not rebuilt (the tampered rows are still there); version 2 was built.
    tampered = _query(path, f"select correct from marts.group_accuracy where {OLD_SLICE} and grouping = 'all'")
    assert tampered["correct"].eq(TAMPERED).all()
    assert _query(path, f"select n from marts.confusion_counts where {OLD_SLICE}")["n"].eq(TAMPERED).all()
    new = _query(path, f"select * from marts.group_accuracy where {NEW_SLICE} order by all")
    assert new["slice_updated_at"].eq(pd.Timestamp(NOW + timedelta(days=1))).all()
    untouched = before[before["grouping"] != "all"].drop(columns=["model_version", "slice_updated_at"])
    pd.testing.assert_frame_equal(
        untouched.reset_index(drop=True),
        new[new["grouping"] != "all"].drop(columns=["model_version", "slice_updated_at"]).reset_index(drop=True),
    )
    assert len(_query(path, "select * from intermediate.int_slices")) == 3

    # A full refresh rebuilds every slice from the raw rows.
    run_dbt(["build", "--full-refresh"], warehouse=path, target_dir=tmp_path / "target")
    restored = _query(path, f"select * from marts.group_accuracy where {OLD_SLICE} order by all")
    pd.testing.assert_frame_equal(restored, before)


def _slices(*rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=[*SLICE_KEYS, "fingerprint"])


def test_plan_recomputes_new_changed_and_removed_slices_only():
    held = _slices(("m", "1", "d", "a"), ("m", "2", "d", "b"), ("m", "3", "d", "c"), ("", "", "d", "x"))
    current = _slices(("m", "1", "d", "a"), ("m", "2", "d", "B"), ("m", "4", "d", "e"), ("", "", "d", "x"))
    plan = plan_slices(current, held)
    assert sorted(plan.changed["model_version"]) == ["2", "4"]
    assert plan.removed["model_version"].tolist() == ["3"]
    assert plan.datasets == ["d"] and not plan.up_to_date
    assert plan_slices(current, current).up_to_date


def test_merge_replaces_stale_rows_and_the_datasets_human_rows():
    plan = plan_slices(_slices(("m", "1", "d", "a"), ("m", "2", "d", "new"), ("m", "1", "e", "a")),
                       _slices(("m", "1", "d", "a"), ("m", "1", "e", "a")))
    old = pd.DataFrame({
        "model": ["m", "human", "m", "human"], "model_version": ["1", "", "1", ""],
        "dataset": ["d", "d", "e", "e"], "estimate": [1.0, 2.0, 3.0, 4.0], "detail": ["", "", "", ""]})
    new = pd.DataFrame({"model": ["m", "human"], "model_version": ["2", ""], "dataset": ["d", "d"],
                        "estimate": [5.0, 2.5], "detail": ["", ""]})
    merged = merge_results(old, new, plan).sort_values(["dataset", "model", "model_version"])
    # d's human-only row is replaced by the recomputed one; m@1 rows and dataset e are kept.
    assert merged["estimate"].tolist() == [2.5, 1.0, 5.0, 4.0, 3.0]


def test_pairwise_rows_go_when_either_side_changes():
    from dagster_project.analysis.slices import mcnemar_second_slice

    plan = plan_slices(_slices(("m", "1", "d", "a"), ("m", "2", "d", "changed"), ("m", "3", "d", "c")),
                       _slices(("m", "1", "d", "a"), ("m", "2", "d", "b"), ("m", "3", "d", "c")))
    old = pd.DataFrame({
        "model": ["m", "m", "m"], "model_version": ["1", "1", "2"], "dataset": "d", "estimate": [1.0, 2.0, 3.0],
        "detail": [json.dumps({"model_b": "m", "model_version_b": b}) for b in ("2", "3", "3")]})
    merged = merge_results(old, old.iloc[:0], plan, mcnemar_second_slice)
    assert merged["estimate"].tolist() == [2.0]  # only 1 vs 3 involves no changed version


@pytest.mark.parametrize("changed", [True, False])
def test_plan_follows_the_fingerprint(changed):
    held = _slices(("m", "1", "d", "a"))
    current = _slices(("m", "1", "d", "a2" if changed else "a"))
    assert plan_slices(current, held).up_to_date is (not changed)
