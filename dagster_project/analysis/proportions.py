"""Pairwise two-proportion z-tests of error rates between groups, multiplicity-adjusted.

* `pairwise_error_ztests`: error-rate differences from marts.group_accuracy (own columns).
* `misclassification_tests`: per-confusion rate ratios from answers (RESULT_COLUMNS shape).

Test statistics come from statsmodels; this module only arranges cells into families and
records the results.
"""

from __future__ import annotations

import itertools
import json

import numpy as np
import pandas as pd
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest

from dagster_project.analysis.inputs import with_race_gender
from dagster_project.analysis.results import (
    RESULT_COLUMNS,
    adjust_within_families,
    result_frame,
    result_row,
)

FAMILY_KEYS = ["model", "model_version", "dataset", "protocol", "grouping", "true_emotion"]

ZTEST_COLUMNS = [
    *FAMILY_KEYS,
    "group_a", "group_b", "n_a", "errors_a", "error_rate_a", "n_b", "errors_b", "error_rate_b",
    "difference", "ci_low", "ci_high", "z", "p_value", "p_adjusted", "correction", "family",
    "family_size", "alpha", "significant", "below_min_n",
]


def pairwise_error_ztests(
    accuracy: pd.DataFrame,
    *,
    groupings: tuple[str, ...] = ("race", "gender", "race_gender"),
    correction: str = "holm",
    alpha: float = 0.05,
    min_n: int = 10,
) -> pd.DataFrame:
    """z-test every pair of groups' error rates within each (model, dataset, grouping, emotion).

    `accuracy` has the columns of marts.group_accuracy (n = answered images, correct).
    One family = all pairs of one (model version, dataset, protocol, grouping, true emotion);
    p-values are adjusted within it by `correction` (a statsmodels multipletests method).
    """
    cells = accuracy[accuracy["grouping"].isin(groupings) & (accuracy["n"] > 0)]
    results = []
    for family_values, family in cells.groupby(FAMILY_KEYS, sort=True):
        rows = [_pair_test(a, b) for a, b in itertools.combinations(
            family.sort_values("group_value").itertuples(index=False), 2)]
        if not rows:
            continue
        frame = pd.DataFrame(rows)
        for key, value in zip(FAMILY_KEYS, family_values):
            frame[key] = value
        frame["family"] = "/".join(str(v) for v in family_values)
        frame["family_size"] = len(frame)
        frame["correction"] = correction
        frame["alpha"] = alpha
        testable = frame["p_value"].notna()
        frame["p_adjusted"] = np.nan
        if testable.any():
            reject, adjusted, _, _ = multipletests(frame.loc[testable, "p_value"], alpha=alpha, method=correction)
            frame.loc[testable, "p_adjusted"] = adjusted
        frame["significant"] = frame["p_adjusted"] < alpha
        frame["below_min_n"] = (frame["n_a"] < min_n) | (frame["n_b"] < min_n)
        results.append(frame)
    if not results:
        return pd.DataFrame(columns=ZTEST_COLUMNS)
    return pd.concat(results, ignore_index=True)[ZTEST_COLUMNS]


def _pair_test(a, b) -> dict:
    errors_a, errors_b = int(a.n - a.correct), int(b.n - b.correct)
    n_a, n_b = int(a.n), int(b.n)
    z = p = low = high = np.nan
    # Both groups error-free (or both always wrong): the pooled variance is 0, no test exists.
    if 0 < errors_a + errors_b < n_a + n_b:
        z, p = proportions_ztest([errors_a, errors_b], [n_a, n_b])
        low, high = confint_proportions_2indep(errors_a, n_a, errors_b, n_b, method="wald", compare="diff")
    return {
        "group_a": a.group_value,
        "group_b": b.group_value,
        "n_a": n_a,
        "errors_a": errors_a,
        "error_rate_a": errors_a / n_a,
        "n_b": n_b,
        "errors_b": errors_b,
        "error_rate_b": errors_b / n_b,
        "difference": errors_a / n_a - errors_b / n_b,
        "ci_low": float(low),
        "ci_high": float(high),
        "z": float(z),
        "p_value": float(p),
    }


# --------------------------------------------------------------------------------------------
# Misclassification rate ratios between groups (Chhua et al.: "anger read as disgust 2.1x more
# often for Black women than White women"), in the common RESULT_COLUMNS shape.
# --------------------------------------------------------------------------------------------

MODEL_KEYS = ["model", "model_version", "dataset", "protocol"]
POOLED_ERROR = "error"   # predicted_emotion label of the pooled "any misclassification" test
ALL_EMOTIONS = "all"     # true_emotion label of the overall (all emotions pooled) family

