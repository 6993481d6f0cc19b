"""Categorical agreement of model answers with the ground-truth emotion, and paired tests
between models.

Statistics come from library code only:

* accuracy + Wilson interval: ``statsmodels.stats.proportion.proportion_confint``;
* macro F1: ``sklearn.metrics.f1_score``; its interval is a seeded percentile bootstrap over
  images (``scipy.stats.bootstrap``, paired resampling of (truth, prediction));
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
import warnings
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import bootstrap
from sklearn.metrics import confusion_matrix, f1_score
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.inter_rater import cohens_kappa
from statsmodels.stats.proportion import proportion_confint

from dagster_project.analysis.inputs import with_race_gender
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


def is_answered(answers: pd.DataFrame) -> pd.Series:
    """Rows that count for agreement: status 'answered' and a non-null predicted emotion."""
    status_ok = answers["answer_status"].eq(ANSWERED) if "answer_status" in answers else True
    return answers["predicted_emotion"].notna() & status_ok


def _subsets(cell: pd.DataFrame, groupings: tuple[str, ...]):
    yield "all", "all", cell
    for grouping in groupings:
        if grouping not in cell.columns:
            continue
        for value, group in cell.groupby(grouping, sort=True, dropna=True):
            yield grouping, str(value), group


# --------------------------------------------------------------------------------------------
# categorical agreement
# --------------------------------------------------------------------------------------------

def categorical_agreement(
    answers: pd.DataFrame,
    *,
    groupings: tuple[str, ...] = ("race", "gender", "race_gender"),
    min_n: int = 10,
    bootstrap_resamples: int = 200,
    seed: int = 0,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Accuracy, macro F1 and Cohen's kappa of predicted vs true emotion.

    One block per (model, model_version, dataset, protocol): overall (subset_kind 'all') and
    per value of each grouping ('race', 'gender', 'race_gender' = f"{race} {gender}").
    Unanswered rows (answer_status != 'answered' or no predicted emotion) are left out of every
    measure; their count is in detail['n_unanswered']. n = answered images.

    CIs: accuracy -- Wilson (statsmodels proportion_confint); macro F1 -- seeded percentile
    bootstrap over images with `bootstrap_resamples` resamples (scipy.stats.bootstrap; null when
    bootstrap_resamples == 0 or n < 2); kappa -- statsmodels' asymptotic Wald 95 % interval
    (kappa +/- 1.96 ASE; statsmodels offers no other level, `alpha` does not
    change it), with statistic/p_value the z test of kappa = 0 (ASE under H0).
    """
    answers = with_race_gender(answers)
    answers["_answered"] = is_answered(answers)
    rows: list[dict[str, Any]] = []
    for keys, cell in answers.groupby(CELL_KEYS, sort=True, dropna=False):
        base = dict(zip(CELL_KEYS, ("" if pd.isna(k) else str(k) for k in keys)))
        for subset_kind, subset, frame in _subsets(cell, groupings):
            rows.extend(_agreement_rows(frame, base, subset_kind, subset, bootstrap_resamples, seed, alpha))
    return result_frame(rows, min_n)


def _agreement_rows(frame, base, subset_kind, subset, resamples, seed, alpha):
    answered = frame[frame["_answered"]]
    truth = answered["true_emotion"].astype(str).to_numpy()
    pred = answered["predicted_emotion"].astype(str).to_numpy()
    n = len(answered)
    common = dict(analysis="categorical_agreement", subset_kind=subset_kind, subset=subset, n=n, **base)
    n_unanswered = int(len(frame) - n)
    labels = sorted(set(truth) | set(pred))
    rows = []

    # accuracy + Wilson interval
    correct = int((truth == pred).sum())
    acc = low = high = np.nan
    if n:
        acc = correct / n
        low, high = proportion_confint(correct, n, alpha=alpha, method="wilson")
    rows.append(result_row(
        **common, measure="accuracy", estimate=acc, ci_low=low, ci_high=high,
        detail=detail_json(correct=correct, n_unanswered=n_unanswered, ci_method="wilson (statsmodels proportion_confint)")))

    # macro F1 over the labels present in truth or prediction, bootstrap percentile CI
    f1 = low = high = np.nan
    ci_method = "none"
    if n:
        codes = {label: i for i, label in enumerate(labels)}
        t = np.array([codes[x] for x in truth])
        p = np.array([codes[x] for x in pred])
        f1 = _macro_f1(t, p)
        if resamples > 0 and n >= 2:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = bootstrap((t, p), _macro_f1, paired=True, vectorized=False, n_resamples=resamples,
                                confidence_level=1 - alpha, method="percentile",
                                rng=np.random.default_rng(seed))
            low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
            ci_method = f"percentile bootstrap over images (scipy.stats.bootstrap, {resamples} resamples, seed {seed})"
    rows.append(result_row(
        **common, measure="macro_f1", estimate=f1, ci_low=low, ci_high=high,
        detail=detail_json(labels=labels, n_unanswered=n_unanswered, ci_method=ci_method,
                       average="macro over labels present in truth or prediction (sklearn f1_score)")))

    # Cohen's kappa, truth and prediction as two raters
    kappa = low = high = z = pval = se = np.nan
    note = None
    if n and len(labels) >= 2:
        table = confusion_matrix(truth, pred, labels=labels)
        with np.errstate(divide="ignore", invalid="ignore"):
            res = cohens_kappa(table)
        kappa, se = float(res.kappa), float(res.std_kappa)
        low, high = float(res.kappa_low), float(res.kappa_upp)
        z, pval = float(res.z_value), float(res.pvalue_two_sided)
    elif n:
        note = "only one label in truth and prediction: chance agreement is 1, kappa undefined"
    rows.append(result_row(
        **common, measure="cohen_kappa", estimate=kappa, ci_low=low, ci_high=high, statistic=z, p_value=pval,
        detail=detail_json(std_error=none_if_nan(se), labels=labels, n_unanswered=n_unanswered, note=note,
                       ci_method="asymptotic Wald 95 % (statsmodels cohens_kappa; fixed at 95 %)",
                       test="z test of kappa = 0 (ASE under H0), two-sided")))
    return rows


def _macro_f1(truth: np.ndarray, pred: np.ndarray) -> float:
    return float(f1_score(truth, pred, average="macro", labels=np.union1d(truth, pred), zero_division=0.0))


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


__all__ = ["categorical_agreement", "is_answered", "mcnemar_between_models", "with_race_gender"]
