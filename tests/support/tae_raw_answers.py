"""Raw answers built to reproduce Tae et al.'s Tables 1-6, written as a user's files: images, a
manifest, a human-ratings file and one imported-answers CSV per VLM (Gemma3-4B, LLaMA-3.2-11B).

Nothing here imports the product (the journeys' rule): the confusions are tae_confusions',
the published cells are read from the seed dbt/seeds/published_values.csv.

Categorical answers (Tables 1, 2) follow tae_confusions.MODELS. Valence and arousal (Tables 3-6):

* Humans: per intended emotion a mean u_e, plus a fixed within-emotion pattern, scaled so the
  per-image means have the published overall mean and SD (Tables 3, 5 "Human M (SD)"), then
  rounded to what RATERS integer ratings can average. u_e leans with the models' biases (the
  paper's polarity exaggeration) but is kept far enough from the scale's ends that every
  model's emotion mean u_e + bias_e lies inside [1, 9].
* A model, over the images it answered: y_i = v_e + w_i, where v_e = (human mean over e) + the
  published bias of e (Table 4 / Table 6) and w has zero mean within each emotion, so the
  per-emotion biases hold exactly whatever w is. SLSQP finds the smallest w (least squares) for
  which the SD, Pearson r and MAE are the published ones (three equalities) and every value stays
  in [1, 9] (an imported value off the scale would be quarantined). w is free per image: four
  fixed patterns per emotion (the human deviation, an alternating sign, two skewed ones) did not
  reach LLaMA's valence SD, r and MAE together (MAE 1.90 or more where SD and r were met, against
  the published 1.808; MAE >= the mean |bias| 1.56, the rest is spent where model-minus-human
  changes sign). The solution is what one would expect
  of a VLM: LLaMA's valence sits at 9 for most happy faces and at 1 for most fear, disgust and
  anger faces, and spreads over the scale for neutral and sad ones.
* The model mean is not free: it is the human mean plus the mean of the six biases, so where
  the paper's model mean disagrees with its own biases no data can meet both, and
  `Construction.infeasible` says by how much (LLaMA valence: 4.60 + mean(Table 4) = 3.745,
  printed 3.71). Where SLSQP finds no solution the construction keeps what it can (SD and r,
  else the biases alone) and says what it gave up.

None of these cells depends on n (only Table 2's counts and the p-values do: tae_confusions).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import minimize

from tests.support.tae_confusions import IDENTITIES, MODELS, ORDER, answered_labels
from tests.support.tae_fixture import write_csv

REPO_ROOT = Path(__file__).resolve().parents[2]
SEED = REPO_ROOT / "dbt" / "seeds" / "published_values.csv"
PAPER_MODELS = {"gemma3_4b": "Gemma3-4B", "llama_vision": "LLaMA-3.2-11B"}
BIAS_TABLES = {"valence": "tae_table4", "arousal": "tae_table6"}
SUMMARY_TABLES = {"valence": "tae_table3", "arousal": "tae_table5"}
RACES = ("black", "white", "east_asian")  # Tae's Korean faces: the canonical race
GENDERS = ("female", "male")
# How far the humans' emotion means lean with the models' mean centred bias (u_e = mean +
# LEAN * bias), before they are kept MARGIN inside the range every model's emotion mean needs;
# chosen (by trying LEAN 0.2 .. 1.2, MARGIN 0 .. 0.3) so that SLSQP finds every published cell it
# can. MARGIN matters for LLaMA's valence: its fear, disgust and anger answers sit near 1, and a
# wider margin leaves less between-emotion spread for its SD 3.08, so more within neutral and sad,
# where model-minus-human then changes sign: SLSQP stopped at MAE 1.818, 1.829, 1.910 with
# MARGIN 0.15, 0.2, 0.3 (published 1.808); 0.05 and 0.1 meet it.
LEAN = {"valence": 1.0, "arousal": 0.2}
MARGIN = 0.1
# Raters per image, each answering an integer 1-9 (a Likert scale, as the paper's humans did;
# reliability's Krippendorff alpha tabulates every distinct value, so continuous ratings would
# need a values x values table per image): an image's mean is a multiple of 1 / RATERS.
RATERS = 5
RATED_IDENTITIES = 8  # of the 40 per race x gender: 288 images rated
# SLSQP's starts: w = this share of the humans' within-emotion deviation (see construct)
START_SHARES = (0.25, 0.0, 1.0, 0.5)


def published(papers_model: str, dimension: str | None = None) -> dict[tuple[str, str, str], float]:
    """{(paper model, subset, measure): value} of one seed table."""
    with open(SEED, newline="") as fh:
        return {(row["model"], row["subset"], row["measure"]): float(row["published_value"])
                for row in csv.DictReader(fh)
                if row["papers_model"] == papers_model and (dimension is None or row["dimension"] == dimension)}


def biases(model: str, dimension: str) -> np.ndarray:
    """The paper's per-emotion bias of a model, in ORDER."""
    cells = published(BIAS_TABLES[dimension], dimension)
    return np.array([cells[(PAPER_MODELS[model], emotion, "bland_altman_bias")] for emotion in ORDER])


