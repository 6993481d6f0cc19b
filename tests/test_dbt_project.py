"""End-to-end test of the dbt project: synthetic raw rows -> `dbt build` -> mart values.

(Over 400 lines: every test reads one module-scoped `dbt build` (slow); splitting the module would
build it twice.)

The warehouse is built once per module (dbt start-up is slow); every test reads it.
Expected values are computed here independently with pandas and statsmodels.
"""

from __future__ import annotations

import json
import random
from datetime import datetime
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.proportion import confint_proportions_2indep, proportion_confint

from dbt_support import run_dbt
from inference.warehouse import ensure_raw_schema

DATASET = "synth"
NOW = datetime(2024, 1, 1, 12, 0, 0)
# dataset label_set fer2013: 'angry' must become the canonical 'anger'
SOURCE_LABELS = {"angry": "anger", "happy": "happy", "sad": "sad"}
# source spellings -> canonical groups (race via race_map 'canonical' rows, lower/trim)
RACES = {"Black": "black", " white ": "white", "hispanic": "latino"}
GENDERS = {"F": "female", "man": "male"}
FER2013_VOCAB = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
FER2013_TO_CANONICAL = {"angry": "anger"}
CANONICAL_VOCAB = ["anger", "disgust", "fear", "happy", "neutral", "sad", "surprise", "calm",
                   "contempt", "confusion"]
NO_FACE_RATE = {"black": 0.35, "white": 0.05, "latino": 0.15}
VALID = ("ok", "repaired")


# --------------------------------------------------------------------------- synthetic raw data

def synthetic_images() -> pd.DataFrame:
    rows = []
    k = 0
    for race in RACES:
        for gender in GENDERS:
            for label in SOURCE_LABELS:
                for _ in range(2):
                    rows.append((f"img/{k:03d}.png", label, race, gender))
                    k += 1
    # images outside some groupings: no race, empty gender, neither
    rows += [(f"img/{k:03d}.png", "happy", None, "F"), (f"img/{k + 1:03d}.png", "sad", None, "man"),
             (f"img/{k + 2:03d}.png", "angry", "Black", ""), (f"img/{k + 3:03d}.png", "sad", None, None)]
    return pd.DataFrame(
        {
            "dataset": DATASET,
            "image_id": [r[0] for r in rows],
            "image_hash": [f"h{i:03d}" for i in range(len(rows))],
            "label_set": "fer2013",
            "source_label": [r[1] for r in rows],
            "identity": [f"p{i // 3}" for i in range(len(rows))],
            "race": [r[2] for r in rows],
            "gender": [r[3] for r in rows],
            "age": 30.0,
            "width": 48,
            "height": 48,
            "loaded_at": NOW,
        }
    )


def _prediction(run_id, model, version, kind, label_set, image, protocol, *, step=1,
                step_name="emotion", sample=0, attempt=1, status="ok", label=None, value=None,
                preprocessing=None):
    return {
        "preprocessing": json.dumps(preprocessing) if preprocessing is not None else None,
        "run_id": run_id, "model": model, "model_version": version, "model_kind": kind,
        "label_set": label_set, "dataset": DATASET, "image_id": image["image_id"],
        "image_hash": image["image_hash"], "protocol": protocol, "step": step,
        "step_name": step_name, "sample_index": sample, "attempt": attempt,
        "parse_status": status, "predicted_label": label, "predicted_value": value,
        "face_found": status != "no_face", "created_at": NOW,
    }


def haar(n_faces: int) -> dict:
    """The classifier's own detector, recorded as fer_xception records it (inference/models/faces.py)."""
    return {"face_detection": "haar", "detector": {"name": "opencv_haar_cascade"}, "n_faces_detected": n_faces}


