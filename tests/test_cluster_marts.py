"""The marts' design effects and cluster-aware intervals (issue 22), built by dbt from the
issue's design and checked against statsmodels; then the statistics on those marts.

30 black and 30 white people, 4 faces each (2 happy, 2 sad); a classifier fails 6 black and 2
white people on every face and nobody else: 24/120 against 8/120 errors. Ten more images carry
no identity (each is its own cluster). Expected design effects come from statsmodels' cluster-
robust OLS variance (tests/cluster_support.py), never from the SQL's formula.
"""

from __future__ import annotations

import json
from datetime import datetime

import duckdb
import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.proportion import confint_proportions_2indep, proportion_confint

from cluster_support import statsmodels_design_effect
from dagster_project.analysis.clustered import CLUSTER_METHOD
from dagster_project.analysis.inputs import ordered_sql
from dagster_project.analysis.proportions import misclassification_tests, pairwise_error_ztests
from dagster_project.analysis.worst_subgroup import worst_subgroups
from dagster_project.defs.stats_io import replace_rows
from dbt_support import run_dbt
from inference.config import StatisticsConfig, dbt_vars
from inference.warehouse import ensure_raw_schema

NOW = datetime(2024, 1, 1, 12, 0, 0)
# any attribute as a grouping: age bins, a manifest column (extra) binned, an intersection
STATISTICS = StatisticsConfig(groupings=("race", "gender", "race_gender", "age", "race*age", "skin_luminance"),
                              bins={"age": (0, 30, 45, 120), "skin_luminance": (0, 50, 100)})
WRONG = {"happy": "sad", "sad": "angry"}  # what a failing person's faces are read as


def _images() -> pd.DataFrame:
    rows = []
    for race, failing in (("Black", 6), ("White", 2)):
        for person in range(30):
            for face, label in enumerate(("happy", "happy", "sad", "sad")):
                rows.append((f"{race}/{person:02d}_{face}.png", label, f"{race[0]}{person:02d}", race, person < failing))
    rows += [(f"none/{i}.png", "happy", None, "hispanic", i < 3) for i in range(10)]
    frame = pd.DataFrame(rows, columns=["image_id", "source_label", "identity", "race", "fails"])
    number = np.arange(len(frame)) // 4  # one person's faces share age and skin luminance
    return frame.assign(dataset="synth", image_hash=[f"h{i}" for i in range(len(frame))], label_set="fer2013",
                        gender=np.where(number % 2, "F", "man"), age=20.0 + number % 40, width=48, height=48,
                        extra=[json.dumps({"skin_luminance": float(30 + 7 * (k % 9))}) for k in number],
                        loaded_at=NOW)


def _predictions(images: pd.DataFrame) -> pd.DataFrame:
    label = np.where(images["fails"], images["source_label"].map(WRONG), images["source_label"])
    return pd.DataFrame({
        "run_id": "run", "model": "clf", "model_version": "1", "model_kind": "classifier", "label_set": "fer2013",
        "dataset": "synth", "image_id": images["image_id"], "image_hash": images["image_hash"], "protocol": "classify",
        "step": 1, "step_name": "emotion", "sample_index": 0, "attempt": 1, "parse_status": "ok",
        "predicted_label": label, "predicted_value": None, "face_found": True, "created_at": NOW, "preprocessing": None,
    })


