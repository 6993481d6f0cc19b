"""Mart-shaped frames for the statistics tests, built from answer rows with pandas and
statsmodels (the dbt marts compute the same in SQL; tests/test_dbt_project.py checks that).

The statistics read their counts and Wilson / Katz intervals from the marts (issue 9: one
home per statistic), so a test of a statistic first builds the mart rows it reads.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
from statsmodels.stats.proportion import confint_proportions_2indep, proportion_confint

UNIT = ["model", "model_version", "dataset", "protocol"]


def grouped_answers(answers: pd.DataFrame, groupings=("race", "gender", "race_gender")) -> pd.DataFrame:
    """Wide answers -> int_answers_with_groups rows: 'all' plus one row per grouping."""
    parts = [answers.assign(grouping="all", group_value="all")]
    for grouping in groupings:
        if grouping == "race_gender":
            both = answers[answers["race"].notna() & answers["gender"].notna()]
            parts.append(both.assign(grouping=grouping, group_value=both["race"] + " " + both["gender"]))
        else:
            parts.append(answers[answers[grouping].notna()].assign(grouping=grouping,
                                                                   group_value=lambda f, g=grouping: f[g]))
    out = pd.concat(parts, ignore_index=True)
    out["is_answered"] = (out["answer_status"] == "answered") & out["predicted_emotion"].notna()
    out["is_correct"] = out["is_answered"] & (out["predicted_emotion"] == out["true_emotion"])
    return out


def group_accuracy(grouped: pd.DataFrame) -> pd.DataFrame:
    """marts.group_accuracy: counts, accuracy and intent-to-treat accuracy with Wilson intervals."""
    keys = [*UNIT, "grouping", "group_value"]
    agg = dict(n_images=("image_id", "size"), n_answered=("is_answered", "sum"), correct=("is_correct", "sum"))
    per = grouped.groupby([*keys, "true_emotion"]).agg(**agg).reset_index()
    pooled = grouped.groupby(keys).agg(**agg).reset_index().assign(true_emotion="all")
    out = pd.concat([per, pooled], ignore_index=True)
    out["n"] = out["n_answered"]
    answered = out["n_answered"] > 0
    out["accuracy"] = np.where(answered, out["correct"] / out["n_answered"].where(answered, 1), np.nan)
    low, high = proportion_confint(out["correct"], out["n_answered"].where(answered, 1), method="wilson")
    out["ci_low"], out["ci_high"] = np.where(answered, low, np.nan), np.where(answered, high, np.nan)
    out["accuracy_itt"] = out["correct"] / out["n_images"]
    out["itt_ci_low"], out["itt_ci_high"] = proportion_confint(out["correct"], out["n_images"], method="wilson")
    return out


def misclassification_ratios(grouped: pd.DataFrame, vocabulary: dict[str, list[str]] | None = None) -> pd.DataFrame:
    """marts.misclassification_ratios: both orientations of every pair, each wrong emotion of
    the vocabulary (default: the emotions answered in the unit), 'error' and true_emotion
    'all', with statsmodels' Katz log interval."""
    answered = grouped[grouped["is_answered"] & (grouped["grouping"] != "all")]
    rows = []
    for unit, data in answered.groupby(UNIT, sort=True):
        vocab = sorted((vocabulary or {}).get(unit[0], data["predicted_emotion"].unique()))
        for grouping, by_grouping in data.groupby("grouping"):
            cells = {}
            for (true, group), cell in by_grouping.groupby(["true_emotion", "group_value"]):
                wrong = cell[cell["predicted_emotion"] != true]
                cells[(true, group)] = (len(cell), {**{e: int((wrong["predicted_emotion"] == e).sum())
                                                       for e in vocab if e != true}, "error": len(wrong)})
            for group, cell in by_grouping.groupby("group_value"):
                cells[("all", group)] = (len(cell), {"error": int((cell["predicted_emotion"] != cell["true_emotion"]).sum())})
            for (true_a, a), (true_b, b) in itertools.permutations(cells, 2):
                if true_a != true_b:
                    continue
                (n_a, counts_a), (n_b, counts_b) = cells[(true_a, a)], cells[(true_b, b)]
                for outcome in counts_a:
                    rows.append(_ratio_row(unit, grouping, true_a, outcome, a, b, n_a, counts_a[outcome], n_b,
                                           counts_b[outcome]))
    return pd.DataFrame(rows, columns=[*UNIT, "grouping", "true_emotion", "predicted_emotion", "group_a", "group_b",
                                       "n_a", "count_a", "rate_a", "n_b", "count_b", "rate_b", "ratio",
                                       "ci_low", "ci_high"])


def _ratio_row(unit, grouping, true, outcome, a, b, n_a, count_a, n_b, count_b) -> dict:
    low = high = np.nan
    if count_a > 0 and count_b > 0:
        low, high = confint_proportions_2indep(count_a, n_a, count_b, n_b, compare="ratio", method="log")
    rate_a, rate_b = count_a / n_a, count_b / n_b
    return {**dict(zip(UNIT, unit)), "grouping": grouping, "true_emotion": true, "predicted_emotion": outcome,
            "group_a": a, "group_b": b, "n_a": n_a, "count_a": count_a, "rate_a": rate_a, "n_b": n_b,
            "count_b": count_b, "rate_b": rate_b, "ratio": rate_a / rate_b if count_b else np.nan,
            "ci_low": low, "ci_high": high}
