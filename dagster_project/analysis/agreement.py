"""Categorical agreement of model answers with the ground-truth emotion, and paired tests
between models.

One home per statistic (issue 9): accuracy and its Wilson interval -- over answered images
and intent-to-treat over every image -- are computed once, in SQL (marts.group_accuracy), and
read here; the demographic groupings are those of intermediate.int_answers_with_groups (dbt
macro unpivot_groupings). What is computed here comes from library code only:

* macro F1 and per-class F1: ``sklearn.metrics.f1_score`` over the classes present in the
  subset's truth (its `class_set`), held fixed in every bootstrap resample; predicted labels
  outside it are errors, never classes (averaging over whatever labels occur made groups with
  stray predictions look worse; averaging over the dataset's classes scored a class the group
  lacks as 0: a perfect all-neutral group 0.25). Groups are compared (`macro_f1_gaps`) only
  where their class sets match. Balanced accuracy (``sklearn.metrics.balanced_accuracy_score``,
  mean recall over the same classes) beside it. The interval is a seeded percentile bootstrap over images,
  drawn as confusion counts: F1 depends on a resample only through its (truth, prediction)
  counts, and resampling n images with replacement gives those counts a multinomial(n,
  observed cell shares) law, so ``numpy.random.Generator.multinomial`` draws every resample's
  confusion matrix at once (cost independent of n; at 100,000 images the per-image bootstrap
  took seconds per subset). Each resample's F1 comes from its counts (`confusion_macro_f1`,
  tested equal to sklearn's ``f1_score``); the interval is the resamples' alpha/2 and
  1 - alpha/2 quantiles (``numpy.quantile``, the percentile method);
* Cohen's kappa (truth and prediction as two raters): ``statsmodels.stats.inter_rater.cohens_kappa``
  on the ``sklearn.metrics.confusion_matrix`` -- kappa, its asymptotic standard error and Wald
  95 % interval, and the z test of kappa = 0;
* McNemar's test between model versions: ``mcnemar.py``.

This module only arranges rows into cells and records results (see ``results.py``).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd

from dagster_project.analysis.results import (
    detail_json,
    none_if_nan,
    result_frame,
    result_row,
)

CELL_KEYS = ["model", "model_version", "dataset", "protocol"]
PAIR_KEYS = ["dataset", "protocol"]
ANSWERED = "answered"
# emotion: the class of a per-class 'f1' row; class_set: the classes present in the subset's truth
# that macro F1 / balanced accuracy average over ('' on other rows).
AGREEMENT_EXTRA_COLUMNS = ["emotion", "class_set"]


def is_answered(answers: pd.DataFrame) -> pd.Series:
    """Rows that count for agreement: status 'answered' and a non-null predicted emotion."""
    status_ok = answers["answer_status"].eq(ANSWERED) if "answer_status" in answers else True
    return answers["predicted_emotion"].notna() & status_ok


# --------------------------------------------------------------------------------------------
# categorical agreement
# --------------------------------------------------------------------------------------------

def categorical_agreement(
    grouped: pd.DataFrame,
    accuracy: pd.DataFrame,
    *,
    min_n: int = 10,
    bootstrap_resamples: int = 200,
    seed: int = 0,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Accuracy (read from the mart), macro and per-class F1 and Cohen's kappa.

    `grouped`: rows of intermediate.int_answers_with_groups (one per answer and grouping:
    model, model_version, dataset, protocol, image_id, grouping, group_value, true_emotion,
    predicted_emotion, answer_status), or those rows counted (inputs.GROUPED_COUNTS_SQL: no
    image_id, and `n_answers`, the rows each one stands for). Every measure depends on the
    answers only through these counts (sklearn's sample_weight; the same values to the bit,
    tests/test_stats_agreement.py), and at 10^7 answers the counts are ~10^4 rows.
    `accuracy`: rows of marts.group_accuracy. One block per
    (model, model_version, dataset, protocol): grouping 'all' (subset_kind 'all') and each
    group of each grouping. Unanswered rows are left out of F1 and kappa; n = answered images.

    Measures: 'accuracy' and 'accuracy_itt' (intent-to-treat: unanswered images are errors;
    n = every image) with the mart's Wilson interval; 'macro_f1' and 'balanced_accuracy' over
    the classes present in the subset's truth (column `class_set`), each with a bootstrap
    interval (`bootstrap_resamples` resamples, null when 0 or n < 2); 'f1' per class of the
    dataset (column `emotion`; null for a class absent from the subset); 'macro_f1_gap' per
    grouping and class set (`macro_f1_gaps`): groups compared only where their class sets
    match; 'cohen_kappa' with statsmodels' asymptotic Wald 95 %
    interval (kappa +/- 1.96 ASE; statsmodels offers no other level, `alpha` does not change
    it) and the z test of kappa = 0 (ASE under H0).
    """
    grouped = grouped.assign(_answered=is_answered(grouped),
                             _weight=grouped["n_answers"] if "n_answers" in grouped else 1)
    marts = _accuracy_lookup(accuracy)
    rows: list[dict[str, Any]] = []
    for keys, cell in grouped.groupby(CELL_KEYS, sort=True, dropna=False):
        base = dict(zip(CELL_KEYS, ("" if pd.isna(k) else str(k) for k in keys)))
        everyone = cell[cell["grouping"] == "all"]
        labels = sorted(everyone["true_emotion"].dropna().astype(str).unique())
        for (grouping, value), frame in cell.groupby(["grouping", "group_value"], sort=True, dropna=True):
            subset_kind, subset = ("all", "all") if grouping == "all" else (str(grouping), str(value))
            mart = marts.get((*base.values(), str(grouping), str(value)))
            rows.extend(_accuracy_rows(mart, base, subset_kind, subset))
            rows.extend(_agreement_rows(frame, labels, base, subset_kind, subset, bootstrap_resamples, seed, alpha))
    rows.extend(macro_f1_gaps(rows))
    frame = result_frame(rows, min_n, extra_columns=tuple(AGREEMENT_EXTRA_COLUMNS))
    for column in AGREEMENT_EXTRA_COLUMNS:
        frame[column] = frame[column].fillna("").astype(str)
    return frame


