"""Every pair's 2x2 McNemar table comes from three matrix products per dataset/protocol
(`mcnemar.pair_tables`, results tested against published values in test_stats_agreement.py).
The tables must be those a join of each pair's images gives (`_joined_per_pair` below, the
counting the asset used before), edge cases included: an image one version did not answer, an
unparseable answer, a missing true emotion, a pair with no shared image, two protocols, a
missing dataset or protocol. A frame and the warehouse are counted by the same SQL
(CORRECTNESS_SQL, then integer codes: `tables_in_warehouse`)."""

from __future__ import annotations

import itertools

import duckdb
import numpy as np
import pandas as pd
import pytest

from dagster_project.analysis import mcnemar
from dagster_project.analysis.inputs import ANSWER_COLUMNS
from dagster_project.analysis.mcnemar import (
    TABLE_COLUMNS,
    tables_in_warehouse,
    mcnemar_between_models,
    mcnemar_from_tables,
    pair_tables,
)

EMOTIONS = ["anger", "happy", "neutral", "sad"]


def _answers(seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for model, version, dataset, n_images in (("m1", "1", "d1", 60), ("m1", "2", "d1", 60), ("m2", "1", "d1", 40),
                                              ("m1", "1", "d2", 30), ("m3", "a", "d2", 30)):
        for protocol in ("classify", "cot"):
            for i in range(n_images):
                truth = EMOTIONS[i % 4] if i % 17 else None  # a few images without a true emotion
                status = "answered" if rng.random() > 0.1 else "unparseable"
                predicted = (truth if rng.random() < 0.6 else rng.choice(EMOTIONS)) if status == "answered" else None
                image = f"img{i:03d}" if dataset == "d1" or model == "m1" else f"other{i:03d}"  # m3 shares none
                rows.append([model, version, dataset, protocol, image, f"id{i % 7}", "white", "female",
                             truth, predicted, status])
    return pd.DataFrame(rows, columns=ANSWER_COLUMNS).sort_values(ANSWER_COLUMNS[:5]).reset_index(drop=True)


def _joined_per_pair(answers: pd.DataFrame) -> pd.DataFrame:
    """The reference: for each pair, join the two versions' answered images and count."""
    answered = answers[answers["answer_status"].eq("answered") & answers["predicted_emotion"].notna()].copy()
    answered["right"] = answered["true_emotion"].notna() & (answered["true_emotion"] == answered["predicted_emotion"])
    rows = []
    for (dataset, protocol), cell in answered.groupby(["dataset", "protocol"], sort=True, dropna=False):
        versions = {key: frame.set_index("image_id")["right"]
                    for key, frame in cell.groupby(["model", "model_version"], sort=True)}
        for (key_a, a), (key_b, b) in itertools.combinations(sorted(versions.items()), 2):
            both = pd.concat([a.rename("a"), b.rename("b")], axis=1, join="inner")
            a_right, b_right = both["a"].to_numpy(bool), both["b"].to_numpy(bool)
            rows.append(["" if pd.isna(dataset) else dataset, "" if pd.isna(protocol) else protocol, *key_a, *key_b,
                         int(np.sum(a_right & b_right)), int(np.sum(a_right & ~b_right)),
                         int(np.sum(~a_right & b_right)), int(np.sum(~a_right & ~b_right))])
    # ordered by the table's keys, a missing dataset or protocol ('') first
    return pd.DataFrame(rows, columns=TABLE_COLUMNS).sort_values(TABLE_COLUMNS[:6], ignore_index=True)


def _via_sql(answers: pd.DataFrame) -> pd.DataFrame:
    con = duckdb.connect()
    con.register("answers", answers)
    return tables_in_warehouse(con, "select * from answers")  # what the asset counts


def test_matrix_tables_equal_a_join_per_pair_from_the_frame_and_from_sql() -> None:
    answers = _answers()
    expected = _joined_per_pair(answers)
    assert len(expected) == 2 * 3 + 2 * 1  # d1: 3 versions -> 3 pairs, d2: 1 pair; per protocol
    assert (expected[["n11", "n10", "n01", "n00"]].sum(axis=1) == 0).sum() == 2  # m1 vs m3: no shared image
    pd.testing.assert_frame_equal(pair_tables(answers), expected, check_dtype=False)
    pd.testing.assert_frame_equal(_via_sql(answers), expected, check_dtype=False)
    pd.testing.assert_frame_equal(mcnemar_from_tables(_via_sql(answers)), mcnemar_between_models(answers))


def test_counting_in_blocks_of_images_gives_the_same_tables(monkeypatch: pytest.MonkeyPatch) -> None:
    """Many versions x many images are counted a block of images at a time (bounded memory)."""
    answers = _answers(seed=11)
    answers.loc[answers.index % 13 == 0, "protocol"] = None  # a missing protocol is its own family ('')
    expected = _joined_per_pair(answers)
    monkeypatch.setattr(mcnemar, "_BLOCK_CELLS", 7)  # 3 versions -> blocks of 2 images
    pd.testing.assert_frame_equal(pair_tables(answers), expected, check_dtype=False)
    pd.testing.assert_frame_equal(_via_sql(answers), expected, check_dtype=False)


def test_only_pairs_involving_the_new_versions() -> None:
    answers = _answers()
    got = pair_tables(answers, involving={("m2", "1", "d1")})
    assert set(zip(got["model_a"], got["model_b"])) == {("m1", "m2")} and len(got) == 4  # two m1 versions x 2 protocols
