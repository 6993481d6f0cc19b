"""Planning: how large an error-rate disparity a design can detect, before paying for runs.

Per dataset x grouping x true emotion cell ('all' = emotions pooled): the groups' images and
people, and the smallest error-rate ratio (higher / lower group) that the two-proportion test
of the two SMALLEST groups with at least min_cell_n images (smaller groups are never tested)
detects with the given power at the family's Bonferroni level
alpha / m (m = testable pairs adjusted together under statistics.family; Holm's first step is this
Bonferroni level, so this is what the most significant test of a family must clear). Any pair
with more images detects a smaller ratio.

Repeated identities shrink what a design is worth: each group's n is divided by a planned
design effect, Kish's 1 + (m_bar - 1) * ICC with m_bar = images per person in the cell and a
planned ICC (the intra-person correlation of errors; the marts measure the real design effect
after the run). Power comes from statsmodels' NormalIndPower (Cohen's h for two proportions);
the ratio is solved from h at the planned baseline error rate of the lower group.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

PLAN_COLUMNS = ["dataset", "grouping", "true_emotion", "n_groups", "groups_below_min_n", "smallest_groups", "n_a", "people_a", "n_b",
                "people_b", "design_effect", "family_m", "alpha_per_test", "detectable_ratio", "below_min_n"]


def kish_design_effect(images: int, people: int, icc: float) -> float:
    """1 + (mean images per person - 1) * ICC; 1 without repeated people."""
    return 1.0 + (images / max(people, 1) - 1.0) * icc if people else 1.0


def detectable_ratio(n_a: float, n_b: float, alpha: float, power: float, baseline: float) -> float:
    """The smallest rate_high / rate_low, rate_low = `baseline`, that statsmodels' two-sample
    proportion power (Cohen's h, two-sided, alpha) detects with `power`; inf when even an
    error rate of 1 would not be detected."""
    from statsmodels.stats.power import NormalIndPower
    h = NormalIndPower().solve_power(effect_size=None, nobs1=n_a, alpha=alpha, power=power, ratio=n_b / n_a)
    # Cohen's h = 2 asin(sqrt(p1)) - 2 asin(sqrt(p0)), solved for p1
    angle = 2 * np.arcsin(np.sqrt(baseline)) + h
    return float(np.sin(angle / 2) ** 2 / baseline) if angle <= np.pi else float("inf")


def plan_cells(images: pd.DataFrame, *, groupings: tuple[str, ...], family: str, alpha: float, power: float,
               baseline: float, icc: float, min_n: int) -> pd.DataFrame:
    """`images`: one row per image with dataset, identity (may be null: the image is its own
    person), true_emotion and one column per grouping. One row per dataset x grouping x
    true emotion (and 'all'), PLAN_COLUMNS."""
    rows = []
    frame = images.assign(person=images["identity"].fillna("image:" + images["image_id"].astype(str)))
    for (dataset, grouping), part in _by_grouping(frame, groupings):
        cells = [(emotion, cell) for emotion, cell in part.groupby("true_emotion", sort=True)] + [("all", part)]
        # pairs with a group below min_n are not tested (proportions.pairwise_error_ztests): not in m
        pairs_per_emotion = {e: len(list(itertools.combinations(_testable(c, min_n), 2))) for e, c in cells}
        for emotion, cell in cells:
            m = pairs_per_emotion[emotion] if (family == "emotion" or emotion == "all") else sum(
                v for e, v in pairs_per_emotion.items() if e != "all")
            rows.append(_cell_row(dataset, grouping, emotion, cell, max(m, 1), alpha, power, baseline, icc, min_n))
    return pd.DataFrame(rows, columns=PLAN_COLUMNS)


def _by_grouping(frame: pd.DataFrame, groupings: tuple[str, ...]):
    for grouping in groupings:
        with_value = frame[frame[grouping].notna()].assign(group_value=lambda f, g=grouping: f[g].astype(str))
        for dataset, part in with_value.groupby("dataset", sort=True):
            if part["group_value"].nunique() >= 2:
                yield (dataset, grouping), part


def _testable(cell: pd.DataFrame, min_n: int) -> list[str]:
    sizes = cell["group_value"].value_counts()
    return sorted(sizes[sizes >= min_n].index)


def _cell_row(dataset, grouping, emotion, cell, m, alpha, power, baseline, icc, min_n) -> dict:
    sizes = cell.groupby("group_value").agg(n=("image_id", "size"), people=("person", "nunique"))
    below = int((sizes["n"] < min_n).sum())
    sizes = sizes[sizes["n"] >= min_n].sort_values(["n", "people"]).head(2)
    if sizes.empty:
        sizes = cell.groupby("group_value").agg(n=("image_id", "size"), people=("person", "nunique")).head(1)
    (a, (n_a, people_a)), (b, (n_b, people_b)) = [(g, tuple(r)) for g, r in sizes.iterrows()] if len(sizes) == 2 \
        else [(sizes.index[0], tuple(sizes.iloc[0]))] * 2
    deff = max(kish_design_effect(n_a, people_a, icc), kish_design_effect(n_b, people_b, icc))
    tested = len(sizes) == 2 and min(n_a, n_b) >= min_n
    ratio = detectable_ratio(n_a / deff, n_b / deff, alpha / m, power, baseline) if tested else float("nan")
    return {"dataset": dataset, "grouping": grouping, "true_emotion": emotion,
            "n_groups": int(cell["group_value"].nunique()), "groups_below_min_n": below,
            "smallest_groups": f"{a} / {b}",
            "n_a": int(n_a), "people_a": int(people_a), "n_b": int(n_b), "people_b": int(people_b),
            "design_effect": round(deff, 3), "family_m": int(m), "alpha_per_test": alpha / m,
            "detectable_ratio": ratio, "below_min_n": not tested}
