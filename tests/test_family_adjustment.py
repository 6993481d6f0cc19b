"""The family-wise adjustment (analysis/results.adjust_within_families) calls statsmodels'
multipletests once per family; statsmodels 0.15 runs a full gc.collect() after each Holm
adjustment. collections_of_new_objects_only keeps those collections to the objects made
during the adjustment: what is garbage then is still collected, and nothing stays frozen."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pandas as pd
from statsmodels.stats.multitest import multipletests

from dagster_project.analysis.results import adjust_within_families, collections_of_new_objects_only


class _Node:
    pass


def test_new_garbage_is_still_collected_and_nothing_stays_frozen():
    assert gc.get_freeze_count() == 0
    with collections_of_new_objects_only():
        assert gc.get_freeze_count() > 0
        cycle = _Node()
        cycle.self = cycle
        alive = weakref.ref(cycle)
        del cycle
        gc.collect()
        assert alive() is None
    assert gc.get_freeze_count() == 0


def test_each_family_is_adjusted_as_statsmodels_adjusts_it_alone():
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"family": np.repeat(["f1", "f2", "f3"], [4, 3, 5]), "p_value": rng.uniform(0, 0.2, 12),
                          "p_adjusted": np.nan, "family_m": 0, "correction": ""})
    frame.loc[2, "p_value"] = np.nan  # untestable: not in its family's m
    out = adjust_within_families(frame, "holm")
    for family, rows in out.groupby("family"):
        tested = rows["p_value"].notna()
        expected = multipletests(rows.loc[tested, "p_value"], method="holm")[1]
        assert np.allclose(rows.loc[tested, "p_adjusted"], expected)
        assert (rows["family_m"] == tested.sum()).all() and (rows["correction"] == "holm").all()
    assert np.isnan(out.loc[2, "p_adjusted"])
