"""Chicago-Face-shaped sets and imported answers built so that Chhua et al. (2024)'s published
numbers come out of the warehouse (tests/journeys/test_chhua_tables_from_imported_answers.py).

The targets are read from dbt/seeds/published_values.csv (the rows the papers views join), never
typed here; the counts below are searched from them, so a corrected seed moves the fixture too.

Two sets in the Chicago Face Database layout (`Images/CFD/<target>/CFD-<race><gender>-<n>-<m>-<code>.jpg`,
the `chicago_face` kind), unbalanced like the real one:
- `cfd` (the paper's "Chicago Face", matched by the seed alias): CFD 3.0's 597 targets with a
  neutral face, 153 of them (Black and White: the paper says Asian and Latino faces are all
  neutral) with anger, fear and happy (closed or open mouth; CFD has both) too: 1,056 images.
  Table 1's Chicago Face column (8 cells) is answered on it by one imported model per Table 1
  row; GPT-4o's rows carry five samples per image, whose vote is maj@5 and whose sample 0 is
  the warehouse's `single` (protocol single_of_<protocol>).
- `cfd_pooled`: the same layout, every race with some expressive targets, counts per race x
  emotion searched so that one image count per cell carries all three models' Table 2 accuracies.
  Table 2 cannot be Chicago Face alone (the paper's own numbers: GPT-4o scores 95.6 % on Chicago
  Face in Table 1 but at most 84.5 % for any race in Table 2, and Table 2 has Asian and Hispanic
  anger, fear and happy faces, which CFD lacks), nor RADIATE and Tarr alone (GPT-4o's and
  Gemini's Table 1 accuracies there are below every race's in Table 2): it pools the three. This set stands for that
  pool, as far as a set with CFD's four expressions can.
  The race z-tests (Section 5, no model named: `vlm_unnamed` here) are answered on it too: on
  `cfd`'s group sizes (Asian and Latino 108-109 neutral faces, Black and White ~500) no error
  rates give all four published z (Latino vs White stays near -2.58 where -2.70 is printed);
  the pool's sizes do.
"""

from __future__ import annotations

import csv
import random
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from tests.support.dataset_layouts import image

REPO_ROOT = Path(__file__).resolve().parents[2]
PUBLISHED = REPO_ROOT / "dbt" / "seeds" / "published_values.csv"

RACE_CODES = {"asian": "A", "black": "B", "latino": "L", "white": "W"}
CFD_CODES = {"neutral": "N", "anger": "A", "fear": "F"}  # happy: HC / HO, alternating by target
CFD_EMOTIONS = ("anger", "fear", "happy", "neutral")  # the only expressions CFD has
# CFD 3.0: 597 targets photographed neutral; the expressive subset (the paper: none Asian or Latino).
CFD_TARGETS = {"asian": 109, "black": 197, "latino": 108, "white": 183}
CFD_EXPRESSIVE = {"black": 79, "white": 74}
# A wrong answer for each true emotion (what the model read instead).
CONFUSED_WITH = {"anger": "disgust", "fear": "surprise", "happy": "neutral", "neutral": "sad"}
# Images no model gave a valid answer for (the paper retried up to ten times; a few never came):
# they are outside the paper's denominator, which is the answered images.
UNANSWERED = 12
# Smallest image counts per race x emotion in cfd_pooled: neutral dominates, as in CFD.
POOLED_MIN_N = {"neutral": 150, "anger": 20, "fear": 20, "happy": 30}
ZTEST_MODEL = "vlm_unnamed"  # the paper names no model for its z-tests


@dataclass(frozen=True)
class Target:
    """One published cell: the value on the warehouse's scale and its rounding unit."""

    published_id: str
    value: float
    unit: float

    def fits(self, count: int, n: int) -> bool:
        return n > 0 and abs(count / n - self.value) <= self.unit / 2

    def count_for(self, n: int) -> int | None:
        count = round(self.value * n)
        return count if self.fits(count, n) else None


def published(papers_model: str) -> list[dict[str, str]]:
    with open(PUBLISHED, newline="") as fh:
        return [row for row in csv.DictReader(fh) if row["papers_model"] == papers_model]


def target(row: dict[str, str]) -> Target:
    return Target(row["published_id"], float(row["published_value"]), float(row["rounding_unit"]))


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_").replace("__", "_")


# ------------------------------------------------------------------ images

@dataclass(frozen=True)
class Face:
    image_id: str
    race: str
    emotion: str