def macro_f1_gaps(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per slice x grouping x class set: the macro F1 of the best group minus the worst, among the
    groups whose truth holds the same classes (a macro average over other classes is another
    quantity: an all-neutral group against a six-emotion one says nothing about bias). Groups
    alone with their class set are listed in the detail, not compared. No interval or test:
    each group's bootstrap interval is on its own macro_f1 row."""
    scored = pd.DataFrame([r for r in rows if r["measure"] == "macro_f1" and r["subset_kind"] != "all"
                           and r["estimate"] is not None and not np.isnan(r["estimate"])])
    out: list[dict[str, Any]] = []
    if scored.empty:
        return out
    for keys, grouping in scored.groupby([*CELL_KEYS, "subset_kind"], sort=True):
        sets = grouping.groupby("class_set", sort=True)
        alone = {class_set: list(part["subset"]) for class_set, part in sets if len(part) < 2}
        for class_set, part in sets:
            if len(part) < 2:
                continue
            best, worst = part.loc[part["estimate"].idxmax()], part.loc[part["estimate"].idxmin()]
            out.append({**result_row(
                analysis="categorical_agreement", **dict(zip(CELL_KEYS, keys[:-1])), subset_kind=keys[-1],
                subset=f"{best['subset']} vs {worst['subset']}", measure="macro_f1_gap",
                n=int(best["n"]) + int(worst["n"]), estimate=float(best["estimate"] - worst["estimate"]),
                detail=detail_json(class_set=class_set.split(","), groups=dict(zip(part["subset"], part["estimate"])),
                                   not_compared_other_class_sets=alone,
                                   estimate="macro F1 of the best group minus the worst, same class set",
                                   interval="none: see each group's macro_f1 row")),
                "class_set": class_set})
    return out


def _accuracy_lookup(accuracy: pd.DataFrame) -> dict[tuple, Any]:
    pooled = accuracy[accuracy["true_emotion"] == "all"]
    keys = [*CELL_KEYS, "grouping", "group_value"]
    return {tuple(str(v) for v in row[:len(keys)]): row
            for row in pooled[[*keys, "n_images", "n_answered", "correct", "accuracy", "ci_low", "ci_high",
                               "accuracy_itt", "itt_ci_low", "itt_ci_high"]].itertuples(index=False)}


def _accuracy_rows(mart, base, subset_kind, subset) -> list[dict]:
    common = dict(analysis="categorical_agreement", subset_kind=subset_kind, subset=subset, **base)
    if mart is None:  # the mart lags the answers (not yet rebuilt): say so, do not recompute
        note = detail_json(note="no marts.group_accuracy row for this subset")
        return [result_row(**common, measure=m, detail=note) for m in ("accuracy", "accuracy_itt")]
    source = "marts.group_accuracy (Wilson score interval, dbt macro wilson_interval)"
    unanswered = int(mart.n_images - mart.n_answered)
    return [
        result_row(**common, measure="accuracy", n=int(mart.n_answered), estimate=mart.accuracy,
                   ci_low=mart.ci_low, ci_high=mart.ci_high,
                   detail=detail_json(correct=int(mart.correct), n_unanswered=unanswered, ci_method=source,
                                      denominator="answered images")),
        result_row(**common, measure="accuracy_itt", n=int(mart.n_images), estimate=mart.accuracy_itt,
                   ci_low=mart.itt_ci_low, ci_high=mart.itt_ci_high,
                   detail=detail_json(correct=int(mart.correct), n_unanswered=unanswered, ci_method=source,
                                      denominator="every image: no face, refusals, unparsable answers and ties "
                                                  "count as errors (intent-to-treat)")),
    ]


def _agreement_rows(frame, labels, base, subset_kind, subset, resamples, seed, alpha):
    from sklearn.metrics import balanced_accuracy_score, confusion_matrix, f1_score
    from statsmodels.stats.inter_rater import cohens_kappa
    answered = frame[frame["_answered"]]
    weight = answered["_weight"].to_numpy(np.int64)  # the answers each row stands for
    n = int(weight.sum())
    # The classes present in this subset's truth come first (codes 0..K-1): macro F1 and balanced
    # accuracy average over them only. A class with no image in the group (Chicago Face targets with
    # neutral faces only) has no F1 to average: scoring it 0 made a perfect all-neutral group 0.25.
    # Any other answer gets a code K.. (an error for its true class, nobody's false positive).
    # Integer codes once (hashing, not sorting strings): sklearn then sorts small integers.
    truth_s, pred_s = answered["true_emotion"].astype(str), answered["predicted_emotion"].astype(str)
    present = sorted(set(truth_s.unique()))
    extra = sorted(set(pred_s.unique()) - set(present))
    index = pd.Index([*present, *extra])
    truth, pred = index.get_indexer(truth_s), index.get_indexer(pred_s)
    k = len(present)
    class_set = ",".join(present)
    common = dict(analysis="categorical_agreement", subset_kind=subset_kind, subset=subset, n=n, **base)
    n_unanswered = int(frame["_weight"].sum() - n)
    rows = []

    # macro F1 and balanced accuracy over the classes present, bootstrap percentile CIs
    f1 = balanced = np.nan
    intervals = {"macro_f1": (np.nan, np.nan), "balanced_accuracy": (np.nan, np.nan)}
    ci_method = "none"
    per_class = np.full(k, np.nan)
    if n:
        per_class = f1_score(truth, pred, labels=range(k), average=None, zero_division=0.0, sample_weight=weight)
        f1 = float(np.mean(per_class))
        with warnings.catch_warnings():  # "y_pred contains classes not in y_true": errors, as intended
            warnings.simplefilter("ignore", UserWarning)
            balanced = float(balanced_accuracy_score(truth, pred, sample_weight=weight))
        if resamples > 0 and n >= 2:
            counts = confusion_counts(truth, np.where(pred < k, pred, -1), k, weight)
            intervals = bootstrap_count_intervals(counts, resamples, alpha, np.random.default_rng(seed))
            ci_method = (f"percentile bootstrap over images, {resamples} resamples drawn as multinomial "
                         f"confusion counts (numpy), seed {seed}; the class set held fixed")
    classes = dict(labels=present, class_set=class_set, dataset_labels=labels,
                   absent_classes=[label for label in labels if label not in present])
    for measure, estimate, average in (
            ("macro_f1", f1, "macro over the classes present in this subset's truth (sklearn f1_score); "
                             "compare groups only where class_set matches"),
            ("balanced_accuracy", balanced, "mean recall over the classes present in this subset's truth "
                                            "(sklearn balanced_accuracy_score)")):
        low, high = intervals[measure]
        rows.append({**result_row(**common, measure=measure, estimate=estimate, ci_low=low, ci_high=high,
                                  detail=detail_json(**classes, n_unanswered=n_unanswered, ci_method=ci_method,
                                                     average=average)),
                     "class_set": class_set})
    support = _counted(np.bincount(truth, weight, minlength=len(index))) if n else np.zeros(len(index), int)
    for label in labels:
        code = present.index(label) if label in present else None
        note = None if code is not None else "no image of this class in the subset's truth: F1 undefined"
        rows.append({**result_row(**common, measure="f1", estimate=per_class[code] if code is not None else np.nan,
                                  detail=detail_json(support=int(support[code]) if code is not None else 0,
                                                     labels=present, note=note,
                                                     method="sklearn f1_score(average=None), classes present")),
                     "emotion": label, "class_set": class_set})

    # Cohen's kappa, truth and prediction as two raters (extra all-zero labels leave kappa as is)
    kappa_labels = sorted(index)
    kappa = low = high = z = pval = se = np.nan
    note = None
    if n and len(kappa_labels) >= 2:
        # kappa ignores the label order
        table = _counted(confusion_matrix(truth, pred, labels=range(len(index)), sample_weight=weight))
        with np.errstate(divide="ignore", invalid="ignore"):
            res = cohens_kappa(table)
        kappa, se = float(res.kappa), float(res.std_kappa)
        low, high = float(res.kappa_low), float(res.kappa_upp)
        z, pval = float(res.z_value), float(res.pvalue_two_sided)
    elif n:
        note = "only one label in truth and prediction: chance agreement is 1, kappa undefined"
    rows.append(result_row(
        **common, measure="cohen_kappa", estimate=kappa, ci_low=low, ci_high=high, statistic=z, p_value=pval,
        detail=detail_json(std_error=none_if_nan(se), labels=kappa_labels, n_unanswered=n_unanswered, note=note,
                           ci_method="asymptotic Wald 95 % (statsmodels cohens_kappa; fixed at 95 %)",
                           test="z test of kappa = 0 (ASE under H0), two-sided")))
    return rows


def _counted(weighted: np.ndarray) -> np.ndarray:
    """Sums of integer weights (float64, exact) as the integer counts they are."""
    return np.rint(weighted).astype(np.int64)


def confusion_counts(truth: np.ndarray, pred: np.ndarray, n_labels: int, weights: np.ndarray | None = None
                     ) -> np.ndarray:
    """Confusion counts along the last axis: shape (..., n_labels, n_labels + 1). Codes are
    0..n_labels-1; a prediction outside the labels (-1) goes to the last column (an error
    for its true class, nobody's false positive), as sklearn's f1_score(labels=...) counts it.
    `weights` (1-D): the answers each pair of codes stands for (default one)."""
    truth, pred = np.asarray(truth), np.asarray(pred)
    width = n_labels + 1
    cells = truth * width + np.where(pred < 0, n_labels, pred)
    if weights is not None:
        return _counted(np.bincount(cells, weights, minlength=n_labels * width)).reshape(n_labels, width)
    lead = cells.shape[:-1]
    flat = cells.reshape(-1, cells.shape[-1]) + (np.arange(int(np.prod(lead)))[:, None] * n_labels * width)
    counts = np.bincount(flat.ravel(), minlength=flat.shape[0] * n_labels * width)
    return counts.reshape(*lead, n_labels, width)


def confusion_macro_f1(counts: np.ndarray) -> np.ndarray:
    """Macro F1 over the n_labels classes of confusion counts (..., n_labels, n_labels + 1):
    per class 2 tp / (2 tp + fp + fn) (0 when a class is neither true nor predicted, sklearn's
    zero_division=0), averaged. Equal to sklearn's f1_score(labels=..., average='macro')."""
    n_labels = counts.shape[-2]
    tp = np.diagonal(counts[..., :n_labels], axis1=-2, axis2=-1)
    denominator = counts.sum(axis=-1) + counts[..., :n_labels].sum(axis=-2)  # true k + predicted k
    f1 = np.divide(2.0 * tp, denominator, out=np.zeros(tp.shape, float), where=denominator > 0)
    return f1.mean(axis=-1)


def fixed_label_f1(truth: np.ndarray, pred: np.ndarray, n_labels: int, axis: int = -1) -> np.ndarray:
    """Macro F1 over labels 0..n_labels-1 of integer-coded arrays along `axis` (codes outside
    the labels count only as errors) -- sklearn's f1_score(labels=range(n_labels),
    average='macro', zero_division=0), from confusion counts."""
    truth, pred = np.moveaxis(np.asarray(truth), axis, -1), np.moveaxis(np.asarray(pred), axis, -1)
    return confusion_macro_f1(confusion_counts(truth, pred, n_labels))


def confusion_balanced_accuracy(counts: np.ndarray) -> np.ndarray:
    """Mean recall over the classes with at least one true image, from confusion counts
    (..., n_labels, n_labels + 1): sklearn's balanced_accuracy_score over those classes."""
    n_labels = counts.shape[-2]
    tp = np.diagonal(counts[..., :n_labels], axis1=-2, axis2=-1)
    support = counts.sum(axis=-1)
    recall = np.divide(tp, support, out=np.zeros(tp.shape, float), where=support > 0)
    return recall.sum(axis=-1) / np.maximum((support > 0).sum(axis=-1), 1)


def bootstrap_count_intervals(counts: np.ndarray, resamples: int, alpha: float,
                              rng: np.random.Generator) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap intervals of macro F1 and balanced accuracy from one subset's
    confusion counts (one set of resamples for both).

    Resampling the n images with replacement changes either statistic only through the
    confusion counts, which then follow multinomial(n, counts / n): drawing those counts is the
    same bootstrap as drawing images, at a cost that does not grow with n."""
    n = int(counts.sum())
    draws = rng.multinomial(n, counts.ravel() / n, size=resamples).reshape(resamples, *counts.shape)
    out = {}
    for name, statistic in (("macro_f1", confusion_macro_f1), ("balanced_accuracy", confusion_balanced_accuracy)):
        low, high = np.quantile(statistic(draws), [alpha / 2, 1 - alpha / 2])
        out[name] = (float(low), float(high))
    return out


def bootstrap_f1_interval(counts: np.ndarray, resamples: int, alpha: float,
                          rng: np.random.Generator) -> tuple[float, float]:
    """Percentile bootstrap interval of macro F1 (bootstrap_count_intervals)."""
    return bootstrap_count_intervals(counts, resamples, alpha, rng)["macro_f1"]


# --------------------------------------------------------------------------------------------
# McNemar between model versions
# --------------------------------------------------------------------------------------------

__all__ = ["bootstrap_count_intervals", "bootstrap_f1_interval", "categorical_agreement", "confusion_balanced_accuracy",
           "confusion_counts", "confusion_macro_f1", "fixed_label_f1", "is_answered", "macro_f1_gaps"]
