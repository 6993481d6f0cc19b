"""A new model version costs only its own slice: the dbt slice models, built for one partition
(FER_DBT_SLICE in dbt's environment), replace exactly that slice's rows and leave every other
slice as it is, and a slice build reuses the saved parse (no full re-parse per slice).

The test tampers with stored mart rows of an old version: a build for the new version must
leave them as they are (they were not rebuilt), and a build of the old slice, or of every slice
(no var), restores them from the raw rows.
"""

from __future__ import annotations

import duckdb
import pandas as pd

from dbt_support import DbtError, run_dbt
from test_dbt_project import write_raw

OLD_SLICE = "model = 'clf' and model_version = '1'"
NEW_SLICE = "model = 'clf' and model_version = '2'"
TAMPERED = -999


def _slice(version: str) -> dict[str, str]:
    return {"model": "clf", "model_version": version, "dataset": "synth"}


def _full_parses(target) -> int:
    """How many dbt invocations in `target` could not reuse the saved parse (dbt says why)."""
    return (target / "logs" / "dbt.log").read_text().count("Unable to do partial parsing")


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


def _execute(path, sql: str) -> None:
    con = duckdb.connect(str(path))
    try:
        con.execute(sql)
    finally:
        con.close()


def test_a_slice_build_replaces_only_its_slice(tmp_path):
    path = tmp_path / "warehouse.duckdb"
    write_raw(path)
    assert _query(path, "select distinct dataset from raw.predictions")["dataset"].tolist() == ["synth"]
    run_dbt(["build"], warehouse=path, target_dir=tmp_path / "target")
    before = _query(path, f"select * from marts.group_accuracy where {OLD_SLICE} order by all")
    others = _query(path, "select * from marts.group_accuracy where model <> 'clf' order by all")
    assert len(before) and len(others)

    _execute(path, f"update marts.group_accuracy set correct = {TAMPERED} where {OLD_SLICE} and grouping = 'all'")
    _execute(path, f"update marts.confusion_counts set n = {TAMPERED} where {OLD_SLICE}")
    _execute(path, f"update intermediate.int_protocol_settings set classification = 'tampered' where {OLD_SLICE}")
    _add_version_2(path)
    run_dbt(["build", "--select", "tag:slice"], warehouse=path, target_dir=tmp_path / "target", slice_=_slice("2"))

    # Version 1 was not rebuilt (the tampered rows are still there); version 2 was built from
    # the same answers, so its rows equal version 1's; other models' rows are as they were.
    tampered = _query(path, f"select correct from marts.group_accuracy where {OLD_SLICE} and grouping = 'all'")
    assert tampered["correct"].eq(TAMPERED).all()
    assert _query(path, f"select n from marts.confusion_counts where {OLD_SLICE}")["n"].eq(TAMPERED).all()
    settings = _query(path, "select * from intermediate.int_protocol_settings where model = 'clf' order by all")
    old_settings, new_settings = (settings[settings["model_version"] == v].drop(columns="model_version")
                                  .reset_index(drop=True) for v in ("1", "2"))
    assert len(old_settings) and old_settings["classification"].eq("tampered").all()
    pd.testing.assert_frame_equal(new_settings.drop(columns="classification"), old_settings.drop(columns="classification"))
    assert new_settings["classification"].ne("tampered").all()
    new = _query(path, f"select * from marts.group_accuracy where {NEW_SLICE} order by all")
    pd.testing.assert_frame_equal(
        before[before["grouping"] != "all"].drop(columns=["model_version"]).reset_index(drop=True),
        new[new["grouping"] != "all"].drop(columns=["model_version"]).reset_index(drop=True),
    )
    pd.testing.assert_frame_equal(others, _query(path, "select * from marts.group_accuracy where model <> 'clf' order by all"))

    # Building version 1's slice restores it from the raw rows.
    run_dbt(["build", "--select", "tag:slice"], warehouse=path, target_dir=tmp_path / "target", slice_=_slice("1"))
    pd.testing.assert_frame_equal(_query(path, f"select * from marts.group_accuracy where {OLD_SLICE} order by all"),
                                  before)
    # Only the first build parsed the whole project: the slice builds reused its parse.
    assert _full_parses(tmp_path / "target") == 1


