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


@dataclass(frozen=True)
class StatsInputs:
    answers: pd.DataFrame  # one final answer per model version x dataset x protocol x image
    ratings: pd.DataFrame  # human ratings, long (rater x image x dimension)
    model_values: pd.DataFrame  # numeric model answers (valence / arousal) on the human scale

    @property
    def has_ratings(self) -> bool:
        return not self.ratings.empty


def load_inputs(con: duckdb.DuckDBPyConnection) -> StatsInputs:
    return StatsInputs(
        answers=con.execute(ANSWERS_SQL).df(),
        ratings=con.execute(RATINGS_SQL).df(),
        model_values=con.execute(MODEL_VALUES_SQL).df(),
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
