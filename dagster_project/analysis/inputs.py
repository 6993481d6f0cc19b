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
        )
    if model_slices is None:
        model_slices = pd.DataFrame(columns=["model", "model_version", "dataset"])
    return StatsInputs(
        answers=select_in_slices(con, ANSWERS_SQL, model_slices),
        ratings=con.execute(
            f"select * from ({RATINGS_SQL}) where list_contains(?, dataset) order by all", [list(datasets or [])]
        ).df(),
        model_values=select_in_slices(con, MODEL_VALUES_SQL, model_slices),
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
