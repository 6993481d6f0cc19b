"""The McNemar asset counts each pair's 2x2 table in DuckDB (PAIR_TABLES_SQL): the tables, and
the results, must be those the pandas counting gives (`pair_tables`, tested against published
values in test_stats_agreement.py), edge cases included: an image one version did not answer,
an unparseable answer, a missing true emotion, a pair with no shared image, two protocols."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd

from dagster_project.analysis.inputs import ANSWER_COLUMNS
from dagster_project.analysis.mcnemar import PAIR_TABLES_SQL, mcnemar_between_models, mcnemar_from_tables, pair_tables

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


def _sql_tables(answers: pd.DataFrame) -> pd.DataFrame:
    con = duckdb.connect()
    con.register("answers", answers)
    tables = con.execute(PAIR_TABLES_SQL.format(answers="select * from answers")).df()
    return tables.astype({column: int for column in ("n11", "n10", "n01", "n00")})


def test_sql_tables_equal_the_pandas_tables_and_give_the_same_results() -> None:
    answers = _answers()
    expected = pair_tables(answers)
    got = _sql_tables(answers)
    assert len(expected) == 2 * 3 + 2 * 1  # d1: 3 versions -> 3 pairs, d2: 1 pair; per protocol
    assert (expected[["n11", "n10", "n01", "n00"]].sum(axis=1) == 0).sum() == 2  # m1 vs m3: no shared image
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)
    pd.testing.assert_frame_equal(mcnemar_from_tables(got), mcnemar_between_models(answers))