@pytest.fixture(scope="module")
def marts(tmp_path_factory):
    root = tmp_path_factory.mktemp("cluster_marts")
    path = root / "warehouse.duckdb"
    images = _images()
    con = duckdb.connect(str(path))
    ensure_raw_schema(con)
    for table, frame in (("dataset_images", images.drop(columns="fails")), ("predictions", _predictions(images))):
        con.register("_frame", frame)
        con.execute(f"insert into raw.{table} by name select * from _frame")
        con.unregister("_frame")
    con.close()
    run_dbt(["build", "--select", "+group_accuracy", "+misclassification_ratios", "--indirect-selection", "cautious",
             "--vars", json.dumps({k: v for k, v in dbt_vars(STATISTICS).items() if k.startswith("group")})], warehouse=path,
            target_dir=root / "target")
    # stats.worst_subgroups of the slice, then the lineage view over it (any grouping traced)
    con = duckdb.connect(str(path))
    accuracy = con.execute(ordered_sql("group_accuracy")).df()
    worst = worst_subgroups(pairwise_error_ztests(accuracy, groupings=STATISTICS.groupings), alpha=0.05)
    replace_rows(con, "worst_subgroups", {"model": "clf"}, worst)
    con.close()
    run_dbt(["run", "--select", "stat_lineage",
             "--vars", json.dumps({k: v for k, v in dbt_vars(STATISTICS).items() if k.startswith("group")})],
            warehouse=path, target_dir=root / "target")
    con = duckdb.connect(str(path), read_only=True)
    yield {
        "worst": worst,
        "lineage": con.execute("select * from lineage.stat_lineage where stats_table = 'worst_subgroups'").df(),
        "rows": con.execute("select * from intermediate.int_answers_with_groups").df(),
        "images": images,
        "accuracy": con.execute(ordered_sql("group_accuracy")).df(),
        "ratios": con.execute(ordered_sql("misclassification_ratios")).df(),
    }
    con.close()


def test_group_accuracy_design_effects_and_cluster_intervals_match_statsmodels(marts):
    rows, accuracy = marts["rows"], marts["accuracy"]
    assert rows.loc[rows["identity"].isna(), "cluster_id"].str.contains("/image:").all()
    pooled = rows.assign(true_emotion="all")
    for cell in accuracy.itertuples():
        members = pd.concat([rows, pooled])
        members = members[(members["grouping"] == cell.grouping) & (members["group_value"] == cell.group_value)
                          & (members["true_emotion"] == cell.true_emotion)]
        want = statsmodels_design_effect(members["is_correct"].to_numpy(int), members["cluster_id"].to_numpy())
        assert cell.n_clusters == members["cluster_id"].nunique()
        assert cell.design_effect == pytest.approx(want, rel=1e-9), cell
        low, high = proportion_confint(cell.correct / want, cell.n / want, method="wilson")
        assert (cell.cluster_ci_low, cell.cluster_ci_high) == pytest.approx((low, high), rel=1e-9)
    black = accuracy.set_index(["grouping", "group_value", "true_emotion"]).loc[("race", "black", "all")]
    assert (black["n"], black["correct"], black["n_clusters"]) == (120, 96, 30)
    assert black["design_effect"] == pytest.approx(30 / 29 * 4)  # every person all right or all wrong
    latino = accuracy.set_index(["grouping", "group_value", "true_emotion"]).loc[("race", "latino", "all")]
    assert latino["design_effect"] == 1.0 and latino["n_clusters"] == latino["n"] == 10  # no identities


def test_misclassification_design_effects_and_cluster_katz_intervals_match_statsmodels(marts):
    rows, ratios = marts["rows"], marts["ratios"]
    answered = rows[rows["is_answered"] & (rows["grouping"] != "all")]
    for pair in ratios.itertuples():
        cell = answered[(answered["grouping"] == pair.grouping) & (answered["group_value"] == pair.group_a)]
        if pair.true_emotion != "all":
            cell = cell[cell["true_emotion"] == pair.true_emotion]
        outcome = (cell["predicted_emotion"] != cell["true_emotion"]) if pair.predicted_emotion == "error" else (
            cell["predicted_emotion"] == pair.predicted_emotion)
        want = statsmodels_design_effect(outcome.to_numpy(int), cell["cluster_id"].to_numpy())
        assert pair.count_a == outcome.sum() and pair.n_clusters_a == cell["cluster_id"].nunique()
        assert pair.design_effect_a == pytest.approx(want, rel=1e-9), pair
    both = ratios[(ratios["count_a"] > 0) & (ratios["count_b"] > 0)]
    assert len(both) > 0
    low, high = confint_proportions_2indep(both["count_a"] / both["design_effect_a"], both["n_a"] / both["design_effect_a"],
                                           both["count_b"] / both["design_effect_b"], both["n_b"] / both["design_effect_b"],
                                           compare="ratio", method="log")
    assert np.allclose(both["cluster_ci_low"], low, rtol=1e-9) and np.allclose(both["cluster_ci_high"], high, rtol=1e-9)
    assert ((both["cluster_ci_high"] - both["cluster_ci_low"]) >= (both["ci_high"] - both["ci_low"]) - 1e-12).all()


