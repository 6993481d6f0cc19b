"""Frames the statistics read from the warehouse (one place for the SQL)."""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import pandas as pd

ANSWERS_SQL = """
select f.model, f.model_version, f.dataset, f.protocol, f.image_id,
       i.identity, i.race, i.gender, i.true_emotion,
       case when f.answer_status = 'answered' then f.predicted_emotion end as predicted_emotion,
       f.answer_status
from intermediate.int_final_answers f
join intermediate.int_images_labeled i using (dataset, image_id)
order by all
"""

# The single definition of the demographic groupings (dbt macro unpivot_groupings), as rows.
GROUPED_ANSWERS_SQL = """
select model, model_version, dataset, protocol, image_id, grouping, group_value, true_emotion,
       case when answer_status = 'answered' then predicted_emotion end as predicted_emotion,
       answer_status
from intermediate.int_answers_with_groups
order by all
"""

# Counts, rates and their Wilson / Katz intervals live in the marts (issue 9: one home each).
GROUP_ACCURACY_SQL = """
select model, model_version, dataset, protocol, grouping, group_value, true_emotion, n_images, n_answered,
       n_unanswered, coverage, n, correct, accuracy, ci_low, ci_high, accuracy_itt, itt_ci_low, itt_ci_high
from marts.group_accuracy
order by all
"""

MISCLASSIFICATION_RATIOS_SQL = """
select model, model_version, dataset, protocol, grouping, true_emotion, predicted_emotion, group_a, group_b,
       n_a, count_a, rate_a, n_b, count_b, rate_b, ratio, ci_low, ci_high
from marts.misclassification_ratios
order by all
"""

RATINGS_SQL = """
select dataset, rater, image_id, dimension, value, label, identity, race, gender, true_emotion
from intermediate.int_human_ratings_labeled
order by all
"""

MODEL_VALUES_SQL = """
select model, model_version, dataset, protocol, image_id, dimension, value,
       identity, race, gender, true_emotion
from intermediate.int_model_dimensional_answers
order by all
"""

ANSWER_COLUMNS = ["model", "model_version", "dataset", "protocol", "image_id", "identity", "race", "gender",
                  "true_emotion", "predicted_emotion", "answer_status"]
MODEL_VALUE_COLUMNS = ["model", "model_version", "dataset", "protocol", "image_id", "dimension", "value",
                       "identity", "race", "gender", "true_emotion"]


@dataclass(frozen=True)
class StatsInputs:
    answers: pd.DataFrame  # one final answer per model version x dataset x protocol x image
    ratings: pd.DataFrame  # human ratings, long (rater x image x dimension)
    model_values: pd.DataFrame  # numeric model answers (valence / arousal) on the human scale
    grouped: pd.DataFrame  # the answers once per grouping (int_answers_with_groups)
    group_accuracy: pd.DataFrame  # marts.group_accuracy rows
    misclassification_ratios: pd.DataFrame  # marts.misclassification_ratios rows

    @property
    def has_ratings(self) -> bool:
        return not self.ratings.empty


def select_in_slices(con: duckdb.DuckDBPyConnection, sql: str, slices: pd.DataFrame) -> pd.DataFrame:
    """The rows of `sql` (with model, model_version and dataset columns) of the given slices."""
    con.register("_scope_slices", slices[["model", "model_version", "dataset"]].astype(str))
    try:
        return con.execute(
            f"select * from ({sql}) where (model, model_version, dataset) in "
            "(select model, model_version, dataset from _scope_slices) order by all"
        ).df()
    finally:
        con.unregister("_scope_slices")


def load_inputs(
    con: duckdb.DuckDBPyConnection,
    model_slices: pd.DataFrame | None = None,
    datasets: list[str] | None = None,
) -> StatsInputs:
    """Everything, or only the answers of `model_slices` (model, model_version, dataset) and
    the human ratings of `datasets` (what an incremental recomputation needs)."""
    if model_slices is None and datasets is None:
        return StatsInputs(
            answers=con.execute(ANSWERS_SQL).df(),
            ratings=con.execute(RATINGS_SQL).df(),
            model_values=con.execute(MODEL_VALUES_SQL).df(),
            grouped=con.execute(GROUPED_ANSWERS_SQL).df(),
            group_accuracy=con.execute(GROUP_ACCURACY_SQL).df(),
            misclassification_ratios=con.execute(MISCLASSIFICATION_RATIOS_SQL).df(),
        )
    if model_slices is None:
        model_slices = pd.DataFrame(columns=["model", "model_version", "dataset"])
    return StatsInputs(
        answers=select_in_slices(con, ANSWERS_SQL, model_slices),
        ratings=con.execute(
            f"select * from ({RATINGS_SQL}) where list_contains(?, dataset) order by all", [list(datasets or [])]
        ).df(),
        model_values=select_in_slices(con, MODEL_VALUES_SQL, model_slices),
        grouped=select_in_slices(con, GROUPED_ANSWERS_SQL, model_slices),
        group_accuracy=select_in_slices(con, GROUP_ACCURACY_SQL, model_slices),
        misclassification_ratios=select_in_slices(con, MISCLASSIFICATION_RATIOS_SQL, model_slices),
    )


def with_race_gender(frame: pd.DataFrame) -> pd.DataFrame:
    """Add race_gender = f"{race} {gender}" (null when either part is missing)."""
    frame = frame.copy()
    if {"race", "gender"} <= set(frame.columns):
        both = frame["race"].notna() & frame["gender"].notna()
        frame["race_gender"] = None
        frame.loc[both, "race_gender"] = (
            frame.loc[both, "race"].astype(str) + " " + frame.loc[both, "gender"].astype(str))
    return frame
