"""Headline metadata: accuracy by group with intervals, the largest significant disparity,
and image (not identity) counts per race."""

from __future__ import annotations

import pandas as pd

from dagster_project.analysis.headlines import NO_SIGNIFICANT, accuracy_by_group_table, largest_significant_disparity
from dagster_project.analysis.proportions import pairwise_error_ztests
from dagster_project.defs.ingestion import images_by_group


def _accuracy(cells: dict[str, tuple[int, int]]) -> pd.DataFrame:
    """marts.group_accuracy-shaped rows: race groups with (n, correct), all emotions pooled."""
    rows = [
        {"model": "m", "model_version": "v", "dataset": "d", "protocol": "p", "grouping": "race",
         "group_value": group, "true_emotion": "all", "n": n, "correct": correct, "accuracy": correct / n,
         "ci_low": correct / n - 0.1, "ci_high": min(correct / n + 0.1, 1.0)}
        for group, (n, correct) in cells.items()
    ]
    return pd.DataFrame(rows)


def test_accuracy_table_shows_interval_and_denominator_per_group() -> None:
    table = accuracy_by_group_table(_accuracy({"black": (40, 20), "white": (40, 36)}))
    assert "| p | race | black | 40 | 0.500 | [0.400, 0.600] |" in table
    assert "| p | race | white | 40 | 0.900 | [0.800, 1.000] |" in table
    assert accuracy_by_group_table(_accuracy({}).reindex(columns=["true_emotion", "grouping"])) \
        == "no answered images in this slice"


def test_largest_significant_disparity_names_pair_interval_and_family() -> None:
    # black 20/40 vs white 36/40 correct: z-test significant after Holm; asian 5/6 vs black is a
    # larger gap in rate terms only against a 6-image cell, below min_n=10: flagged and not tested,
    # so the family holds the one tested pair.
    accuracy = _accuracy({"black": (40, 20), "white": (40, 36), "asian": (6, 1)})
    tests = pairwise_error_ztests(accuracy, groupings=("race",), correction="holm", alpha=0.05, min_n=10,
                                  family="grouping")
    text = largest_significant_disparity(tests)
    assert text.startswith("race (all): error rate black 0.500 (20/40) vs white 0.100 (4/40), difference +0.400")
    assert "holm within family" in text and "1 tests" in text
    assert "asian" not in text


def test_no_significant_disparity_says_so() -> None:
    accuracy = _accuracy({"black": (40, 30), "white": (40, 31)})
    tests = pairwise_error_ztests(accuracy, groupings=("race",), correction="holm", alpha=0.05, min_n=10,
                                  family="grouping")
    assert largest_significant_disparity(tests) == f"{NO_SIGNIFICANT} (1 tests)"


def test_images_by_race_counts_images_not_identities() -> None:
    images = pd.DataFrame({"identity": ["1", "1", "2", "2", "3", "3"],
                           "race": ["black", "black", "black", "black", "white", "white"]})
    meta = images_by_group(images)
    assert meta["images_by_race"].data == {"black": 4, "white": 2}
    assert meta["identities_by_race"].data == {"black": 2, "white": 1}
    assert meta["n_identities"] == 3


def test_unconfigured_model_partitions_are_named_with_the_reason(session_config_path) -> None:
    from dagster_project.defs.partitions import configured_model_keys, unconfigured_model_keys
    from inference.config import load_config

    cfg = load_config(session_config_path)
    keys = [*configured_model_keys(cfg), "mini_xception@new-weights", "no_such_model@v1", "mini_xception"]
    stray = unconfigured_model_keys(keys, cfg)
    assert set(stray) == {"no_such_model@v1", "mini_xception"}
    assert "no model named 'no_such_model'" in stray["no_such_model@v1"]
    assert "no version after '@'" in stray["mini_xception"]
