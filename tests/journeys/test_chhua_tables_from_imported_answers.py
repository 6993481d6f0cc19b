"""Journey: a researcher imports answers made elsewhere (CSV, `kind: imported`) on two sets in the
Chicago Face Database layout with unbalanced classes (most targets photographed neutral only),
runs `fer-warehouse demo`, and reads Chhua et al. (2024) beside the warehouse through
`fer-warehouse sql --csv`. The answers were built (tests/support/chhua_fixture.py) from the
published values the views join, so every cell that is the same quantity as ours must print the
paper's number:

- Table 1, Chicago Face column: 8 of 8 cells (GPT-4o x plain / CoT x single / maj@5, PaliGemma,
  Gemini Flash and Pro, the CLIP probe), accuracy over the ANSWERED images (the paper's
  denominator: it retried until an answer was valid). Each model leaves 12 faces unanswered, so the
  intent-to-treat accuracy beside it is off by more than the rounding: the view's `value` is the
  paper's quantity. RADIATE and Tarr (16 cells) stay 'paper only': no such set here.
- Table 2 (race x emotion, GPT-4o / Gemini 1.5 Pro / CLIP): 48 of 96 cells, anger, fear, happy
  and neutral for each race, on `cfd_pooled`. Not the same quantity, asserted below:
  * disgust, sad, surprise (36 cells): CFD has no such faces ('paper only');
  * the Accuracy row (12 cells) averages seven emotions; over CFD's four, no composition of
    faces gives all three models' Asian, Black or Latino row (the weights solving it are
    negative), and White's needs neutral faces to be the fewest, unlike Chicago Face;
  * Table 2 rows beside the `cfd` slices: Table 2 pools RADIATE, Tarr and Chicago Face (each
    model's Chicago Face accuracy in Table 1 is above every race's in Table 2; GPT-4o's and
    Gemini's RADIATE and Tarr accuracies below every race's), so it is not Chicago Face alone.
- The race z-tests (Section 5): 8 of 8 cells (z and p for 4 pairs) for the model they are built
  for (`vlm_unnamed`: the paper names none, so its cells meet every model and only that one
  matches).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.chhua_fixture import (
    CFD_EMOTIONS, ChhuaFixture, RACE_CODES, UNANSWERED, ZTEST_MODEL, build, four_emotion_weights, published,
)
from tests.support.journey import Workspace


def rows(work: Workspace, view: str, where: str) -> list[dict[str, str]]:
    return work.sql(f"select * from papers.{view} where {where} order by all")


@pytest.mark.timeout(1800)
def test_chhua_tables_come_out_of_imported_answers_on_chicago_face_shaped_sets(tmp_path: Path) -> None:
    fixture = build(tmp_path / "downloads")
    work = Workspace(tmp_path / "work")
    work.write_config(fixture.datasets_yaml(), fixture.models_yaml())
    work.cli("demo")
    check_tables(work, fixture)


def check_tables(work: Workspace, fixture: ChhuaFixture) -> None:
    # Unbalanced: in both sets most faces are neutral, and in cfd Asian and Latino faces are all neutral.
    shares = {(r["dataset"], r["race"], r["emotion"]): int(r["n"]) for r in work.sql(
        "select dataset, race, true_emotion as emotion, count(*) as n from intermediate.int_images_labeled group by all")}
    assert {e for (d, r, e) in shares if d == "cfd" and r in ("asian", "latino")} == {"neutral"}, shares
    for dataset in ("cfd", "cfd_pooled"):
        counts = {e: sum(n for (d, _, x), n in shares.items() if d == dataset and x == e) for e in CFD_EMOTIONS}
        assert max(counts, key=counts.get) == "neutral", (dataset, counts)

    # Table 1: every Chicago Face cell, over the answered images.
    table1 = rows(work, "chhua_table1", "published_id is not null")
    matched = {r["published_id"]: r for r in table1 if r["row_source"] == "warehouse and paper"}
    cells = [(name, model, method, cell) for name, (model, by_method) in fixture.table1.items()
             for method, cell in by_method.items()]
    assert len(cells) == 8
    for name, model, method, cell in cells:
        row = matched.pop(cell.published_id)
        # maj@5 is the vote of five samples; `single` beside it is sample 0 of the same answers
        protocol = model.protocol if method == "maj@5" or "maj@5" not in fixture.table1[name][1] \
            else f"single_of_{model.protocol}"
        assert (row["model"], row["dataset"], row["protocol"], row["method"]) == (name, "cfd", protocol, method), row
        assert row["within_rounding"] == "True", row
        assert int(row["n_images"]) == fixture.n_cfd and int(row["n"]) == fixture.n_cfd - UNANSWERED, row
        assert float(row["value"]) == pytest.approx(int(row["correct"]) / int(row["n"]))
        assert abs(float(row["accuracy_itt"]) - cell.value) > cell.unit, row  # the other denominator misses
    assert not matched, matched  # no other slice is set beside a Table 1 cell
    paper_only = [r for r in table1 if r["row_source"] == "paper only"]
    assert len(paper_only) == 16 and {r["published_dataset"] for r in paper_only} == {"RADIATE", "Tarr"}

    # Table 2 on cfd_pooled: the cells of CFD's four emotions, and only those.
    table2 = rows(work, "chhua_table2", "published_id is not null")
    pooled = [r for r in table2 if r["dataset"] == "cfd_pooled"]
    within = {r["published_id"] for r in pooled if r["within_rounding"] == "True"}
    expected = {r["published_id"] for r in published("chhua_table2")
                if r["subset"].split("|")[1] in CFD_EMOTIONS}
    assert len(expected) == 48 and within == expected, sorted(within ^ expected)
    accuracy_rows = [r for r in pooled if r["subset"].endswith("|all")]
    assert len(accuracy_rows) == 12 and not any(r["within_rounding"] == "True" for r in accuracy_rows)
    for race in RACE_CODES:
        weights = four_emotion_weights(race)  # shares of anger, fear, happy, neutral
        if race == "white":
            assert min(weights) > 0 and weights[-1] == min(weights), weights  # neutral the fewest
        else:
            assert min(weights) < 0, (race, weights)  # no set of faces reproduces the row
    missing = {r["published_id"] for r in table2 if r["row_source"] == "paper only"}
    assert len(missing) == 36 and all(i.split("|")[1].split(":")[0] in ("disgust", "sad", "surprise")
                                      for i in missing), sorted(missing)
    # Table 2 pools the three datasets, as the paper's own Table 1 and Table 2 show: each model's
    # Chicago Face accuracy is above every race's in Table 2, and GPT-4o's and Gemini's RADIATE
    # and Tarr accuracies (any method) below every race's, so neither Chicago Face alone nor
    # RADIATE + Tarr gives Table 2.
    table1_printed = published("chhua_table1")
    for model, table1_name in (("GPT-4o", "GPT-4o"), ("Gemini 1.5 Pro", "Gemini 1.5 Pro"),
                               ("CLIP", "Linear Classifier on CLIP Embeddings")):
        races = [float(r["published_value"]) for r in published("chhua_table2")
                 if r["model"] == model and r["subset"].endswith("|all")]
        of = {r["dataset"]: float(r["published_value"]) for r in table1_printed
              if r["model"] == table1_name and r["method"] == "single" and r["prompting"] == "plain"}
        others = [float(r["published_value"]) for r in table1_printed
                  if r["model"] == table1_name and r["dataset"] != "Chicago Face"]
        assert len(races) == 4 and of["Chicago Face"] > max(races), (model, races, of)
        assert model == "CLIP" or max(others) < min(races), (model, races, others)

    # The race z-tests: the paper's z (its sign: positive = the second group errs more) and p.
    ztests = rows(work, "chhua_race_ztests", f"model = '{ZTEST_MODEL}' and published_id is not null")
    assert len(ztests) == 8 and all(r["within_rounding"] == "True" for r in ztests), ztests
    for r in ztests:
        if r["measure"] == "z":
            errors = (int(r["errors_a"]), int(r["n_a"])), (int(r["errors_b"]), int(r["n_b"]))
            assert errors == (fixture.ztest_counts[r["group_a"]], fixture.ztest_counts[r["group_b"]]), r
