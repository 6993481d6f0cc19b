"""Categorical agreement and McNemar tests, checked against published worked examples."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest
from sklearn.metrics import cohen_kappa_score, f1_score
from statsmodels.stats.multitest import multipletests

from dagster_project.analysis import agreement
from dagster_project.analysis.mcnemar import mcnemar_between_models
from dagster_project.analysis.results import RESULT_COLUMNS
from stats_support import group_accuracy, grouped_answers

EMOTIONS = ["anger", "disgust", "fear", "happiness", "sadness", "surprise"]


def _answers(truth, pred, *, model="m", version="v1", dataset="d", protocol="classify",
             race=None, gender=None, status=None) -> pd.DataFrame:
    n = len(truth)
    status = status if status is not None else ["answered"] * n
    return pd.DataFrame({
        "model": model, "model_version": version, "dataset": dataset, "protocol": protocol,
        "image_id": [f"img{i:04d}" for i in range(n)], "identity": [f"id{i}" for i in range(n)],
        "race": race if race is not None else ["white"] * n,
        "gender": gender if gender is not None else ["female"] * n,
        "true_emotion": list(truth),
        "predicted_emotion": [p if s == "answered" else None for p, s in zip(pred, status)],
        "answer_status": status,
    })


def categorical_agreement(answers: pd.DataFrame, **kwargs) -> pd.DataFrame:
    """The statistic on the mart rows (int_answers_with_groups, group_accuracy) of `answers`."""
    grouped = grouped_answers(answers)
    return agreement.categorical_agreement(grouped, group_accuracy(grouped), **kwargs)


def test_counted_answers_give_the_same_rows_to_the_bit():
    """The asset reads the grouped answers counted (GROUPED_COUNTS_SQL: ~10^4 rows for 10^7
    answers); every row, interval and detail must equal those from one row per answer: with
    unanswered images, a class absent from a group, a predicted label outside the truth, two
    versions and two protocols (a missing true emotion cannot reach it: dbt tests not_null)."""
    import duckdb

    from dagster_project.analysis.inputs import ordered_sql

    rng = np.random.default_rng(5)
    parts = []
    for version, protocol in (("v1", "classify"), ("v1", "cot"), ("v2", "classify")):
        n = 400
        race = rng.choice(["black", "white", "asian"], n)
        truth = ["neutral" if r == "asian" else EMOTIONS[i % 6] for i, r in enumerate(race)]  # asian: neutral only
        pred = [t if rng.random() < 0.6 else rng.choice([*EMOTIONS, "contempt"]) for t in truth]
        status = rng.choice(["answered", "unparseable", "refused"], n, p=[0.85, 0.1, 0.05]).tolist()
        parts.append(_answers(truth, pred, version=version, protocol=protocol, race=list(race),
                              gender=list(rng.choice(["female", "male"], n)), status=status))
    grouped = grouped_answers(pd.concat(parts, ignore_index=True))
    con = duckdb.connect()
    con.execute("create schema intermediate")
    con.register("grouped_rows", grouped)
    con.execute("create table intermediate.int_answers_with_groups as select * from grouped_rows")
    counted = con.execute(ordered_sql("grouped")).df()
    assert len(counted) < len(grouped) / 2 and counted["n_answers"].sum() == len(grouped)
    accuracy = group_accuracy(grouped)
    per_answer = agreement.categorical_agreement(grouped, accuracy, bootstrap_resamples=200)
    assert per_answer["ci_low"].notna().any() and (per_answer["measure"] == "macro_f1_gap").any()
    pd.testing.assert_frame_equal(agreement.categorical_agreement(counted, accuracy, bootstrap_resamples=200),
                                  per_answer, check_exact=True)


def _row(frame: pd.DataFrame, measure: str, subset_kind: str = "all", subset: str = "all") -> pd.Series:
    hit = frame[(frame.measure == measure) & (frame.subset_kind == subset_kind) & (frame.subset == subset)]
    assert len(hit) == 1, hit
    return hit.iloc[0]


# ------------------------------------------------------------------------ Cohen's kappa

def test_cohen_kappa_matches_wikipedia_worked_example():
    # Wikipedia, "Cohen's kappa", simple example: 50 grant proposals read by two readers A, B;
    # 20 yes/yes, 15 no/no, 5 A-yes/B-no, 10 A-no/B-yes -> p_o = 0.70, p_e = 0.50, kappa = 0.40.
    # Reader A plays the truth, reader B the model.
    a = ["yes"] * 20 + ["yes"] * 5 + ["no"] * 10 + ["no"] * 15
    b = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    out = categorical_agreement(_answers(a, b), bootstrap_resamples=0)
    # + the class of per-class F1 rows, the classes macro F1 / balanced accuracy average over
    assert list(out.columns) == [*RESULT_COLUMNS, "emotion", "class_set"]
    kappa = _row(out, "cohen_kappa")
    assert kappa.estimate == pytest.approx(0.40, abs=1e-12)
    assert kappa.estimate == pytest.approx(cohen_kappa_score(a, b), abs=1e-12)  # sklearn cross-check
    assert kappa.n == 50 and not kappa.below_min_n
    # statsmodels' asymptotic SE gives a Wald interval around kappa and a z test of kappa = 0
    assert kappa.ci_low < 0.40 < kappa.ci_high
    assert json.loads(kappa.detail)["std_error"] == pytest.approx((kappa.ci_high - kappa.estimate) / 1.959964, rel=1e-4)
    assert 0 < kappa.p_value < 0.05
    accuracy = _row(out, "accuracy")
    assert accuracy.estimate == pytest.approx(0.70)
    # Wilson interval cross-checked against scipy's independent implementation
    ci = binomtest(35, 50).proportion_ci(confidence_level=0.95, method="wilson")
    assert (accuracy.ci_low, accuracy.ci_high) == pytest.approx((ci.low, ci.high), abs=1e-10)
    assert np.isnan(_row(out, "macro_f1").ci_low)  # bootstrap switched off -> no CI
    assert _row(out, "macro_f1").estimate == pytest.approx(f1_score(a, b, average="macro"))


def test_balanced_six_emotion_design_gives_kappa_from_accuracy_exactly():
    # With every true emotion equally frequent (row marginals 1/6), chance agreement
    # p_e = sum_k (1/6) p_pred,k = 1/6 whatever the predicted marginals (Cohen 1960, p_e
    # definition), so kappa = (acc - 1/6) / (1 - 1/6). Per-emotion accuracies differ;
    # errors are cycled to the next emotion.
    per_emotion, correct = 30, [27, 24, 21, 18, 15, 12]
    truth, pred = [], []
    for k, (emotion, c) in enumerate(zip(EMOTIONS, correct)):
        truth += [emotion] * per_emotion
        pred += [emotion] * c + [EMOTIONS[(k + 1) % 6]] * (per_emotion - c)
    out = categorical_agreement(_answers(truth, pred), bootstrap_resamples=0)
    acc = sum(correct) / (6 * per_emotion)
    assert _row(out, "accuracy").estimate == pytest.approx(acc, abs=1e-15)
    assert _row(out, "cohen_kappa").estimate == pytest.approx((acc - 1 / 6) / (1 - 1 / 6), abs=1e-12)


def test_groups_unanswered_and_bootstrap_ci():
    rng = np.random.default_rng(3)
    n = 240
    truth = rng.choice(EMOTIONS, n)
    pred = np.where(rng.random(n) < 0.7, truth, rng.choice(EMOTIONS, n))
    race = rng.choice(["asian", "black", "white"], n)
    gender = rng.choice(["female", "male"], n)
    status = np.where(rng.random(n) < 0.1, "no_face", "answered")
    answers = _answers(truth, pred, race=race, gender=gender, status=status)
    out = categorical_agreement(answers, bootstrap_resamples=25, min_n=30)
    # 1 overall + 3 races + 2 genders + 6 race x gender cells; measures: accuracy, accuracy_itt,
    # macro_f1, balanced_accuracy, kappa and 6 per-class F1 (before issue 11: accuracy, macro_f1,
    # kappa only); one best-minus-worst macro F1 gap per grouping (every group holds all 6 classes)
    assert len(out[out.measure != "macro_f1_gap"]) == 12 * (5 + 6)
    assert sorted(out.loc[out.measure == "macro_f1_gap", "subset_kind"]) == ["gender", "race", "race_gender"]
    assert set(out.subset[(out.subset_kind == "race_gender") & (out.measure != "macro_f1_gap")]) == {f"{r} {g}" for r in ["asian", "black", "white"]
                                                                 for g in ["female", "male"]}
    ok = status == "answered"
    overall = _row(out, "cohen_kappa")
    assert overall.n == ok.sum() and json.loads(overall.detail)["n_unanswered"] == (~ok).sum()
    cell = (race == "black") & (gender == "male") & ok
    kappa = _row(out, "cohen_kappa", "race_gender", "black male")
    assert kappa.estimate == pytest.approx(cohen_kappa_score(truth[cell], pred[cell]), abs=1e-12)
    assert kappa.below_min_n == (cell.sum() < 30)
    f1 = _row(out, "macro_f1", "race", "asian")
    sel = (race == "asian") & ok
    assert f1.estimate == pytest.approx(f1_score(truth[sel], pred[sel], average="macro"))
    assert f1.ci_low <= f1.estimate <= f1.ci_high
    # seeded: the same call gives the same interval
    again = categorical_agreement(answers, bootstrap_resamples=25, min_n=30)
    assert _row(again, "macro_f1", "race", "asian").ci_low == f1.ci_low


# ------------------------------------------------------------------------ McNemar

def _paired(table, *, a=("m1", "v1"), b=("m2", "v1"), protocol="classify") -> pd.DataFrame:
    """Answers of two models whose correct/incorrect cross-table is `table`
    (rows: model a correct / incorrect; columns: model b correct / incorrect)."""
    (both, a_only), (b_only, neither) = table
    a_ok = [True] * both + [True] * a_only + [False] * b_only + [False] * neither
    b_ok = [True] * both + [False] * a_only + [True] * b_only + [False] * neither
    truth = ["happiness"] * len(a_ok)
    frames = []
    for (model, version), ok in ((a, a_ok), (b, b_ok)):
        pred = ["happiness" if c else "sadness" for c in ok]
        frames.append(_answers(truth, pred, model=model, version=version, protocol=protocol))
    return pd.concat(frames, ignore_index=True)


def test_mcnemar_matches_wikipedia_example_chi_square():
    # Wikipedia, "McNemar's test", example: table [[101, 121], [59, 33]] -> chi2 = 21.35 without
    # continuity correction; R mcnemar.test (Edwards' correction) gives 20.672, p = 5.45e-06
    # (the same reference values are in statsmodels' test_mcnemar_chisquare).
    answers = _paired([[101, 121], [59, 33]])
    corrected = mcnemar_between_models(answers).iloc[0]  # 180 discordant >= 25 -> chi-square
    assert corrected.statistic == pytest.approx(20.67222, rel=1e-6)
    assert corrected.p_value == pytest.approx(5.450095e-06, rel=1e-6)
    plain = mcnemar_between_models(answers, continuity_correction=False).iloc[0]
    assert plain.statistic == pytest.approx(21.35556, rel=1e-6)
    assert plain.p_value == pytest.approx(3.815136e-06, rel=1e-6)
    assert plain.estimate == pytest.approx((222 - 160) / 314)  # accuracy(m1) - accuracy(m2)
    assert plain.subset_kind == "model_pair" and plain.subset == "m1/v1 vs m2/v1"
    assert (plain.model, plain.model_version) == ("m1", "v1")
    detail = json.loads(plain.detail)
    assert detail["model_b"] == "m2" and detail["table"] == [[101, 121], [59, 33]] and not detail["exact"]


def test_mcnemar_small_discordant_uses_exact_binomial():
    # Armitage & Berry (1994, p. 127), as worked in the StatsDirect manual ("McNemar / exact
    # matched pairs"): two culture media on 50 sputum specimens, table [[20, 12], [2, 16]]:
    # Yates-corrected chi2 = 5.785714, P = 0.0162; exact (sign test) two-sided P = 0.0129.
    answers = _paired([[20, 12], [2, 16]])
    exact = mcnemar_between_models(answers).iloc[0]  # 14 discordant < 25 -> exact
    assert json.loads(exact.detail)["exact"]
    assert exact.p_value == pytest.approx(0.0129, abs=5e-5)
    assert exact.statistic == 2  # statsmodels' exact statistic = min(b, c)
    chi2 = mcnemar_between_models(answers, exact_below=0).iloc[0]
    assert chi2.statistic == pytest.approx(5.785714, rel=1e-6)
    assert chi2.p_value == pytest.approx(0.0162, abs=5e-5)
    # The brief's table [[59, 6], [16, 80]]: uncorrected chi2 = 100/22 = 4.545 (p = 0.033);
    # 22 discordant < 25 so by default the exact binomial p = 2 P(Bin(22, .5) <= 6) is used.
    table = mcnemar_between_models(_paired([[59, 6], [16, 80]]), exact_below=0, continuity_correction=False)
    assert table.iloc[0].statistic == pytest.approx(100 / 22)
    assert table.iloc[0].p_value == pytest.approx(0.0330, abs=5e-5)
    default = mcnemar_between_models(_paired([[59, 6], [16, 80]])).iloc[0]
    assert default.p_value == pytest.approx(binomtest(6, 22).pvalue, rel=1e-12)


def test_three_models_give_three_holm_adjusted_pairs_per_family():
    rng = np.random.default_rng(11)
    n = 150
    truth = rng.choice(EMOTIONS, n)
    frames = []
    for protocol in ("classify", "describe"):
        for model, p_correct in (("a", 0.9), ("b", 0.75), ("c", 0.6)):
            pred = np.where(rng.random(n) < p_correct, truth, "neutral")
            status = np.where(rng.random(n) < 0.05, "refused", "answered")
            frames.append(_answers(truth, pred, model=model, protocol=protocol, status=status))
    answers = pd.concat(frames, ignore_index=True)
    out = mcnemar_between_models(answers, correction="holm")
    assert len(out) == 6 and set(out.family) == {"d/classify", "d/describe"}
    for _, family in out.groupby("family"):
        assert list(family.subset) == ["a/v1 vs b/v1", "a/v1 vs c/v1", "b/v1 vs c/v1"]
        _, expected, _, _ = multipletests(family.p_value, method="holm")
        assert family.p_adjusted.to_numpy() == pytest.approx(expected)
        assert set(family.correction) == {"holm"}
    # n = images both models answered
    one = answers[answers.protocol == "classify"]
    answered = {m: set(g.image_id[g.answer_status == "answered"]) for m, g in one.groupby("model")}
    assert _row(out[out.family == "d/classify"], "mcnemar", "model_pair", "a/v1 vs c/v1").n == len(
        answered["a"] & answered["c"])