def synthetic_predictions(images: pd.DataFrame) -> pd.DataFrame:
    rng = random.Random(20240101)
    rows = []
    # model 1: a classifier answering in fer2013 labels, one answer per image, with a face
    # detector that misses more black faces
    for _, image in images.iterrows():
        race = RACES.get(image["race"]) if image["race"] else None
        if rng.random() < NO_FACE_RATE.get(race, 0.1):
            rows.append(_prediction("run-clf", "clf", "1", "classifier", "fer2013", image,
                                    "classify", status="no_face", preprocessing=haar(0)))
            continue
        truth = image["source_label"]
        label = truth if rng.random() < 0.6 else rng.choice([x for x in FER2013_VOCAB if x != truth])
        rows.append(_prediction("run-clf", "clf", "1", "classifier", "fer2013", image, "classify",
                                label=label, preprocessing=haar(1)))
    # model 2: a VLM answering canonical labels, maj@3 with retries and refusals, plus a
    # valence step that the emotion models must ignore
    for i, (_, image) in enumerate(images.iterrows()):
        truth = SOURCE_LABELS[image["source_label"]]
        kw = dict(run_id="run-vlm", model="vlm", version="2024-01", kind="vlm",
                  label_set="canonical", image=image, protocol="maj_at_k")
        if i == 0:  # forced tie: happy, sad, refused -> answer_status 'tie', is_tie (was 'happy')
            rows += [_prediction(**kw, sample=0, label="sad"), _prediction(**kw, sample=1, label="happy"),
                     _prediction(**kw, sample=2, status="refused")]
            continue
        if i == 1:  # every sample refused -> answer_status 'refused'
            rows += [_prediction(**kw, sample=s, status="refused") for s in range(3)]
            continue
        for s in range(3):
            u = rng.random()
            label = truth if rng.random() < 0.55 else rng.choice(["anger", "happy", "sad", "fear", "neutral"])
            if u < 0.2:  # first try unparseable, retry repaired
                rows.append(_prediction(**kw, sample=s, attempt=1, status="unparseable"))
                rows.append(_prediction(**kw, sample=s, attempt=2, status="repaired", label=label.upper()))
            elif u < 0.3:
                rows.append(_prediction(**kw, sample=s, status="off_label", label="bored"))
            elif u < 0.35:  # a valid first try that a later try replaces
                rows.append(_prediction(**kw, sample=s, attempt=1, label="confusion"))
                rows.append(_prediction(**kw, sample=s, attempt=2, label=label))
            else:
                rows.append(_prediction(**kw, sample=s, label=label))
        if i % 5 == 0:
            rows.append(_prediction(**kw, step=2, step_name="valence", value=0.25))
    return pd.DataFrame(rows)


def synthetic_ratings(images: pd.DataFrame) -> pd.DataFrame:
    """Two raters: an emotion label (dataset vocabulary fer2013) and a valence per image."""
    rows = []
    for i, image in enumerate(images.head(6).itertuples()):
        for rater in ("r1", "r2"):
            rows.append({"rater": rater, "image_id": image.image_id, "dimension": "emotion",
                         "label": "angry" if (i + len(rater)) % 2 else image.source_label})
            rows.append({"rater": rater, "image_id": image.image_id, "dimension": "valence",
                         "value": float(1 + i), "scale_min": 1.0, "scale_max": 9.0})
    return pd.DataFrame(rows).assign(dataset=DATASET, loaded_at=NOW)