def _faces(targets: dict[str, dict[str, int]], first_number: int) -> list[Face]:
    """CFD-layout faces: per race, targets 0..n_neutral-1 each have a neutral face, and the
    first n_emotion of them a face of each other emotion (so neutral-only targets dominate)."""
    faces = []
    number = first_number
    for race, counts in targets.items():
        assert counts["neutral"] == max(counts.values()), (race, counts)
        for k in range(counts["neutral"]):
            gender = "FM"[k % 2]
            target_id = f"{RACE_CODES[race]}{gender}-{number}"
            number += 1
            for emotion in CFD_EMOTIONS:
                if k >= counts.get(emotion, 0):
                    continue
                code = CFD_CODES.get(emotion) or ("HC", "HO")[k % 2]
                faces.append(Face(f"Images/CFD/{target_id}/CFD-{target_id}-{len(faces) % 900 + 1:03d}-{code}.jpg",
                                  race, emotion))
    return faces


def cfd_faces() -> list[Face]:
    return _faces({race: {"neutral": n, **{e: CFD_EXPRESSIVE.get(race, 0) for e in ("anger", "fear", "happy")}}
                   for race, n in CFD_TARGETS.items()}, first_number=200)


def pooled_counts() -> dict[str, dict[str, int]]:
    """race -> emotion -> images of cfd_pooled: per cell the smallest count (at least
    POOLED_MIN_N) at which every Table 2 model's published accuracy is a whole number of faces."""
    by_cell = defaultdict(list)
    for row in published("chhua_table2"):
        race, emotion = row["subset"].split("|")
        if emotion in CFD_EMOTIONS:
            by_cell[race, emotion].append(target(row))
    counts: dict[str, dict[str, int]] = defaultdict(dict)
    for (race, emotion), targets in sorted(by_cell.items()):
        counts[race][emotion] = next(n for n in range(POOLED_MIN_N[emotion], 5000)
                                     if all(t.count_for(n) is not None for t in targets))
    return dict(counts)


def write_images(root: Path, faces: Iterable[Face]) -> Path:
    for i, face in enumerate(faces):
        image(root / face.image_id, shade=i)
    return root


# ------------------------------------------------------------------ answers

def _answer_rows(faces: list[Face], verdicts: dict[str, tuple[bool, bool]], samples: int) -> list[dict]:
    """One row per face and sample. `verdicts`: image -> (sample 0 right, majority right); a face
    without one gets empty labels (no valid answer). With 5 samples the majority is 3 to 2, and
    sample 0 may disagree with it: the warehouse reads maj@5 from the vote and `single` from
    sample 0 (protocol single_of_<protocol>), as Table 1 compares them."""
    rows = []
    for face in faces:
        right, wrong = face.emotion, CONFUSED_WITH[face.emotion]
        verdict = verdicts.get(face.image_id)
        if verdict is None:
            labels = [""] * samples
        elif samples == 1:
            labels = [right if verdict[0] else wrong]
        else:
            win, lose = (right, wrong) if verdict[1] else (wrong, right)
            first = right if verdict[0] else wrong
            labels = [win, lose, win, lose, win] if first == win else [lose, win, win, lose, win]
        rows += [{"image": face.image_id, "label": label, "sample_index": s} for s, label in enumerate(labels)]
    return rows


