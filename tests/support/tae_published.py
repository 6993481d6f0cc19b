"""A Tae-shaped warehouse whose answers reproduce Tae et al.'s Table 2 by construction.

1,440 images (3 races x 2 genders x 40 identities x 6 emotions, 240 per emotion) and two VLMs
whose final answers follow the confusion matrices below. Each matrix row is one intended
emotion: how many of its 240 images the model answered with each emotion; images missing from
a row got no valid answer (an off-label reply, like Gemma3's "doubt"). The counts were chosen
so that the published per-emotion accuracies (Table 2, proportion correct of the answered
images) come out within rounding, the overall accuracy and Cohen's kappa of Table 1 too, and
the errors follow the paper's description (Gemma3 reads most sad faces as neutral, LLaMA most
disgust as anger):

- Gemma3-4B: sad 30 of 238 answered = 0.126 (30 of 240 would print 0.125); accuracy 1044/1438
  = 0.726, kappa 0.671, macro F1 0.683 -- all three of Table 1.
- LLaMA-3.2-11B: disgust 2 of 239 answered; accuracy 882/1439 = 0.613, kappa 0.535. Its
  published macro F1 0.402 cannot be reached by ANY confusion with Table 2's accuracies: happy
  and neutral at 1.000 keep those two F1s high, and placing every error where it hurts most
  still gives about 0.51 (a hill-climb over all placements), so the paper's Table 1 and Table 2
  disagree for LLaMA; papers.tae_table1 shows that difference.

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

DATASET = "gist_aifacedb"  # meets the paper's "GIST-AIFaceDB" by name (papers.paper_key)
PROTOCOL = "context_carry"
RACES = ("black", "white", "east_asian")
GENDERS = ("female", "male")
IDENTITIES = 40
ORDER = ("happy", "neutral", "fear", "disgust", "anger", "sad")  # rows and columns below
# (warehouse model, version) -> confusion; LLaMA is named by its provider id, which the seed
# published_aliases maps to the paper's "LLaMA-3.2-11B".
MODELS = {
    ("gemma3_4b", "qat-4bit"): [
        [240, 0, 0, 0, 0, 0],
        [0, 240, 0, 0, 0, 0],
        [1, 1, 235, 2, 1, 0],
        [8, 9, 8, 202, 4, 9],
        [23, 25, 30, 30, 97, 35],
        [12, 170, 5, 16, 5, 30],
    ],
    ("llama_vision", "Llama-3.2-11B-Vision-Instruct"): [
        [240, 0, 0, 0, 0, 0],
        [0, 240, 0, 0, 0, 0],
        [20, 20, 157, 0, 23, 20],
        [0, 0, 0, 2, 236, 1],
        [0, 0, 9, 0, 221, 10],
        [0, 150, 40, 0, 28, 22],
    ],
}
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
            answers = [label for label, count in zip(ORDER, counts) for _ in range(count)]
            cell = frame[frame["source_label"] == truth].to_dict("records")
            for i, image in enumerate(cell):
                if i >= len(answers):
                    rows.append(_answer(model, version, image, 1, "emotion", raw_text="doubt",
                                        parse_status="off_label"))
                    continue
                label = answers[i]
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
