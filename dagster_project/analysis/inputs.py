"""Frames the statistics read from the warehouse (one place for the SQL)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from functools import cached_property

import duckdb
import numpy as np
import pandas as pd

ANSWERS_SQL = """
select f.model, f.model_version, f.dataset, f.protocol, f.image_id,
       i.identity, i.race, i.gender, i.true_emotion,
       case when f.answer_status = 'answered' then f.predicted_emotion end as predicted_emotion,
       f.answer_status
from intermediate.int_final_answers f
join intermediate.int_images_labeled i using (dataset, image_id)
"""

# The answers once per demographic grouping (the single definition of the groupings: dbt macro
# unpivot_groupings), counted: a row per slice x protocol x group x true x predicted emotion x
# status with the answers it stands for. Categorical agreement depends on the answers only
# through these counts; at 10 slices x 100,000 images the rows were 8 million.
GROUPED_COUNTS_SQL = """
select model, model_version, dataset, protocol, grouping, group_value, true_emotion,
       case when answer_status = 'answered' then predicted_emotion end as predicted_emotion,
       answer_status, count(*) as n_answers
from intermediate.int_answers_with_groups
group by all
"""

# Counts, rates and their Wilson / Katz intervals live in the marts (issue 9: one home each).
GROUP_ACCURACY_SQL = """
select model, model_version, dataset, protocol, grouping, group_value, true_emotion, n_images, n_answered,
       n_unanswered, coverage, n, correct, accuracy, ci_low, ci_high, accuracy_itt, itt_ci_low, itt_ci_high,
       n_clusters, design_effect, cluster_ci_low, cluster_ci_high
from marts.group_accuracy
"""

MISCLASSIFICATION_RATIOS_SQL = """
select model, model_version, dataset, protocol, grouping, true_emotion, predicted_emotion, group_a, group_b,
       n_a, count_a, rate_a, n_b, count_b, rate_b, ratio, ci_low, ci_high,
       n_clusters_a, design_effect_a, n_clusters_b, design_effect_b, cluster_ci_low, cluster_ci_high
from marts.misclassification_ratios
"""

RATINGS_SQL = """
select dataset, rater, image_id, dimension, value, label, identity, race, gender, true_emotion
from intermediate.int_human_ratings_labeled
"""

MODEL_VALUES_SQL = """
select model, model_version, dataset, protocol, image_id, dimension, value,
       identity, race, gender, true_emotion
from intermediate.int_model_dimensional_answers
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
    grouped: pd.DataFrame  # the answers once per grouping (int_answers_with_groups), counted
    group_accuracy: pd.DataFrame  # marts.group_accuracy rows
    misclassification_ratios: pd.DataFrame  # marts.misclassification_ratios rows

    @property
    def has_ratings(self) -> bool:
        return not self.ratings.empty

    def of_slice(self, model: str, model_version: str, dataset: str) -> StatsInputs:
        """The inputs of one slice out of inputs read for several: each frame's rows of that
        slice (the human ratings: of its dataset), in the order read, on a fresh index -- what
        load_inputs of that slice alone returns."""
        def keep(name: str, frame: pd.DataFrame | NotLoaded) -> pd.DataFrame | NotLoaded:
            if isinstance(frame, NotLoaded):
                return frame
            key = (dataset,) if name == "ratings" else (model, model_version, dataset)
            return take_rows(frame, self._slice_rows[name].get(key, _NO_ROWS))

        return StatsInputs(**{name: keep(name, getattr(self, name)) for name in FRAME_SQL})

    @cached_property
    def _slice_rows(self) -> dict[str, dict[tuple, np.ndarray]]:
        """Per loaded frame, the positions of each slice's rows (of each dataset's, for the
        ratings), ascending: found in one pass per frame. A mask per slice instead scanned the
        whole batch once for every slice in it -- at 200 slices a batch, ~8 million grouped
        rows 200 times."""
        return {name: slice_positions(frame, ["dataset"] if name == "ratings" else SLICE_KEY_COLUMNS)
                for name in FRAME_SQL if not isinstance(frame := getattr(self, name), NotLoaded)}


SLICE_KEY_COLUMNS = ["model", "model_version", "dataset"]


def slice_positions(frame: pd.DataFrame, keys: list[str]) -> dict[tuple, np.ndarray]:
    """{key values (a tuple): the ascending positions of their rows}, in one pass over `frame`."""
    groups = frame.groupby(keys, sort=False, dropna=False).indices if len(frame) else {}
    return {(k if isinstance(k, tuple) else (k,)): v for k, v in groups.items()}


def take_rows(frame: pd.DataFrame, rows: np.ndarray) -> pd.DataFrame:
    """`frame`'s rows at ascending positions `rows`, on a fresh index (a contiguous run of rows,
    as a frame read in key order holds each slice, is a slice of the frame, not a copy)."""
    if len(rows) and rows[-1] - rows[0] + 1 == len(rows):
        return frame.iloc[rows[0]:rows[-1] + 1].reset_index(drop=True)
    return frame.take(rows).reset_index(drop=True)


def frames_of_slices(frame: pd.DataFrame) -> dict[tuple[str, str, str], pd.DataFrame]:
    """Each slice's rows of `frame` (read for several), in order, on a fresh index, keyed by
    (model, model_version, dataset)."""
    return {key: take_rows(frame, rows) for key, rows in slice_positions(frame, SLICE_KEY_COLUMNS).items()}