def summary(model: str, dimension: str, measure: str) -> float:
    return published(SUMMARY_TABLES[dimension], dimension)[(PAPER_MODELS[model], "all", measure)]


def images() -> list[dict]:
    rows = []
    for race in RACES:
        for gender in GENDERS:
            for k in range(IDENTITIES):
                identity = f"{race}_{gender}_{k:02d}"
                rows += [{"image": f"images/{identity}_{emotion}.png", "emotion": emotion, "race": race,
                          "gender": gender, "age": 30, "identity": identity} for emotion in ORDER]
    return rows


def human_means(frame: list[dict], dimension: str) -> np.ndarray:
    """The per-image human mean before rounding (see the module docstring)."""
    mean, sd = summary("gemma3_4b", dimension, "human_mean"), summary("gemma3_4b", dimension, "human_sd")
    every = [biases(model, dimension) for model in PAPER_MODELS]
    lean = np.mean([b - b.mean() for b in every], axis=0)
    low = 1 + MARGIN - np.minimum(0, np.min(every, axis=0))
    high = 9 - MARGIN - np.maximum(0, np.max(every, axis=0))
    u = mean + LEAN[dimension] * lean
    for _ in range(50):  # inside [low, high] with the published mean
        u = np.clip(u, low, high)
        u = u - u.mean() + mean
    emotions = np.array([img["emotion"] for img in frame])
    x, within = np.zeros(len(frame)), np.zeros(len(frame))
    for j, emotion in enumerate(ORDER):
        idx = np.flatnonzero(emotions == emotion)
        x[idx] = u[j]
        within[idx] = _standard(np.sin(np.arange(len(idx)) * 0.37 + j))
    n = len(frame)
    left = sd ** 2 * (n - 1) / n - np.mean((x - x.mean()) ** 2)  # the within-emotion variance left
    if left <= 0:
        raise ValueError(f"{dimension}: the emotion means alone exceed the human SD {sd}; lower LEAN")
    return x + np.sqrt(left) * within


def _standard(v: np.ndarray) -> np.ndarray:
    v = v - v.mean()
    return v / np.sqrt(np.mean(v ** 2))


@dataclass
class Construction:
    values: np.ndarray  # over the answered images, in order
    met: tuple[str, ...]  # the summary measures solved for
    infeasible: list[str]


def construct(x: np.ndarray, emotions: np.ndarray, model: str, dimension: str) -> Construction:
    """Model values for the answered images (x: their human means, emotions: their intended
    emotions) meeting the paper's biases, SD, r and MAE (see the module docstring)."""
    bias = biases(model, dimension)
    sd, r, mae, printed_mean = (summary(model, dimension, m) for m in ("model_sd", "pearson_r", "mae", "model_mean"))
    n = len(x)
    v, groups = np.zeros(n), np.zeros((len(ORDER), n))
    for j, emotion in enumerate(ORDER):
        idx = np.flatnonzero(emotions == emotion)
        v[idx] = x[idx].mean() + bias[j]
        groups[j, idx] = 1.0
    deviation = x - groups.T @ (groups @ x / groups.sum(axis=1))  # the humans' within-emotion deviation
    # The printed biases are rounded to 0.01: moving all six by the same amount within their
    # rounding moves the model mean towards the printed one (Gemma3's 4.3045 -> 4.31 needs +0.003).
    v += np.clip(printed_mean - v.mean(), -0.004, 0.004)
    infeasible = []
    if abs(v.mean() - printed_mean) > 0.005:
        infeasible.append(f"model mean {printed_mean}: the human mean plus the biases (each within its rounding) "
                          f"give at best {v.mean():.4f}")
    centred = x - x.mean()
    var_y = sd ** 2 * (n - 1) / n
    cov_xy = r * np.sqrt(np.mean(centred ** 2) * var_y)
    equalities = {
        "model_sd": {"fun": lambda w: np.mean((w + v - (w + v).mean()) ** 2) - var_y,
                     "jac": lambda w: 2 * (w + v - (w + v).mean()) / n},
        "pearson_r": {"fun": lambda w: np.mean(centred * (w + v)) - cov_xy, "jac": lambda w: centred / n},
        "mae": {"fun": lambda w: np.mean(np.abs(w + v - x)) - mae, "jac": lambda w: np.sign(w + v - x) / n},
    }
    zero_mean = {"type": "eq", "fun": lambda w: groups @ w, "jac": lambda w: groups}
    bounds = list(zip(1 - v, 9 - v))
    for met in (("model_sd", "pearson_r", "mae"), ("model_sd", "pearson_r"), ()):
        if not met:
            infeasible.append("SD, r and MAE: no solution on [1, 9]; the biases alone (one value per emotion)")
            return Construction(v, met, infeasible)
        constraints = [zero_mean, *({"type": "eq", **equalities[m]} for m in met)]
        # First not from w = 0: there the SD's gradient is constant within each emotion, orthogonal
        # to every zero-mean w, so SLSQP's linearised constraints may have no solution (both
        # arousal rows stop there); other starts are tried when one stops short.
        for share in START_SHARES:
            solved = minimize(lambda w: w @ w / n, np.clip(share * deviation, 1 - v, 9 - v), jac=lambda w: 2 * w / n,
                              method="SLSQP", bounds=bounds, constraints=constraints,
                              options={"maxiter": 300, "ftol": 1e-12})
            values = solved.x + v
            residual = max(np.max(np.abs(np.atleast_1d(c["fun"](solved.x)))) for c in constraints)
            if solved.success and in_scale(values) and residual < 1e-7:
                return Construction(values, met, infeasible)
        infeasible.append(f"{', '.join(met)}: SLSQP found no solution on [1, 9] ({solved.message})")
    raise AssertionError("unreachable")


