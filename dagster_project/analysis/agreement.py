"""Categorical agreement of model answers with the ground-truth emotion, and paired tests
between models.

One home per statistic (issue 9): accuracy and its Wilson interval -- over answered images
and intent-to-treat over every image -- are computed once, in SQL (marts.group_accuracy), and
read here; the demographic groupings are those of intermediate.int_answers_with_groups (dbt
macro unpivot_groupings). What is computed here comes from library code only:

* macro F1 and per-class F1: ``sklearn.metrics.f1_score`` over ONE fixed label set per
  model x dataset x protocol -- the true emotions of the dataset -- for every subset and every
  bootstrap resample (averaging over whatever labels occur in a subset made groups with stray
  predictions look worse). The interval is a seeded percentile bootstrap over images,
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
* McNemar's test between two model versions on the images both answered:
  ``statsmodels.stats.contingency_tables.mcnemar``; Holm (or another ``multipletests`` method)
  within each dataset/protocol family via ``results.adjust_within_families``.

This module only arranges rows into cells and records results (see ``results.py``).
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pandas as pd

from dagster_project.analysis.results import (
    adjust_within_families,
    detail_json,
    none_if_nan,
    result_frame,
    result_row,
)

CELL_KEYS = ["model", "model_version", "dataset", "protocol"]
PAIR_KEYS = ["dataset", "protocol"]
ANSWERED = "answered"
AGREEMENT_EXTRA_COLUMNS = ["emotion"]  # the class of a per-class 'f1' row ('' otherwise)


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
    predicted_emotion, answer_status). `accuracy`: rows of marts.group_accuracy. One block per
    (model, model_version, dataset, protocol): grouping 'all' (subset_kind 'all') and each
    group of each grouping. Unanswered rows are left out of F1 and kappa; n = answered images.

    Measures: 'accuracy' and 'accuracy_itt' (intent-to-treat: unanswered images are errors;
    n = every image) with the mart's Wilson interval; 'macro_f1' over the dataset's labels
    with a bootstrap interval (`bootstrap_resamples` resamples, null when 0 or n < 2); 'f1'
    per class (column `emotion`); 'cohen_kappa' with statsmodels' asymptotic Wald 95 %
    interval (kappa +/- 1.96 ASE; statsmodels offers no other level, `alpha` does not change
    it) and the z test of kappa = 0 (ASE under H0).
    """
    grouped = grouped.assign(_answered=is_answered(grouped))
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
    frame = result_frame(rows, min_n, extra_columns=tuple(AGREEMENT_EXTRA_COLUMNS))
    frame["emotion"] = frame["emotion"].fillna("").astype(str)
    return frame


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
    from sklearn.metrics import confusion_matrix
    from sklearn.metrics import f1_score
    from statsmodels.stats.inter_rater import cohens_kappa
    answered = frame[frame["_answered"]]
    n = len(answered)
    # Integer codes once (hashing, not sorting strings): the dataset's labels are 0..K-1, any
    # other answer K.. -- sklearn then sorts small integers (seconds saved at 100,000 images).
    truth_s, pred_s = answered["true_emotion"].astype(str), answered["predicted_emotion"].astype(str)
    extra = sorted((set(truth_s.unique()) | set(pred_s.unique())) - set(labels))
    index = pd.Index([*labels, *extra])
    truth, pred = index.get_indexer(truth_s), index.get_indexer(pred_s)
    k = len(labels)
    common = dict(analysis="categorical_agreement", subset_kind=subset_kind, subset=subset, n=n, **base)
    n_unanswered = int(len(frame) - n)
    rows = []

    # macro F1 over the fixed labels, bootstrap percentile CI
    f1 = low = high = np.nan
    ci_method = "none"
    per_class = np.full(k, np.nan)
    if n and labels:
        per_class = f1_score(truth, pred, labels=range(k), average=None, zero_division=0.0)
        f1 = float(np.mean(per_class))
        if resamples > 0 and n >= 2:
            counts = confusion_counts(truth, np.where(pred < k, pred, -1), k)
            low, high = bootstrap_f1_interval(counts, resamples, alpha, np.random.default_rng(seed))
            ci_method = (f"percentile bootstrap over images, {resamples} resamples drawn as multinomial "
                         f"confusion counts (numpy), seed {seed}")
    average = "macro over the dataset's true emotions, the same for every subset and resample (sklearn f1_score)"
    rows.append(result_row(
        **common, measure="macro_f1", estimate=f1, ci_low=low, ci_high=high,
        detail=detail_json(labels=labels, n_unanswered=n_unanswered, ci_method=ci_method, average=average)))
    support = np.bincount(truth, minlength=len(index)) if n else np.zeros(len(index), int)
    for code, (label, value) in enumerate(zip(labels, per_class)):
        rows.append({**result_row(**common, measure="f1", estimate=value,
                                  detail=detail_json(support=int(support[code]), labels=labels,
                                                     method="sklearn f1_score(average=None), fixed labels")),
                     "emotion": label})

    # Cohen's kappa, truth and prediction as two raters (extra all-zero labels leave kappa as is)
    kappa_labels = sorted(index)
    kappa = low = high = z = pval = se = np.nan
    note = None
    if n and len(kappa_labels) >= 2:
        table = confusion_matrix(truth, pred, labels=range(len(index)))  # kappa ignores the label order
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


