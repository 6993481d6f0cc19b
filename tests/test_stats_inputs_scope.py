"""load_inputs(only=...): a statistic reads only the frames it uses (at 100,000 images a
slice's answers once per grouping are 400,000 rows), and a frame it did not ask for fails
loudly instead of reading as empty."""

from __future__ import annotations

import duckdb
import pandas as pd
import pytest

from dagster_project.analysis.inputs import load_inputs

COLUMNS = ("model, model_version, dataset, protocol, grouping, true_emotion, predicted_emotion, group_a, group_b, "
           "n_a, count_a, rate_a, n_b, count_b, rate_b, ratio, ci_low, ci_high, "
           "n_clusters_a, design_effect_a, n_clusters_b, design_effect_b, cluster_ci_low, cluster_ci_high")


def _warehouse() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("create schema marts")
    con.execute("create table marts.misclassification_ratios as select " + ", ".join(
        f"{value} as {name.strip()}" for name, value in zip(COLUMNS.split(","), [
            "'m'", "'v1'", "'d'", "'classify'", "'race'", "'sad'", "'neutral'", "'black'", "'white'",
            "10", "5", "0.5", "10", "1", "0.1", "5.0", "0.7", "35.0", "10", "1.0", "10", "1.0", "0.7", "35.0"])))
    con.execute("insert into marts.misclassification_ratios select * replace ('v2' as model_version) "
                "from marts.misclassification_ratios")
    return con


def test_only_the_frames_asked_for_are_read_and_the_others_fail_loudly():
    con = _warehouse()  # it has no answers, ratings or groupings: reading them would fail
    inputs = load_inputs(con, pd.DataFrame([{"model": "m", "model_version": "v1", "dataset": "d"}]), ["d"],
                         only=("misclassification_ratios",))
    assert inputs.misclassification_ratios["model_version"].tolist() == ["v1"]  # the slice's rows only
    with pytest.raises(RuntimeError, match="grouped was not loaded"):
        inputs.grouped.groupby("grouping")
    with pytest.raises(RuntimeError, match="answers was not loaded"):
        len(inputs.answers)
    with pytest.raises(RuntimeError, match="ratings was not loaded"):
        _ = inputs.has_ratings
    with pytest.raises(ValueError, match="unknown frames"):
        load_inputs(con, only=("answer",))