def test_statistics_on_the_marts_count_people_not_faces(marts):
    tests = pairwise_error_ztests(marts["accuracy"], groupings=STATISTICS.groupings)
    pair = tests[(tests["group_a"] == "black") & (tests["group_b"] == "white") & (tests["true_emotion"] == "all")].iloc[0]
    assert (pair["errors_a"], pair["n_a"], pair["errors_b"], pair["n_b"]) == (24, 120, 8, 120)
    assert round(pair["p_value_naive"], 3) == 0.002 and pair["inference"] == CLUSTER_METHOD
    assert pair["p_value"] > 0.05 and not pair["significant"]
    ratios = misclassification_tests(marts["ratios"], min_n=10)
    error = ratios[(ratios["subset"] == "black vs white") & (ratios["predicted_emotion"] == "error")
                   & (ratios["true_emotion"] == "all")].iloc[0]
    assert error["estimate"] == pytest.approx(3.0) and error["inference"] == CLUSTER_METHOD
    assert error["p_value_naive"] < 0.01 and error["p_value"] > 0.05
    assert error["ci_low"] < 1 < error["ci_low_naive"]  # the naive Katz interval excluded 1; people do not


def test_any_attribute_is_a_grouping_age_bins_extra_columns_and_intersections(marts):
    rows, images = marts["rows"], marts["images"]
    age = pd.cut(images["age"], [0, 30, 45, 120], right=False, labels=["0-30", "30-45", "45-120"]).astype(str)
    skin = images["extra"].map(lambda e: json.loads(e)["skin_luminance"])
    skin = pd.cut(skin, [0, 50, 100], right=False, labels=["0-50", "50-100"]).astype(str)
    race = images["race"].str.lower().replace({"hispanic": "latino"})
    want = {"age": age, "skin_luminance": skin, "race*age": race + " " + age}
    for grouping, values in want.items():
        got = rows[rows["grouping"] == grouping].set_index("image_id")["group_value"]
        expected = pd.Series(values.to_numpy(), index=images["image_id"])
        assert got.sort_index().equals(expected.loc[got.index].sort_index()), grouping
        assert len(got) == len(images)  # every image has the attribute here
    accuracy = marts["accuracy"]
    assert set(accuracy["grouping"]) == {"all", *STATISTICS.groupings}
    assert set(accuracy.loc[accuracy["grouping"] == "age", "group_value"]) == {"0-30", "30-45", "45-120"}


def test_worst_subgroups_of_any_grouping_trace_to_their_own_images(marts):
    worst, lineage, rows = marts["worst"], marts["lineage"], marts["rows"]
    assert set(worst["subset_kind"]) >= {"age", "race*age", "skin_luminance"}
    age_row = worst[(worst["subset_kind"] == "age") & (worst["true_emotion"] == "all")].iloc[0]
    traced = lineage[(lineage["subset_kind"] == "age") & (lineage["subset"] == age_row["subset"])
                     & (lineage["scope_emotion"].isna())]
    want = rows[(rows["grouping"] == "age") & rows["group_value"].isin([age_row["group_a"], age_row["group_b"]])]
    assert set(traced["image_id"]) == set(want["image_id"]) and len(want) < len(marts["images"])