def write_raw(path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    images = synthetic_images()
    predictions = synthetic_predictions(images)
    runs = pd.DataFrame(
        {
            "run_id": ["run-clf", "run-vlm"], "model": ["clf", "vlm"],
            "model_version": ["1", "2024-01"], "model_kind": ["classifier", "vlm"],
            "dataset": DATASET, "started_at": NOW, "finished_at": NOW,
            "n_images": len(images), "n_answers": [0, 0], "n_no_face": [0, 0],
        }
    )
    quarantine = pd.DataFrame(
        {"dataset": [DATASET], "source": ["manifest.csv"], "row_number": [7],
         "image_path": ["img/missing.png"], "reason": ["file not found"], "quarantined_at": [NOW]}
    )
    ratings = synthetic_ratings(images)
    con = duckdb.connect(str(path))
    try:
        ensure_raw_schema(con)
        for table, frame in [("dataset_images", images), ("predictions", predictions),
                             ("model_runs", runs), ("quarantine", quarantine),
                             ("human_ratings", ratings)]:
            con.register("_frame", frame)
            con.execute(f"insert into raw.{table} by name select * from _frame")
            con.unregister("_frame")
    finally:
        con.close()
    return images, predictions


# --------------------------------------------------------------------------- expected values

def with_single_of_sampled(predictions: pd.DataFrame) -> pd.DataFrame:
    """The stored answers plus, for a protocol with several samples per image in a slice, its
    sample-0 rows again as protocol 'single_of_<protocol>' (int_predictions)."""
    key = ["model", "model_version", "dataset", "protocol"]
    sampled = predictions.groupby(key)["sample_index"].transform("max") > 0
    first = predictions[sampled & (predictions["sample_index"] == 0)]
    return pd.concat([predictions, first.assign(protocol="single_of_" + first["protocol"])], ignore_index=True)


def expected_final_answers(predictions: pd.DataFrame) -> pd.DataFrame:
    predictions = with_single_of_sampled(predictions)
    emo = predictions[predictions["step_name"] == "emotion"]
    key = ["model", "model_version", "dataset", "protocol", "image_id"]
    last = emo.sort_values(["step", "attempt"]).groupby(key + ["sample_index"]).tail(1)
    rows = []
    for k, grp in last.groupby(key):
        grp = grp.sort_values("sample_index")
        labels = []
        for _, r in grp.iterrows():
            if r["parse_status"] in VALID and r["predicted_label"] is not None:
                lab = str(r["predicted_label"]).strip().lower()
                labels.append(FER2013_TO_CANONICAL.get(lab, lab) if r["label_set"] == "fer2013" else lab)
        counts = pd.Series(labels, dtype=object).value_counts()
        if len(counts):
            top = counts.max()
            winners = sorted(counts[counts == top].index)
            # statistics.tie_policy 'status' (the default): a tie is no answer
            tie = len(winners) > 1
            pred, status = (None, "tie") if tie else (winners[0], "answered")
        else:
            pred, tie, status = None, False, grp.iloc[-1]["parse_status"]
        rows.append((*k, pred, tie, len(grp), len(labels), status))
    return pd.DataFrame(rows, columns=key + ["predicted_emotion", "is_tie", "n_samples", "n_valid",
                                             "answer_status"])


def expected_groups(images: pd.DataFrame, finals: pd.DataFrame) -> pd.DataFrame:
    img = images.assign(
        true_emotion=images["source_label"].map(SOURCE_LABELS),
        race_c=images["race"].map(RACES),
        gender_c=images["gender"].map(GENDERS),
    )
    joined = finals.merge(img[["dataset", "image_id", "true_emotion", "race_c", "gender_c"]],
                          on=["dataset", "image_id"])
    parts = [joined.assign(grouping="all", group_value="all")]
    parts.append(joined[joined.race_c.notna()].assign(grouping="race", group_value=lambda d: d.race_c))
    parts.append(joined[joined.gender_c.notna()].assign(grouping="gender", group_value=lambda d: d.gender_c))
    both = joined[joined.race_c.notna() & joined.gender_c.notna()]
    parts.append(both.assign(grouping="race_gender", group_value=both.race_c + " " + both.gender_c))
    out = pd.concat(parts, ignore_index=True)
    out["is_answered"] = out["answer_status"] == "answered"
    out["is_correct"] = out["is_answered"] & (out["predicted_emotion"] == out["true_emotion"])
    return out


# --------------------------------------------------------------------------- fixture

@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    root = tmp_path_factory.mktemp("dbt_project")
    path = root / "warehouse.duckdb"
    images, predictions = write_raw(path)
    results = run_dbt(["build"], warehouse=path, target_dir=root / "target")
    con = duckdb.connect(str(path), read_only=True)
    yield {"con": con, "results": results, "images": images, "predictions": predictions}
    con.close()


def mart(warehouse, name: str) -> pd.DataFrame:
    return warehouse["con"].execute(f"select * from {name}").df()


def stored(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows of the stored protocols (one per model here), without the derived single_of_* ones."""
    return frame[~frame["protocol"].str.startswith("single_of_")]


# --------------------------------------------------------------------------- tests

def test_build_passes_every_node(warehouse):
    results = warehouse["results"]["results"]
    statuses = {r["unique_id"]: r["status"] for r in results}
    assert all(s in ("success", "pass") for s in statuses.values()), statuses
    kinds = {uid.split(".")[0] for uid in statuses}
    assert {"seed", "model", "test", "unit_test"} <= kinds
    assert sum(uid.startswith("unit_test.") for uid in statuses) >= 3


def test_models_land_in_their_schemas(warehouse):
    tables = warehouse["con"].execute(
        "select table_schema, table_name from information_schema.tables"
    ).df()
    by_schema = tables.groupby("table_schema")["table_name"].apply(set).to_dict()
    assert {"stg_dataset_images", "stg_predictions", "stg_quarantine", "stg_model_runs"} <= by_schema["staging"]
    assert {"int_images_labeled", "int_final_answers", "int_answers_with_groups",
            "int_human_ratings_labeled", "int_model_dimensional_answers"} <= by_schema["intermediate"]
    assert "stg_human_ratings" in by_schema["staging"]
    assert {"confusion_counts", "group_accuracy", "misclassification_ratios",
            "answer_status_rates", "face_detection_rates"} <= by_schema["marts"]
    assert {"emotion_label_map", "emotions", "race_map", "gender_map"} <= by_schema["seeds"]


def test_images_are_labeled_canonically(warehouse):
    got = mart(warehouse, "intermediate.int_images_labeled")
    assert set(got["true_emotion"]) == {"anger", "happy", "sad"}
    assert set(got["race"].dropna()) == {"black", "white", "latino"}
    assert set(got["gender"].dropna()) == {"female", "male"}
    assert got["race"].isna().sum() == 3 and got["gender"].isna().sum() == 2


def test_final_answers_match_majority_vote(warehouse):
    key = ["model", "model_version", "dataset", "protocol", "image_id"]
    got = mart(warehouse, "intermediate.int_final_answers")
    want = expected_final_answers(warehouse["predictions"])
    merged = want.merge(got, on=key, how="outer", suffixes=("_want", "_got"), indicator=True)
    assert (merged["_merge"] == "both").all()
    for col in ["is_tie", "n_samples", "n_valid", "answer_status"]:
        assert (merged[f"{col}_want"] == merged[f"{col}_got"]).all(), col
    assert (merged["predicted_emotion_want"].fillna("-") == merged["predicted_emotion_got"].fillna("-")).all()
    vlm = got[(got.model == "vlm") & (got.protocol == "maj_at_k")].set_index("image_id")
    # issue 11 fix 9: a maj@k tie is its own status (before: 'happy', the alphabetically first)
    assert vlm.loc["img/000.png", "answer_status"] == "tie" and vlm.loc["img/000.png", "is_tie"]
    assert pd.isna(vlm.loc["img/000.png", "predicted_emotion"])
    assert vlm.loc["img/001.png", "answer_status"] == "refused"
    assert (got[got.model == "clf"]["answer_status"] == "no_face").sum() > 0


def test_group_accuracy_counts_and_wilson_intervals(warehouse):
    got = mart(warehouse, "marts.group_accuracy")
    groups = expected_groups(warehouse["images"], expected_final_answers(warehouse["predictions"]))
    key = ["model", "model_version", "dataset", "protocol", "grouping", "group_value"]
    per_emotion = groups.groupby(key + ["true_emotion"]).agg(
        n_images=("image_id", "size"), n_answered=("is_answered", "sum"), correct=("is_correct", "sum"))
    pooled = groups.groupby(key).agg(
        n_images=("image_id", "size"), n_answered=("is_answered", "sum"), correct=("is_correct", "sum"))
    pooled = pooled.assign(true_emotion="all").set_index("true_emotion", append=True)
    want = pd.concat([per_emotion, pooled]).reset_index()
    merged = want.merge(got, on=key + ["true_emotion"], how="outer", suffixes=("", "_got"),
                        indicator=True)
    assert (merged["_merge"] == "both").all()
    for col in ["n_images", "n_answered", "correct"]:
        assert (merged[col] == merged[f"{col}_got"]).all(), col
    assert (merged["n"] == merged["n_answered"]).all()
    assert (merged["n_unanswered"] == merged["n_images"] - merged["n_answered"]).all()
    assert np.allclose(merged["coverage"], merged["n_answered"] / merged["n_images"], rtol=0, atol=1e-12)
    answered = merged[merged["n"] > 0]
    low, high = proportion_confint(answered["correct"], answered["n"], alpha=0.05, method="wilson")
    assert np.allclose(answered["accuracy"], answered["correct"] / answered["n"], rtol=0, atol=1e-12)
    assert np.allclose(answered["ci_low"], low, rtol=0, atol=1e-9)
    assert np.allclose(answered["ci_high"], high, rtol=0, atol=1e-9)
    empty = merged[merged["n"] == 0]
    assert empty[["accuracy", "ci_low", "ci_high"]].isna().all().all()
    # intent-to-treat: every image counts, unanswered ones (no face, refusal, tie) as errors
    itt_low, itt_high = proportion_confint(merged["correct"], merged["n_images"], alpha=0.05, method="wilson")
    assert np.allclose(merged["accuracy_itt"], merged["correct"] / merged["n_images"], rtol=0, atol=1e-12)
    assert np.allclose(merged["itt_ci_low"], itt_low, rtol=0, atol=1e-9)
    assert np.allclose(merged["itt_ci_high"], itt_high, rtol=0, atol=1e-9)
    # the classifier misses more black faces: answered-only accuracy hides it, ITT shows it
    clf = merged[(merged["model"] == "clf") & (merged["grouping"] == "race") & (merged["true_emotion"] == "all")]
    assert (clf["accuracy_itt"] < clf["accuracy"]).any()


def test_misclassification_ratios_and_katz_intervals(warehouse):
    everything = stored(mart(warehouse, "marts.misclassification_ratios"))
    # issue 11 fix 5: both orientations of every pair (before: only group_a < group_b)
    mirror = everything.merge(everything, left_on=["model", "grouping", "true_emotion", "predicted_emotion", "group_a",
                                                   "group_b"],
                              right_on=["model", "grouping", "true_emotion", "predicted_emotion", "group_b", "group_a"],
                              suffixes=("", "_m"))
    assert len(mirror) == len(everything) and (everything["group_a"] != everything["group_b"]).all()
    assert (mirror["count_a"] == mirror["count_b_m"]).all() and (mirror["n_a"] == mirror["n_b_m"]).all()
    # 'error' pools every wrong emotion of a true emotion; true_emotion 'all' pools the emotions
    vocab_rows = everything[everything["predicted_emotion"] != "error"]
    summed = vocab_rows.groupby(["model", "grouping", "true_emotion", "group_a", "group_b"])["count_a"].sum()
    errors = everything[(everything["predicted_emotion"] == "error") & (everything["true_emotion"] != "all")]
    assert (errors.set_index(summed.index.names)["count_a"].sort_index() == summed.sort_index()).all()
    pooled = everything[everything["true_emotion"] == "all"]
    assert set(pooled["predicted_emotion"]) == {"error"}
    groups = stored(expected_groups(warehouse["images"], expected_final_answers(warehouse["predictions"])))
    wrong = groups[groups["is_answered"] & ~groups["is_correct"]].groupby(["model", "grouping", "group_value"]).size()
    for r in pooled.itertuples():
        assert r.count_a == wrong.get((r.model, r.grouping, r.group_a), 0)
    # the checks below hold for each orientation; read the vocabulary rows a < b as before
    got = vocab_rows[vocab_rows["group_a"] < vocab_rows["group_b"]]
    assert len(got) > 0 and set(got["grouping"]) == {"race", "gender", "race_gender"}
    assert (got["predicted_emotion"] != got["true_emotion"]).all()
    # every wrong emotion of the model's vocabulary is present, zero counts included
    vocab = {"clf": {"anger", "disgust", "fear", "happy", "sad", "surprise", "neutral"},
             "vlm": set(CANONICAL_VOCAB)}
    for (model, grouping, true, a, b), grp in got.groupby(
            ["model", "grouping", "true_emotion", "group_a", "group_b"]):
        assert set(grp["predicted_emotion"]) == vocab[model] - {true}
    # counts and rates against the expected answers
    groups = stored(expected_groups(warehouse["images"], expected_final_answers(warehouse["predictions"])))
    answered = groups[groups["is_answered"] & (groups["grouping"] != "all")]
    key = ["model", "grouping", "true_emotion"]
    n = answered.groupby(key + ["group_value"]).size()
    cnt = answered.groupby(key + ["group_value", "predicted_emotion"]).size()
    for _, r in got.iterrows():
        k = (r.model, r.grouping, r.true_emotion)
        assert r.n_a == n[(*k, r.group_a)] and r.n_b == n[(*k, r.group_b)]
        assert r.count_a == cnt.get((*k, r.group_a, r.predicted_emotion), 0)
        assert r.count_b == cnt.get((*k, r.group_b, r.predicted_emotion), 0)
    assert np.allclose(got["rate_a"], got["count_a"] / got["n_a"], rtol=0, atol=1e-12)
    assert np.allclose(got["rate_b"], got["count_b"] / got["n_b"], rtol=0, atol=1e-12)
    assert got.loc[got["count_b"] == 0, "ratio"].isna().all()
    with_ratio = got[got["count_b"] > 0]
    assert np.allclose(with_ratio["ratio"], with_ratio["rate_a"] / with_ratio["rate_b"], rtol=1e-12, atol=0)
    both = got[(got["count_a"] > 0) & (got["count_b"] > 0)]
    assert len(both) >= 5
    low, high = confint_proportions_2indep(both["count_a"].to_numpy(float), both["n_a"].to_numpy(float),
                                           both["count_b"].to_numpy(float), both["n_b"].to_numpy(float),
                                           compare="ratio", method="log")
    assert np.allclose(both["ci_low"], low, rtol=0, atol=1e-9)
    assert np.allclose(both["ci_high"], high, rtol=0, atol=1e-9)
    assert got.loc[(got["count_a"] == 0) | (got["count_b"] == 0), ["ci_low", "ci_high"]].isna().all().all()


def test_confusion_counts_sum_to_answered_images(warehouse):
    got = mart(warehouse, "marts.confusion_counts")
    finals = mart(warehouse, "intermediate.int_final_answers")
    answered = finals[finals["answer_status"] == "answered"].groupby("model").size()
    totals = got[got["grouping"] == "all"].groupby("model")["n"].sum()
    assert totals.to_dict() == answered.to_dict()
    groups = mart(warehouse, "intermediate.int_answers_with_groups")
    want = groups[groups["is_answered"]].groupby(["model", "grouping", "group_value"]).size()
    have = got.groupby(["model", "grouping", "group_value"])["n"].sum()
    assert want.sort_index().to_dict() == have.sort_index().to_dict()
    acc = mart(warehouse, "marts.group_accuracy")
    diag = got[got["true_emotion"] == got["predicted_emotion"]].groupby(
        ["model", "grouping", "group_value"])["n"].sum()
    correct = acc[acc["true_emotion"] == "all"].groupby(["model", "grouping", "group_value"])["correct"].sum()
    assert (correct[correct > 0].sort_index() == diag.sort_index()).all()


def test_answer_status_rates_show_face_detection_gaps(warehouse):
    got = stored(mart(warehouse, "marts.answer_status_rates"))
    shares = got.groupby(["model", "grouping", "group_value"])["share"].sum()
    assert np.allclose(shares, 1.0)
    assert (got["n_images"] == got.groupby(["model", "grouping", "group_value"])["n"].transform("sum")).all()
    clf = got[(got["model"] == "clf") & (got["grouping"] == "race") & (got["answer_status"] == "no_face")]
    assert set(clf["group_value"]) <= {"black", "white", "latino"} and len(clf) > 0
    vlm = got[(got["model"] == "vlm") & (got["grouping"] == "all")].set_index("answer_status")
    assert vlm.loc["refused", "n"] >= 1


def test_face_detection_rates_match_the_no_face_answers_and_statsmodels(warehouse):
    got = mart(warehouse, "marts.face_detection_rates")
    assert set(got["model"]) == {"clf"} and set(got["stage"]) == {"model"} and set(got["detector"]) == {"haar"}
    status = mart(warehouse, "marts.answer_status_rates")
    missed = status[(status["model"] == "clf") & (status["answer_status"] == "no_face")]
    rates = got.set_index(["grouping", "group_value"])
    for row in missed.itertuples():
        assert rates.loc[(row.grouping, row.group_value), "n_missed"] == row.n
        assert rates.loc[(row.grouping, row.group_value), "n_images"] == row.n_images
    for row in got.itertuples():
        low, high = proportion_confint(row.n_detected, row.n_images, alpha=0.05, method="wilson")
        assert row.detection_rate == pytest.approx(row.n_detected / row.n_images)
        assert (row.ci_low, row.ci_high) == (pytest.approx(low, abs=1e-12), pytest.approx(high, abs=1e-12))
    race = rates.loc["race"]
    assert race.loc["black", "detection_rate"] < race.loc["white", "detection_rate"]  # NO_FACE_RATE


def test_human_ratings_map_labels_through_the_dataset_vocabulary(warehouse):
    got = mart(warehouse, "intermediate.int_human_ratings_labeled")
    ratings = synthetic_ratings(warehouse["images"])
    assert len(got) == len(ratings)
    emotion = got[got["dimension"] == "emotion"]
    want = emotion["source_label"].map(SOURCE_LABELS)
    assert (emotion["label"] == want).all() and "anger" in set(emotion["label"])
    valence = got[got["dimension"] == "valence"]
    assert valence["label"].isna().all() and valence["value"].between(1, 9).all()
    images = mart(warehouse, "intermediate.int_images_labeled").set_index("image_id")
    assert (got["true_emotion"] == images.loc[got["image_id"], "true_emotion"].to_numpy()).all()


def test_single_is_sample_zero_of_the_maj_at_k_run_in_every_mart(warehouse):
    finals = mart(warehouse, "intermediate.int_final_answers")
    assert set(finals.groupby("model")["protocol"].unique().map(frozenset)) == {
        frozenset({"classify"}), frozenset({"maj_at_k", "single_of_maj_at_k"})}  # a one-sample run derives none
    single = finals[finals["protocol"] == "single_of_maj_at_k"].set_index("image_id")
    majority = finals[finals["protocol"] == "maj_at_k"].set_index("image_id")
    assert (single["n_samples"] == 1).all() and not single["is_tie"].any()
    assert single.index.sort_values().equals(majority.index.sort_values())
    # img/000: samples sad, happy, refused -> maj@3 is a tie, its single answer is sample 0's 'sad'
    assert single.loc["img/000.png", "predicted_emotion"] == "sad" and majority.loc["img/000.png", "answer_status"] == "tie"
    accuracy = mart(warehouse, "marts.group_accuracy")
    assert {"maj_at_k", "single_of_maj_at_k"} <= set(accuracy.loc[accuracy["model"] == "vlm", "protocol"])


def test_model_dimensional_answers_take_the_valence_steps(warehouse):
    got = mart(warehouse, "intermediate.int_model_dimensional_answers")
    preds = warehouse["predictions"]
    valence = preds[preds["step_name"] == "valence"]
    # the valence steps were asked in sample 0: the derived single protocol has the same answers
    assert set(got["protocol"]) == {"maj_at_k", "single_of_maj_at_k"}
    assert (got.groupby("protocol").size() == valence["image_id"].nunique()).all()
    assert set(got["dimension"]) == {"valence"} and set(got["model"]) == {"vlm"}
    assert (got["value"] == 0.25).all() and (got["n_valid"] == 1).all()
