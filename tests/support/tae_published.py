"""A Tae-shaped warehouse whose answers reproduce Tae et al.'s Table 2 by construction.

The images and the confusions (Table 2 by construction, Table 1's accuracy and kappa, and
where LLaMA's published macro F1 contradicts its Table 2) are tests/support/tae_confusions'.

Valence and arousal (context-carry steps 2 and 3) are the answered emotion's prototype plus a
per-image offset; two human raters rate every image, so the dimensional tables have rows too.
Raw rows go straight into the raw tables (no image files): the dbt models and the statistics
functions do the rest.
"""

from __future__ import annotations

from datetime import datetime

import duckdb
import numpy as np
import pandas as pd

from inference.warehouse import ensure_raw_schema
from tests.support.tae_confusions import IDENTITIES, MODELS, ORDER, answered_labels

DATASET = "gist_aifacedb"  # meets the paper's "GIST-AIFaceDB" by name (papers.paper_key)
PROTOCOL = "context_carry"
RACES = ("black", "white", "east_asian")
GENDERS = ("female", "male")
# every model's answers are given by the confusion matrices of tae_confusions
PROTOTYPES = {  # (valence, arousal) answered for each emotion the model read
    "happy": (8.0, 7.0), "neutral": (5.0, 3.0), "fear": (2.0, 7.5),
    "disgust": (2.0, 6.0), "anger": (1.5, 7.0), "sad": (2.5, 3.5),
}
NOW = datetime(2026, 1, 1, 12, 0, 0)


def images() -> pd.DataFrame:
    rows = []
    for race in RACES:
        for gender in GENDERS:
            for k in range(IDENTITIES):
                identity = f"{race}_{gender}_{k:02d}"
                for emotion in ORDER:
                    image_id = f"images/{identity}_{emotion}.png"
                    rows.append({"dataset": DATASET, "image_id": image_id, "image_hash": f"h-{image_id}",
                                 "label_set": "canonical", "source_label": emotion, "identity": identity,
                                 "race": race, "gender": gender, "age": 30.0, "width": 24, "height": 24,
                                 "loaded_at": NOW})
    return pd.DataFrame(rows)


def _answer(model: str, version: str, image: dict, step: int, step_name: str, **values) -> dict:
    return {"run_id": f"run-{model}", "model": model, "model_version": version, "model_kind": "vlm",
            "label_set": "canonical", "dataset": DATASET, "image_id": image["image_id"],
            "image_hash": image["image_hash"], "protocol": PROTOCOL, "step": step, "step_name": step_name,
            "sample_index": 0, "attempt": 1, "face_found": True, "created_at": NOW, **values}


def predictions(frame: pd.DataFrame) -> pd.DataFrame:
    """Every model's raw answers: per intended emotion, the images in order take the row's
    predicted emotions in ORDER, then off-label replies for the rest."""
    rows = []
    for (model, version), confusion in MODELS.items():
        for truth, counts in zip(ORDER, confusion):
            cell = frame[frame["source_label"] == truth].to_dict("records")
            for i, (image, label) in enumerate(zip(cell, answered_labels(counts, len(cell)))):
                if label is None:
                    rows.append(_answer(model, version, image, 1, "emotion", raw_text="doubt",
                                        parse_status="off_label"))
                    continue
                valence, arousal = PROTOTYPES[label]
                offset = (i % 3 - 1) * 0.5  # a little per-image variation around the prototype
                rows += [
                    _answer(model, version, image, 1, "emotion", raw_text=f'{{"emotion": "{label}"}}',
                            parse_status="ok", predicted_label=label),
                    _answer(model, version, image, 2, "valence", raw_text=f"{valence + offset:g}",
                            parse_status="ok", predicted_value=valence + offset),
                    _answer(model, version, image, 3, "arousal", raw_text=f"{arousal:g}",
                            parse_status="ok", predicted_value=arousal),
                ]
    return pd.DataFrame(rows)


def human_ratings(frame: pd.DataFrame) -> pd.DataFrame:
    """Two raters per image and dimension, around the intended emotion's prototype."""
    rng = np.random.default_rng(2026)
    rows = []
    for image in frame.itertuples():
        for dimension, base in zip(("valence", "arousal"), PROTOTYPES[image.source_label]):
            for rater in ("r1", "r2"):
                value = float(np.clip(np.rint(base + rng.normal(0, 1.0)), 1, 9))
                rows.append({"dataset": DATASET, "rater": rater, "image_id": image.image_id, "dimension": dimension,
                             "value": value, "scale_min": 1.0, "scale_max": 9.0, "loaded_at": NOW})
    return pd.DataFrame(rows)


def write_raw(path) -> dict[str, pd.DataFrame]:
    frames = {"dataset_images": images()}
    frames["predictions"] = predictions(frames["dataset_images"])
    frames["human_ratings"] = human_ratings(frames["dataset_images"])
    con = duckdb.connect(str(path))
    try:
        ensure_raw_schema(con)
        for table, frame in frames.items():
            con.register("_frame", frame)
            con.execute(f"insert into raw.{table} by name select * from _frame")
            con.unregister("_frame")
    finally:
        con.close()
    return frames