def confusion_counts(truth: np.ndarray, pred: np.ndarray, n_labels: int) -> np.ndarray:
    """Confusion counts along the last axis: shape (..., n_labels, n_labels + 1). Codes are
    0..n_labels-1; a prediction outside the labels (-1) goes to the last column (an error
    for its true class, nobody's false positive), as sklearn's f1_score(labels=...) counts it."""
    truth, pred = np.asarray(truth), np.asarray(pred)
    width = n_labels + 1
    cells = truth * width + np.where(pred < 0, n_labels, pred)
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


def bootstrap_f1_interval(counts: np.ndarray, resamples: int, alpha: float,
                          rng: np.random.Generator) -> tuple[float, float]:
    """Percentile bootstrap interval of macro F1 from one subset's confusion counts.

    Resampling the n images with replacement changes F1 only through the confusion counts,
    which then follow multinomial(n, counts / n): drawing those counts is the same bootstrap
    as drawing images, at a cost that does not grow with n."""
    n = int(counts.sum())
    draws = rng.multinomial(n, counts.ravel() / n, size=resamples).reshape(resamples, *counts.shape)
    low, high = np.quantile(confusion_macro_f1(draws), [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


# --------------------------------------------------------------------------------------------
# McNemar between model versions
# --------------------------------------------------------------------------------------------

def mcnemar_between_models(
    answers: pd.DataFrame,
    *,
    correction: str = "holm",
    min_n: int = 10,
    exact_below: int = 25,
    continuity_correction: bool = True,
    involving: set[tuple[str, str, str]] | None = None,
) -> pd.DataFrame:
    """McNemar's test for every pair of (model, model_version) on the same dataset x protocol.

    `involving` = {(model, model_version, dataset)}: only the pairs with at least one of these
    (the pairs a newly evaluated version adds); None = every pair.

    Images: those both versions answered (joined on image_id). 2x2 table: rows = model a
    correct / incorrect, columns = model b correct / incorrect. The exact binomial test is used
    when the discordant count (b + c) is below `exact_below` (25), else the chi-square test
    (with Edwards' continuity correction when `continuity_correction`, the statsmodels default).

    Orientation / labels: pairs are ordered by (model, model_version); model and model_version
    are those of 'a', subset = "{model_a}/{version_a} vs {model_b}/{version_b}", and detail
    holds model_b, model_version_b and the table. estimate = accuracy(a) - accuracy(b) on the
    shared images (no CI). family = "{dataset}/{protocol}"; p_adjusted by `correction` within it.
    """
    answered = answers[is_answered(answers)].copy()
    answered["_correct"] = answered["true_emotion"].astype(str) == answered["predicted_emotion"].astype(str)
    rows = []
    for (dataset, protocol), cell in answered.groupby(PAIR_KEYS, sort=True, dropna=False):
        dataset = "" if pd.isna(dataset) else str(dataset)
        protocol = "" if pd.isna(protocol) else str(protocol)
        versions = {
            key: frame.drop_duplicates("image_id").set_index("image_id")["_correct"]
            for key, frame in cell.groupby(["model", "model_version"], sort=True)
        }
        for (key_a, correct_a), (key_b, correct_b) in itertools.combinations(sorted(versions.items()), 2):
            if involving is not None and not {(*key_a, dataset), (*key_b, dataset)} & involving:
                continue
            rows.append(_mcnemar_row(dataset, protocol, key_a, correct_a, key_b, correct_b,
                                     exact_below, continuity_correction))
    frame = result_frame(rows, min_n)
    return adjust_within_families(frame, correction)


def _mcnemar_row(dataset, protocol, key_a, correct_a, key_b, correct_b, exact_below, continuity):
    from statsmodels.stats.contingency_tables import mcnemar
    joined = pd.concat([correct_a.rename("a"), correct_b.rename("b")], axis=1, join="inner")
    a, b = joined["a"].to_numpy(bool), joined["b"].to_numpy(bool)
    n = len(joined)
    table = np.array([[np.sum(a & b), np.sum(a & ~b)], [np.sum(~a & b), np.sum(~a & ~b)]], dtype=int)
    discordant = int(table[0, 1] + table[1, 0])
    exact = discordant < exact_below
    stat = pval = estimate = np.nan
    if n:
        res = mcnemar(table, exact=exact, correction=continuity)
        stat, pval = float(res.statistic), float(res.pvalue)
        estimate = float(a.mean() - b.mean())
    method = ("exact binomial (statistic = min(b, c))" if exact else
              "chi-square" + (" with continuity correction" if continuity else " without continuity correction"))
    return result_row(
        analysis="mcnemar_between_models", model=str(key_a[0]), model_version=str(key_a[1]),
        dataset=dataset, protocol=protocol, subset_kind="model_pair",
        subset=f"{key_a[0]}/{key_a[1]} vs {key_b[0]}/{key_b[1]}", measure="mcnemar", n=n,
        estimate=estimate, statistic=stat, p_value=pval, family=f"{dataset}/{protocol}",
        detail=detail_json(model_b=str(key_b[0]), model_version_b=str(key_b[1]), table=table, discordant=discordant,
                       exact=bool(exact), method=method, estimate="accuracy_a - accuracy_b on shared images",
                       accuracy_a=none_if_nan(float(a.mean())) if n else None,
                       accuracy_b=none_if_nan(float(b.mean())) if n else None),
    )


__all__ = ["bootstrap_f1_interval", "categorical_agreement", "confusion_counts", "confusion_macro_f1",
           "fixed_label_f1", "is_answered", "mcnemar_between_models"]