MISCLASSIFICATION_EXTRA_COLUMNS = [
    "true_emotion", "predicted_emotion", "group_a", "group_b",
    "n_a", "count_a", "rate_a", "n_b", "count_b", "rate_b",
]


def misclassification_tests(
    answers: pd.DataFrame,
    *,
    groupings: tuple[str, ...] = ("race", "gender", "race_gender"),
    corrections: tuple[str, ...] = ("holm", "fdr_bh"),
    min_n: int = 10,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Rate ratio and two-proportion z-test of every misclassification between every pair of groups.

    `answers` has one row per (model, model_version, dataset, protocol, image_id) with identity,
    race, gender, true_emotion, predicted_emotion and answer_status. Only answered images count
    (answer_status == 'answered' and a predicted emotion): the denominator of a rate is the
    answered images of that group with that true emotion.

    For each model x version x dataset x protocol, grouping ('race', 'gender', 'race_gender' =
    "<race> <gender>") and true emotion, one row per pair of groups (a < b, sorted) and outcome:

    * each predicted emotion != true emotion that occurs at least once (e.g. anger -> disgust);
    * predicted_emotion = 'error': any misclassification of that true emotion;
    * true_emotion = 'all', predicted_emotion = 'error': any misclassification, emotions pooled.

    Columns (RESULT_COLUMNS, analysis='misclassification', measure='rate_ratio'):

    * subset_kind = grouping, subset = "group_a vs group_b";
    * estimate = rate_a / rate_b (NaN when rate_b = 0; 0 when only rate_a = 0);
    * ci_low/ci_high = statsmodels confint_proportions_2indep(compare='ratio', method='log')
      (Katz log interval; NaN when either count is 0, where it is undefined);
    * statistic/p_value = statsmodels proportions_ztest, the pooled two-proportion z-test that
      Chhua et al. report (z > 0: group a misclassified more often). NaN when the pooled rate is
      0 or 1. The z-test is on the difference while the interval is on the ratio, so near
      p = 0.05 they can disagree on "significant";
    * n = n_a + n_b; below_min_n is True when EITHER group has fewer than `min_n` images;
    * family = model/model_version/dataset/protocol/grouping/true_emotion: all pairs and all
      outcomes (each confusion and the pooled 'error') of one true emotion are adjusted together;
    * p_adjusted / correction = the FIRST of `corrections` (statsmodels multipletests within
      family); every further correction gets an extra column ``p_adjusted_<method>`` (by default
      ``p_adjusted_fdr_bh``).

    Extra columns after RESULT_COLUMNS: MISCLASSIFICATION_EXTRA_COLUMNS, then the
    ``p_adjusted_<method>`` columns. detail (JSON) repeats the counts and names the methods.
    """
    if not corrections:
        raise ValueError("corrections needs at least one multipletests method")
    extra_p = [f"p_adjusted_{method}" for method in corrections[1:]]
    columns = [*RESULT_COLUMNS, *MISCLASSIFICATION_EXTRA_COLUMNS, *extra_p]

    answered = answers[
        (answers["answer_status"] == "answered")
        & answers["predicted_emotion"].notna()
        & answers["true_emotion"].notna()
    ].copy()
    answered[MODEL_KEYS] = answered[MODEL_KEYS].fillna("")
    if "race_gender" in groupings:
        answered = with_race_gender(answered)
    wrong_mask = answered["predicted_emotion"] != answered["true_emotion"]

    rows: list[dict] = []
    for grouping in groupings:
        # Count every cell once: images per (unit, true emotion, group) and confusions per
        # (unit, true emotion, group, predicted emotion); families are then read off the counts.
        data = answered[answered[grouping].notna()]
        wrong = data[wrong_mask[data.index]]
        unit_group = [*MODEL_KEYS, grouping]
        n_all = data.groupby(unit_group).size()
        errors_all = wrong.groupby(unit_group).size().to_dict()
        n_emotion = data.groupby([*MODEL_KEYS, "true_emotion", grouping]).size()
        confusions = wrong.groupby([*MODEL_KEYS, "true_emotion", grouping, "predicted_emotion"]).size()
        confusion_counts = confusions.to_dict()
        labels_by_family: dict[tuple, set] = {}
        for key in confusion_counts:
            labels_by_family.setdefault(key[:5], set()).add(key[6])
        for unit, n in _by_prefix(n_all.to_dict(), 4):
            # Overall family: any misclassification, all emotions pooled.
            errors = {g: errors_all.get((*unit, g), 0) for g in n}
            rows += _misclassification_family(unit, grouping, ALL_EMOTIONS, n, {POOLED_ERROR: errors}, alpha)
        for family_key, n in _by_prefix(n_emotion.to_dict(), 5):
            outcomes = {
                str(label): {g: confusion_counts.get((*family_key, g, label), 0) for g in n}
                for label in sorted(labels_by_family.get(family_key, ()), key=str)
            }
            outcomes[POOLED_ERROR] = {g: sum(counts[g] for counts in outcomes.values()) for g in n}
            rows += _misclassification_family(family_key[:4], grouping, family_key[4], n, outcomes, alpha)

    if not rows:
        return pd.DataFrame({col: pd.Series(dtype=object) for col in columns})
    frame = result_frame([{k: r[k] for k in RESULT_COLUMNS} for r in rows], min_n)
    extras = pd.DataFrame([{k: r[k] for k in MISCLASSIFICATION_EXTRA_COLUMNS} for r in rows], index=frame.index)
    frame = pd.concat([frame, extras], axis=1)
    frame["below_min_n"] = (frame["n_a"] < min_n) | (frame["n_b"] < min_n)
    for method, column in zip(corrections[1:], extra_p):
        frame[column] = adjust_within_families(frame[RESULT_COLUMNS], method, alpha)["p_adjusted"]
    frame = adjust_within_families(frame, corrections[0], alpha)
    return frame[columns]


def _by_prefix(counts: dict[tuple, int], width: int):
    """{(k1..kw, group): n} -> sorted [((k1..kw), {group: n})]."""
    out: dict[tuple, dict] = {}
    for key, value in counts.items():
        out.setdefault(key[:width], {})[key[width]] = int(value)
    return sorted(out.items(), key=lambda item: tuple(str(k) for k in item[0]))


def _misclassification_family(unit_keys, grouping, true_emotion, n: dict, outcomes: dict, alpha) -> list[dict]:
    """All pairs x outcomes of one family; n = {group: images}, outcomes = {label: {group: count}}."""
    model, version, dataset, protocol = unit_keys
    family = "/".join(str(v) for v in (model, version, dataset, protocol, grouping, true_emotion))
    groups = sorted(n, key=str)
    rows = []
    for predicted, counts in outcomes.items():
        for a, b in itertools.combinations(groups, 2):
            test = _rate_ratio_test(int(counts[a]), int(n[a]), int(counts[b]), int(n[b]))
            rows.append({
                **result_row(
                    analysis="misclassification", model=model, model_version=version, dataset=dataset,
                    protocol=protocol, subset_kind=grouping, subset=f"{a} vs {b}", measure="rate_ratio",
                    n=int(n[a]) + int(n[b]), estimate=test["ratio"], ci_low=test["ci_low"],
                    ci_high=test["ci_high"], statistic=test["z"], p_value=test["p"], family=family,
                    detail=json.dumps({
                        "true_emotion": str(true_emotion), "predicted_emotion": predicted,
                        "group_a": str(a), "group_b": str(b),
                        "count_a": test["count_a"], "n_a": test["n_a"], "count_b": test["count_b"], "n_b": test["n_b"],
                        "rate_difference": test["rate_a"] - test["rate_b"],
                        "test": "statsmodels proportions_ztest (pooled two-proportion z; z > 0: a higher)",
                        "ci_method": "statsmodels confint_proportions_2indep(compare='ratio', method='log')",
                        "alpha": alpha, "note": test["note"],
                    }),
                ),
                "true_emotion": str(true_emotion), "predicted_emotion": predicted,
                "group_a": str(a), "group_b": str(b), **{k: test[k] for k in
                ("n_a", "count_a", "rate_a", "n_b", "count_b", "rate_b")},
            })
    return rows


def _rate_ratio_test(count_a: int, n_a: int, count_b: int, n_b: int, alpha: float = 0.05) -> dict:
    rate_a, rate_b = count_a / n_a, count_b / n_b
    ratio = rate_a / rate_b if rate_b > 0 else np.nan
    z = p = low = high = np.nan
    notes = []
    # Pooled rate 0 or 1: the pooled variance is 0 and no z-test exists.
    if 0 < count_a + count_b < n_a + n_b:
        z, p = proportions_ztest([count_a, count_b], [n_a, n_b])
    else:
        notes.append("no test: pooled rate is 0 or 1")
    # The log (Katz) interval needs both counts > 0 (statsmodels divides by them).
    if count_a > 0 and count_b > 0:
        low, high = confint_proportions_2indep(count_a, n_a, count_b, n_b, compare="ratio", method="log", alpha=alpha)
    else:
        notes.append("no ratio interval: a count is 0")
    if rate_b == 0:
        notes.append("ratio undefined: rate_b is 0")
    return {
        "count_a": count_a, "n_a": n_a, "rate_a": rate_a, "count_b": count_b, "n_b": n_b, "rate_b": rate_b,
        "ratio": ratio, "ci_low": float(low), "ci_high": float(high), "z": float(z), "p": float(p),
        "note": "; ".join(notes),
    }