def write_answers(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["image", "label", "sample_index"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def _verdicts(faces: list[Face], n_answered: int, single: int, majority: int, seed: str) -> dict[str, tuple[bool, bool]]:
    """A reproducible shuffle of the faces: the first `n_answered` answered, `single` of them
    right on sample 0 and `majority` right by the vote, overlapping as far as they can."""
    order = [f.image_id for f in faces]
    random.Random(seed).shuffle(order)
    both = min(single, majority)
    return {image_id: (i < both or (single > majority and i < single),
                       i < both or (majority > single and i < majority))
            for i, image_id in enumerate(order[:n_answered])}


@dataclass(frozen=True)
class ImportedModel:
    name: str
    version: str
    paper_name: str  # exact name, or a regular expression when `pattern`
    pattern: bool
    protocol: str
    files: dict[str, Path]  # dataset -> answers CSV
    family: str = "vlm"

    def yaml(self) -> str:
        spelled = f"{{pattern: '{self.paper_name}'}}" if self.pattern else f"'{self.paper_name}'"
        files = ", ".join(f"{d}: {p}" for d, p in self.files.items())
        paper = f", paper_name: {spelled}" if self.paper_name else ""
        return (f"  {self.name}: {{kind: imported, family: {self.family}, version: '{self.version}'{paper}, "
                f"datasets: [{', '.join(self.files)}], options: {{protocol: {self.protocol}, files: {{{files}}}}}}}\n")


# Table 1 calls the CLIP probe "Linear Classifier on CLIP Embeddings", Table 2 "CLIP": one model, one pattern.
CLIP_PATTERN = "CLIP|Linear Classifier on CLIP Embeddings"
TABLE2_MODELS = {"GPT-4o": "gpt_4o", "Gemini 1.5 Pro": "gemini_1_5_pro", "CLIP": "linear_classifier_on_clip_embeddings"}


def table1_models(root: Path, faces: list[Face]) -> dict[str, tuple[ImportedModel, dict[str, Target]]]:
    """One imported model per Table 1 row of Chicago Face (model x prompting) and its cells by
    method. Prompting 'cot' is the protocol's name; a row with a maj@5 cell gets five samples per
    image, so its single cell is read from sample 0 of the same answers."""
    rows = defaultdict(dict)
    for row in published("chhua_table1"):
        if row["dataset"] == "Chicago Face":
            rows[row["model"], row["prompting"]][row["method"]] = target(row)
    models = {}
    n_answered = len(faces) - UNANSWERED
    for (paper_model, prompting), cells in rows.items():
        name = slug(paper_model) + ("_cot" if prompting == "cot" else "")
        counts = {method: cell.count_for(n_answered) for method, cell in cells.items()}
        assert None not in counts.values(), (cells, n_answered)  # > 1,000 answered: every 0.001 is reachable
        samples = 5 if "maj@5" in cells else 1
        verdicts = _verdicts(faces, n_answered, counts["single"], counts.get("maj@5", counts["single"]), name)
        answers = write_answers(root / f"{name}_cfd.csv", _answer_rows(faces, verdicts, samples))
        clip = "CLIP" in paper_model
        models[name] = (ImportedModel(name, f"{name}-2024", CLIP_PATTERN if clip else paper_model, clip,
                                      "zero_shot_cot" if prompting == "cot" else "zero_shot", {"cfd": answers},
                                      "clip" if clip else "vlm"), cells)
    return models


def table2_answers(root: Path, faces: list[Face], paper_model: str) -> Path:
    """cfd_pooled answers of one Table 2 model: per race x emotion its published accuracy."""
    by_cell = defaultdict(list)
    for face in faces:
        by_cell[face.race, face.emotion].append(face)
    verdicts: dict[str, tuple[bool, bool]] = {}
    for row in published("chhua_table2"):
        race, emotion = row["subset"].split("|")
        if row["model"] != paper_model or emotion not in CFD_EMOTIONS:
            continue
        cell = by_cell[race, emotion]
        count = target(row).count_for(len(cell))
        assert count is not None, row["published_id"]
        verdicts |= _verdicts(cell, len(cell), count, count, row["published_id"])
    return write_answers(root / f"{TABLE2_MODELS[paper_model]}_cfd_pooled.csv", _answer_rows(faces, verdicts, 1))


# ------------------------------------------------------------------ the race z-tests

def ztest_targets() -> dict[tuple[str, str], tuple[Target, Target]]:
    rows = {(r["subset"], r["measure"]): target(r) for r in published("chhua_race_ztests")}
    return {tuple(subset.split(" vs ")): (rows[subset, "z"], rows[subset, "p_value"])
            for subset, measure in rows if measure == "z"}


def _pair_fits(errors_a, n_a, errors_b, n_b, goal: tuple[Target, Target]):
    """Elementwise (numpy): do these counts print the published z and p of one pair?"""
    from scipy.special import erfc

    pooled = (errors_a + errors_b) / (n_a + n_b)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (errors_b / n_b - errors_a / n_a) / np.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    p = erfc(np.abs(z) / np.sqrt(2))
    return (np.abs(z - goal[0].value) <= goal[0].unit / 2) & (np.abs(p - goal[1].value) <= goal[1].unit / 2)


def ztest_counts(sizes: dict[str, int], slack: int = 10) -> dict[str, tuple[int, int]]:
    """race -> (errors, answered) whose pairwise z-tests print the paper's z and p: answered
    within `slack` images of each race's size (the rest unanswered). Four equations in four
    error rates: the answered counts are the freedom that lets whole numbers of faces hit them."""
    goals = ztest_targets()
    assert set(goals) == {("asian", "black"), ("asian", "latino"), ("black", "white"), ("latino", "white")}, goals

    def grid(race: str) -> tuple[np.ndarray, np.ndarray]:  # every (errors, answered) of a race
        n = np.repeat(np.arange(sizes[race], sizes[race] - slack - 1, -1), sizes[race])
        errors = np.tile(np.arange(sizes[race]), slack + 1)
        return errors[errors < n], n[errors < n]

    black, latino, white = grid("black"), grid("latino"), grid("white")
    for asian in zip(*grid("asian")):
        to_black, to_latino = _pair_fits(*asian, *black, goals["asian", "black"]), _pair_fits(*asian, *latino, goals["asian", "latino"])
        if not to_latino.any():
            continue
        for b in zip(black[0][to_black], black[1][to_black]):
            to_white = _pair_fits(*b, *white, goals["black", "white"])
            whites = white[0][to_white], white[1][to_white]
            for x in zip(latino[0][to_latino], latino[1][to_latino]):
                found = _pair_fits(*x, *whites, goals["latino", "white"])
                if found.any():
                    w = whites[0][found][0], whites[1][found][0]
                    return {race: (int(e), int(n)) for race, (e, n) in
                            (("asian", asian), ("black", b), ("latino", x), ("white", w))}
    raise AssertionError("no counts reproduce the paper's race z-tests")


def ztest_answers(root: Path, faces: list[Face]) -> tuple[Path, dict[str, tuple[int, int]]]:
    by_race = defaultdict(list)
    for face in faces:
        by_race[face.race].append(face)
    counts = ztest_counts({race: len(group) for race, group in by_race.items()})
    verdicts: dict[str, tuple[bool, bool]] = {}
    for race, (errors, n) in counts.items():
        verdicts |= _verdicts(by_race[race], n, n - errors, n - errors, f"ztests-{race}")
    return write_answers(root / f"{ZTEST_MODEL}_cfd_pooled.csv", _answer_rows(faces, verdicts, 1)), counts


def four_emotion_weights(race: str) -> list[float]:
    """The shares of anger, fear, happy and neutral faces at which all three Table 2 models'
    per-emotion accuracies average to their published Accuracy row (one linear system)."""
    rows = published("chhua_table2")
    value = {(r["model"], r["subset"]): float(r["published_value"]) for r in rows}
    matrix = [[value[m, f"{race}|{e}"] for e in CFD_EMOTIONS] for m in TABLE2_MODELS] + [[1.0] * 4]
    totals = [value[m, f"{race}|all"] for m in TABLE2_MODELS] + [1.0]
    return [float(w) for w in np.linalg.solve(np.array(matrix), np.array(totals))]


# ------------------------------------------------------------------ everything a journey needs

@dataclass(frozen=True)
class ChhuaFixture:
    cfd: Path  # dataset folders (the chicago_face layout root)
    cfd_pooled: Path
    table1: dict[str, tuple[ImportedModel, dict[str, Target]]]  # model name -> (model, cells by method)
    ztest_model: ImportedModel
    ztest_counts: dict[str, tuple[int, int]]  # race -> (errors, answered)
    pooled_counts: dict[str, dict[str, int]]
    n_cfd: int

    def models_yaml(self) -> str:
        models = {name: model for name, (model, _) in self.table1.items()}
        models[self.ztest_model.name] = self.ztest_model
        return "".join(m.yaml() for m in models.values())

    def datasets_yaml(self) -> str:
        return (f"  cfd: {{kind: chicago_face, location: '{self.cfd}'}}\n"
                f"  cfd_pooled: {{kind: chicago_face, location: '{self.cfd_pooled}'}}\n")


def build(root: Path) -> ChhuaFixture:
    faces = cfd_faces()
    counts = pooled_counts()
    pooled = _faces(counts, first_number=1000)
    cfd = write_images(root / "cfd" / "CFD Version 3.0", faces)
    cfd_pooled = write_images(root / "cfd_pooled" / "CFD Version 3.0", pooled)
    answers = root / "answers"
    table1 = table1_models(answers, faces)
    for paper_model, name in TABLE2_MODELS.items():
        model, cells = table1[name]
        files = {**model.files, "cfd_pooled": table2_answers(answers, pooled, paper_model)}
        table1[name] = (replace(model, files=files), cells)
    ztest_file, zcounts = ztest_answers(answers, pooled)
    ztest = ImportedModel(ZTEST_MODEL, "unnamed-2024", "", False, "zero_shot", {"cfd_pooled": ztest_file})
    return ChhuaFixture(cfd, cfd_pooled, table1, ztest, zcounts, counts, len(faces))