def ordered_sql(frame: str) -> str:
    """The SQL of one StatsInputs frame (a key of FRAME_SQL), every row, in its grain's order."""
    return f"{FRAME_SQL[frame]} order by {FRAME_ORDER[frame]}"


def select_in_slices(con: duckdb.DuckDBPyConnection, sql: str, slices: pd.DataFrame,
                     order_by: str = "all") -> pd.DataFrame:
    """The rows of `sql` (with model, model_version and dataset columns) of the given slices,
    ordered by `order_by` (default every column)."""
    con.register("_scope_slices", slices[["model", "model_version", "dataset"]].astype(str))
    try:
        return con.execute(
            f"select * from ({sql}) where (model, model_version, dataset) in "
            f"(select model, model_version, dataset from _scope_slices) order by {order_by}"
        ).df()
    finally:
        con.unregister("_scope_slices")


# Each frame's grain: the first columns of its SQL, unique (dbt tests unique_combination on each
# model; the grouped counts are unique by their GROUP BY), so ordering by them is the same order
# as "order by all" at a fraction of the sort (10 slices x 100,000 images of grouped answers,
# when they were read a row per answer: 38 s -> 18 s).
FRAME_ORDER = {
    "answers": "model, model_version, dataset, protocol, image_id",
    "ratings": "dataset, rater, image_id, dimension",
    "model_values": "model, model_version, dataset, protocol, image_id, dimension",
    "grouped": "model, model_version, dataset, protocol, grouping, group_value, true_emotion, predicted_emotion, "
               "answer_status",
    "group_accuracy": "model, model_version, dataset, protocol, grouping, group_value, true_emotion",
    "misclassification_ratios": "model, model_version, dataset, protocol, grouping, true_emotion, predicted_emotion, group_a, group_b",
}

# The frames of StatsInputs and the SQL of each (unordered: readers order by FRAME_ORDER).
FRAME_SQL = {
    "answers": ANSWERS_SQL,
    "ratings": RATINGS_SQL,
    "model_values": MODEL_VALUES_SQL,
    "grouped": GROUPED_COUNTS_SQL,
    "group_accuracy": GROUP_ACCURACY_SQL,
    "misclassification_ratios": MISCLASSIFICATION_RATIOS_SQL,
}


_NO_ROWS = np.array([], dtype=np.intp)


class NotLoaded:
    """Stands for a frame `load_inputs` was told not to read: any use raises (an empty frame
    would silently read as "no data"). Picklable: a run of many slices sends inputs to worker
    processes (on_cores)."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __reduce__(self):
        return NotLoaded, (self._name,)

    def _fail(self, *_args, **_kwargs):
        raise RuntimeError(f"StatsInputs.{self._name} was not loaded: add {self._name!r} to the frames "
                           "this statistic reads (load_inputs(only=...), stats_asset(reads=...))")

    def __getattr__(self, attr: str):
        if attr.startswith("__") or attr == "_name":  # what pickle and copy look up: not a use of the frame
            raise AttributeError(attr)
        return self._fail()

    __len__ = __iter__ = __getitem__ = __bool__ = _fail


def load_inputs(
    con: duckdb.DuckDBPyConnection,
    model_slices: pd.DataFrame | None = None,
    datasets: list[str] | None = None,
    only: Collection[str] | None = None,
) -> StatsInputs:
    """Everything, or only the answers of `model_slices` (model, model_version, dataset) and
    the human ratings of `datasets` (what an incremental recomputation needs). `only`: the
    frames to read (default all); the others are NotLoaded -- at 100,000 images a slice's
    answers are 100,000 rows, read only by the statistics that use them."""
    wanted = set(FRAME_SQL) if only is None else set(only)
    if wanted - set(FRAME_SQL):
        raise ValueError(f"unknown frames {sorted(wanted - set(FRAME_SQL))}; use some of {sorted(FRAME_SQL)}")
    everything = model_slices is None and datasets is None
    if model_slices is None:
        model_slices = pd.DataFrame(columns=["model", "model_version", "dataset"])

    def read(name: str) -> pd.DataFrame | NotLoaded:
        if name not in wanted:
            return NotLoaded(name)
        order = FRAME_ORDER[name]
        if everything:
            return con.execute(ordered_sql(name)).df()
        if name == "ratings":
            return con.execute(f"select * from ({RATINGS_SQL}) where list_contains(?, dataset) order by {order}",
                               [list(datasets or [])]).df()
        return select_in_slices(con, FRAME_SQL[name], model_slices, order)

    return StatsInputs(**{name: read(name) for name in FRAME_SQL})


def with_race_gender(frame: pd.DataFrame) -> pd.DataFrame:
    """Add race_gender = f"{race} {gender}" (null when either part is missing)."""
    frame = frame.copy()
    if {"race", "gender"} <= set(frame.columns):
        both = frame["race"].notna() & frame["gender"].notna()
        frame["race_gender"] = None
        frame.loc[both, "race_gender"] = (
            frame.loc[both, "race"].astype(str) + " " + frame.loc[both, "gender"].astype(str))
    return frame