def likert_units(x: np.ndarray, dimension: str) -> np.ndarray:
    """x in units of 1 / RATERS (integers), rounded so that their sum is the sum of x rounded (the
    overall mean moves by less than 1 / (RATERS * n)); of the deviations scaled by 0.95 .. 1.05,
    the one whose rounded means have the SD nearest the published one (rounding adds variance)."""
    target_sd = summary("gemma3_4b", dimension, "human_sd")

    def rounded(scale: float) -> np.ndarray:
        scaled = (x.mean() + (x - x.mean()) * scale) * RATERS
        q = np.floor(scaled).astype(int)
        short = int(round(scaled.sum())) - int(q.sum())
        q[np.argsort(q - scaled)[:short]] += 1  # the largest remainders go up
        return q

    candidates = [rounded(scale) for scale in np.linspace(0.95, 1.05, 201)]
    return min(candidates, key=lambda q: abs((q / RATERS).std(ddof=1) - target_sd))


def in_scale(values: np.ndarray) -> bool:
    return bool(values.min() >= 1.0 - 1e-9 and values.max() <= 9.0 + 1e-9)


@dataclass(frozen=True)
class TaeFiles:
    root: Path
    manifest: Path
    ratings: Path
    answers: dict[str, Path]  # warehouse model -> its imported answers
    constructions: dict[tuple[str, str], Construction]  # (model, dimension) -> how its values were made


def write_files(root: Path) -> TaeFiles:
    """Images (tiny PNGs), manifest.csv, ratings.csv (RATERS integer ratings per image and
    dimension whose mean is the constructed human mean) and one answers CSV per model."""
    from PIL import Image

    (root / "images").mkdir(parents=True, exist_ok=True)
    frame = images()
    for i, img in enumerate(frame):  # a colour of its own: no two images share a hash
        Image.new("RGB", (8, 8), (i % 256, i // 256, 7)).save(root / img["image"])
    emotions = np.array([img["emotion"] for img in frame])
    # Tables 3-6 do not depend on n: only the first RATED_IDENTITIES identities of each race x
    # gender are rated (by the humans and, for valence and arousal, by the models)
    rated = np.array([int(img["identity"].rsplit("_", 1)[1]) < RATED_IDENTITIES for img in frame])
    sub = [img for img, r in zip(frame, rated) if r]
    units = {dimension: likert_units(human_means(sub, dimension), dimension) for dimension in BIAS_TABLES}
    x = {dimension: np.full(len(frame), np.nan) for dimension in BIAS_TABLES}
    for dimension, q in units.items():
        x[dimension][rated] = q / RATERS
    ratings = [{"rater": f"r{k}", "image": img["image"], "dimension": dimension,
                "value": int(q // RATERS + (k < q % RATERS))}
               for dimension, qs in units.items() for img, q in zip(sub, qs) for k in range(RATERS)]
    answers, constructions = {}, {}
    for (model, version), confusion in MODELS.items():
        labels: list[str | None] = [None] * len(frame)
        for emotion, counts in zip(ORDER, confusion):
            idx = np.flatnonzero(emotions == emotion)
            for i, label in zip(idx, answered_labels(counts, len(idx))):
                labels[i] = label
        rated_answered = rated & np.array([label is not None for label in labels])
        values = {}
        for dimension in BIAS_TABLES:
            made = construct(x[dimension][rated_answered], emotions[rated_answered], model, dimension)
            constructions[(model, dimension)] = made
            values[dimension] = np.full(len(frame), np.nan)
            values[dimension][rated_answered] = made.values
        rows = [{"image": img["image"], "label": labels[i] or "",
                 **{dimension: "" if np.isnan(values[dimension][i]) else round(float(values[dimension][i]), 10)
                    for dimension in BIAS_TABLES},
                 "raw_text": labels[i] or "doubt", "parse_status": "" if labels[i] else "off_label"}
                for i, img in enumerate(frame)]
        answers[model] = write_csv(root / f"{model}.csv", rows)
    return TaeFiles(root, write_csv(root / "manifest.csv", frame), write_csv(root / "ratings.csv", ratings),
                    answers, constructions)
