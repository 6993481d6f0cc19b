"""A small dataset shaped like Tae et al. (2026): 3 races x 2 genders x 6 emotions x identities,
simulated human raters (valence / arousal / naturalness, 1-9), and two simulated models whose
answers are imported from CSV — one answering on the 1-9 scale, one FER-style on [-1, 1].

Effects are planted so the statistics layer has something known to find:
- gemma_sim reads 70 % of sad faces as neutral (neutral absorption), answers valence/arousal from
  a per-emotion prototype (stereotyped responding) that is more extreme than humans (polarity
  exaggeration), and rates female faces' valence `GEMMA_FEMALE_VALENCE_SHIFT` lower;
- fer_sim merges most disgust into anger and answers on [-1, 1] (rescaled to [1, 9] on import).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

RACES = ("black", "white", "korean")
GENDERS = ("female", "male")
EMOTIONS = ("anger", "disgust", "fear", "happy", "sad", "neutral")
# Per-emotion human means (valence, arousal) on 1-9, in the spirit of Tae et al. Table 4.
HUMAN_MEANS = {
    "anger": (2.6, 6.4), "disgust": (2.9, 5.6), "fear": (3.1, 6.6),
    "happy": (7.4, 6.1), "sad": (3.0, 3.9), "neutral": (4.9, 2.9),
}
GEMMA_PROTOTYPES = {  # further from 5 than humans: polarity exaggeration
    "anger": (1.5, 7.5), "disgust": (2.0, 6.5), "fear": (2.0, 7.5),
    "happy": (8.5, 7.0), "sad": (2.0, 4.0), "neutral": (5.0, 2.0),
}
GEMMA_FEMALE_VALENCE_SHIFT = -0.5
N_RATERS = 12
RATERS_PER_IMAGE = 6
RATER_NOISE_SD = 1.0


@dataclass(frozen=True)
class TaeFixture:
    root: Path
    manifest: Path
    ratings: Path
    gemma_answers: Path
    fer_answers: Path
    n_images: int


def build_tae_fixture(root: Path, identities_per_cell: int = 3, seed: int = 11) -> TaeFixture:
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    images = []
    for race in RACES:
        for gender in GENDERS:
            for k in range(identities_per_cell):
                identity = f"{race[0]}{gender[0]}{k:02d}"
                for emotion in EMOTIONS:
                    rel = f"images/{identity}_{emotion}.png"
                    pixels = rng.integers(0, 256, size=(24, 24, 3), dtype=np.uint8)
                    Image.fromarray(pixels).save(root / rel)
                    images.append({"image": rel, "emotion": emotion, "race": race, "gender": gender, "identity": identity})
    manifest = write_csv(root / "manifest.csv", images)
    ratings = write_csv(root / "ratings.csv", _human_ratings(images, rng))
    gemma = write_csv(root / "gemma_sim.csv", [_gemma_answer(img, rng) for img in images])
    fer = write_csv(root / "fer_sim.csv", [_fer_answer(img, rng) for img in images])
    return TaeFixture(root, manifest, ratings, gemma, fer, len(images))


def write_csv(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def _likert(value: float) -> int:
    return int(np.clip(np.rint(value), 1, 9))


def _human_ratings(images: list[dict], rng: np.random.Generator) -> list[dict]:
    rows = []
    for img in images:
        valence, arousal = HUMAN_MEANS[img["emotion"]]
        image_shift = rng.normal(0, 0.5, size=2)  # each face's own intensity
        for rater in rng.choice(N_RATERS, size=RATERS_PER_IMAGE, replace=False):
            noise = rng.normal(0, RATER_NOISE_SD, size=3)
            for dimension, value in (
                ("valence", valence + image_shift[0] + noise[0]),
                ("arousal", arousal + image_shift[1] + noise[1]),
                ("naturalness", 6.0 + noise[2]),
            ):
                rows.append({"rater": f"r{rater:02d}", "image": img["image"], "dimension": dimension,
                             "value": _likert(value)})
    return rows


def _gemma_answer(img: dict, rng: np.random.Generator) -> dict:
    emotion = img["emotion"]
    label = "neutral" if emotion == "sad" and rng.random() < 0.7 else emotion
    valence, arousal = GEMMA_PROTOTYPES[label]
    if img["gender"] == "female":
        valence += GEMMA_FEMALE_VALENCE_SHIFT
    return {"image": img["image"], "label": label, "valence": valence, "arousal": arousal}


def _fer_answer(img: dict, rng: np.random.Generator) -> dict:
    emotion = img["emotion"]
    label = "anger" if emotion == "disgust" and rng.random() < 0.8 else emotion
    valence, arousal = HUMAN_MEANS[emotion]
    # FER-style output on [-1, 1]: the human-scale value mapped back, plus noise.
    to_unit = lambda v: float(np.clip((v - 1) / 8 * 2 - 1 + rng.normal(0, 0.15), -1, 1))  # noqa: E731
    return {"image": img["image"], "label": label, "valence": round(to_unit(valence), 4),
            "arousal": round(to_unit(arousal), 4)}


# The Tae prompt's word for a canonical label, where it differs.
TAE_WORDS = {"anger": "angry"}


def context_carry_reply(recorded, emotion: str):
    """A loopback server's answer to one step of the Tae context-carry prompt for a face read as
    `emotion`: the emotion word, then that emotion's human mean valence, then its arousal."""
    from tests.support.openai_server import answer

    last = (recorded.body or {}).get("messages", [{}])[-1].get("content")
    question = last if isinstance(last, str) else " ".join(
        p.get("text", "") for p in last or [] if p.get("type") == "text")
    valence, arousal = HUMAN_MEANS[emotion]
    if "How pleasant" in question:
        return answer(f"{valence:g}")
    if "How intense" in question:
        return answer(f"{arousal:g}")
    return answer(TAE_WORDS.get(emotion, emotion))
