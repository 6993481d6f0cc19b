"""StatsInputs.of_slice: a slice's rows out of inputs read for many slices, found by one index
per frame -- the same rows, order, index and dtypes as a mask over the frame for that slice."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from dagster_project.analysis.inputs import FRAME_ORDER, FRAME_SQL, NotLoaded, StatsInputs, frames_of_slices

SLICES = [("m", "v1", "d1"), ("m", "v2", "d1"), ("n", "v1", "d2")]


def _frame(rows: int, seed: int, with_slice: bool = True) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    picked = [SLICES[k] for k in rng.integers(0, len(SLICES), rows)]
    frame = pd.DataFrame({"image_id": [f"i{k}" for k in range(rows)], "value": rng.random(rows)})
    if with_slice:
        frame.insert(0, "model", pd.array([p[0] for p in picked], dtype="string[pyarrow]"))
        frame.insert(1, "model_version", [p[1] for p in picked])
    frame.insert(2 if with_slice else 0, "dataset", [p[2] for p in picked])
    return frame


def _mask_of_slice(frame: pd.DataFrame, model: str, model_version: str, dataset: str) -> pd.DataFrame:
    """The reference: a mask over the whole frame for one slice."""
    mask = (frame["model"] == model) & (frame["model_version"] == model_version) & (frame["dataset"] == dataset)
    return frame[mask].reset_index(drop=True)


def _inputs(in_key_order: bool) -> StatsInputs:
    """Frames as read (in key order: each slice one run of rows) or shuffled."""
    frames = {name: _frame(300, seed) for seed, name in enumerate(FRAME_SQL) if name != "ratings"}
    frames["ratings"] = _frame(200, 99, with_slice=False)
    if in_key_order:
        frames = {name: frame.sort_values([c for c in ("model", "model_version", "dataset") if c in frame],
                                          kind="stable").reset_index(drop=True) for name, frame in frames.items()}
    frames["model_values"] = frames["model_values"].iloc[0:0]  # an empty frame stays empty, typed
    frames["grouped"] = NotLoaded("grouped")
    return StatsInputs(**frames)


@pytest.mark.parametrize("in_key_order", [True, False])
@pytest.mark.parametrize("slice_key", [*SLICES, ("m", "v9", "d1")])
def test_of_slice_equals_a_mask_per_slice(slice_key, in_key_order):
    inputs = _inputs(in_key_order)
    got = inputs.of_slice(*slice_key)
    assert isinstance(got.grouped, NotLoaded)
    for name in ("answers", "group_accuracy", "misclassification_ratios", "model_values"):
        pd.testing.assert_frame_equal(getattr(got, name), _mask_of_slice(getattr(inputs, name), *slice_key))
    ratings = inputs.ratings
    pd.testing.assert_frame_equal(got.ratings, ratings[ratings["dataset"] == slice_key[2]].reset_index(drop=True))
    if slice_key[1] != "v9":
        assert len(got.answers) > 0 and list(got.answers["image_id"]) == sorted(
            got.answers["image_id"], key=lambda i: int(i[1:]))  # the order read (sorting was stable)


@pytest.mark.parametrize("in_key_order", [True, False])
def test_frames_of_slices_equal_a_mask_per_slice(in_key_order):
    frame = _inputs(in_key_order).group_accuracy
    got = frames_of_slices(frame)
    assert sorted(got) == sorted(SLICES)
    for slice_key, rows in got.items():
        pd.testing.assert_frame_equal(rows, _mask_of_slice(frame, *slice_key))


def test_inputs_with_a_frame_not_loaded_survive_pickling():
    """A run of many slices sends each slice's inputs to worker processes: a frame not read
    (NotLoaded) must pickle, and still refuse any use on the other side."""
    inputs = _inputs(in_key_order=True).of_slice(*SLICES[0])
    back = pickle.loads(pickle.dumps(inputs))
    pd.testing.assert_frame_equal(back.answers, inputs.answers)
    assert isinstance(back.grouped, NotLoaded)
    with pytest.raises(RuntimeError, match="StatsInputs.grouped was not loaded"):
        len(back.grouped)
    with pytest.raises(RuntimeError, match="StatsInputs.grouped was not loaded"):
        back.grouped.columns


@pytest.mark.parametrize("frame", sorted(FRAME_SQL))
def test_each_frame_is_read_in_its_grains_order_the_leading_columns(frame):
    """Frames are sorted by their grain (FRAME_ORDER), not by every column: the same order only
    while the grain is the SQL's first columns (and unique: dbt's unique_combination tests)."""
    select_list = FRAME_SQL[frame].split("select", 1)[1].split("from", 1)[0]
    leading = [column.strip().split(" as ")[-1].split(".")[-1] for column in select_list.split(",")]
    grain = [column.strip() for column in FRAME_ORDER[frame].split(",")]
    assert leading[:len(grain)] == grain