def test_a_slice_without_answers_leaves_no_rows_and_a_plain_build_rebuilds_all(tmp_path):
    path = tmp_path / "warehouse.duckdb"
    write_raw(path)
    _add_version_2(path)
    run_dbt(["build"], warehouse=path, target_dir=tmp_path / "target")
    assert len(_query(path, f"select * from marts.confusion_counts where {NEW_SLICE}"))
    everything = _query(path, "select * from marts.group_accuracy order by all")

    # Version 2's answers are withdrawn: its slice build empties its rows in every slice model.
    _execute(path, "delete from raw.predictions where model_version = '2'")
    run_dbt(["build", "--select", "tag:slice"], warehouse=path, target_dir=tmp_path / "target", slice_=_slice("2"))
    for table in ("intermediate.int_final_answers", "intermediate.int_protocol_settings", "marts.confusion_counts",
                  "marts.group_accuracy"):
        assert _query(path, f"select count(*) as n from {table} where {NEW_SLICE}")["n"].iloc[0] == 0, table

    # A build without a slice (dbt by hand) rebuilds every slice from the raw rows.
    _execute(path, f"update marts.group_accuracy set correct = {TAMPERED} where {OLD_SLICE}")
    run_dbt(["build"], warehouse=path, target_dir=tmp_path / "target")
    pd.testing.assert_frame_equal(_query(path, "select * from marts.group_accuracy order by all"),
                                  everything[everything["model_version"] != "2"].reset_index(drop=True))


def test_several_slices_build_in_one_invocation_and_their_tests_read_only_them(tmp_path):
    path = tmp_path / "warehouse.duckdb"
    write_raw(path)
    _add_version_2(path)
    run_dbt(["build"], warehouse=path, target_dir=tmp_path / "target")
    built = _query(path, "select * from marts.group_accuracy order by all")

    # Both versions' slices in one invocation (what one run of a backfill does) restore both.
    _execute(path, f"update marts.group_accuracy set correct = {TAMPERED} where model = 'clf'")
    run_dbt(["build", "--select", "tag:slice"], warehouse=path, target_dir=tmp_path / "target",
            slice_=[_slice("1"), _slice("2")])
    pd.testing.assert_frame_equal(_query(path, "select * from marts.group_accuracy order by all"), built)

    # A broken row of another slice: the slices' data tests read only the slices being built,
    # so their build passes; a test of the whole table (no slice) finds it.
    _execute(path, "update marts.group_accuracy set grouping = null where model <> 'clf'")
    results = run_dbt(["test", "--select", "group_accuracy"], warehouse=path, target_dir=tmp_path / "target",
                      slice_=[_slice("1"), _slice("2")])
    assert results["results"] and {r["status"] for r in results["results"]} == {"pass"}
    try:
        run_dbt(["test", "--select", "group_accuracy"], warehouse=path, target_dir=tmp_path / "target")
    except DbtError as failed:
        assert "not_null_group_accuracy_grouping" in str(failed)
    else:
        raise AssertionError("the whole-table test passed over a null grouping")


def test_a_slice_models_first_build_holds_every_slice_even_over_an_old_view(tmp_path):
    """A slice model's first build has no table to add a slice to: it builds every slice. So a
    model that an older project built as a view (int_protocol_settings was one) or a new slice
    model does not start with only the run's slices, every other slice reading as empty."""
    path = tmp_path / "warehouse.duckdb"
    write_raw(path)
    _add_version_2(path)
    run_dbt(["build", "--exclude-resource-type", "unit_test", "--exclude", "tag:slice", "tag:reads_stats",
             "tag:across_slices"], warehouse=path, target_dir=tmp_path / "target")  # the foundation
    # what the old foundation left: the model as a view over every answer
    _execute(path, "create schema if not exists intermediate; create view intermediate.int_protocol_settings as "
                   "select 'old view' as classification")
    run_dbt(["build", "--select", "tag:slice"], warehouse=path, target_dir=tmp_path / "target", slice_=_slice("2"))
    for table in ("intermediate.int_protocol_settings", "intermediate.int_final_answers", "marts.group_accuracy"):
        versions = _query(path, f"select distinct model_version from {table} where model = 'clf' order by all")
        assert versions["model_version"].tolist() == ["1", "2"], table
    # From then on a slice build replaces only its slices.
    _execute(path, f"update marts.group_accuracy set correct = {TAMPERED} where {OLD_SLICE}")
    run_dbt(["build", "--select", "tag:slice"], warehouse=path, target_dir=tmp_path / "target", slice_=_slice("2"))
    assert _query(path, f"select correct from marts.group_accuracy where {OLD_SLICE}")["correct"].eq(TAMPERED).all()
