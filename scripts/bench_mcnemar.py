"""McNemar between every pair of versions, the two countings side by side in one run: one pandas
join per pair (`mcnemar.pair_tables`, what the cross-slice asset ran before) against DuckDB's
count of every pair's 2x2 table (`mcnemar.PAIR_TABLES_SQL`, what it runs now), then the same
statsmodels rows from both (`mcnemar_from_tables`), checked equal.

    .venv/bin/python scripts/bench_mcnemar.py [--versions 200] [--images 10000]

Answers are synthetic final answers (one per version x image, right with a probability that
depends on the version), as int_final_answers holds them; nothing else is read or written.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import duckdb
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dagster_project.analysis.inputs import ANSWER_COLUMNS  # noqa: E402
from dagster_project.analysis.mcnemar import PAIR_TABLES_SQL, mcnemar_from_tables, pair_tables  # noqa: E402

EMOTIONS = "['anger', 'disgust', 'fear', 'happy', 'neutral', 'sad', 'surprise']"


def answers(con: duckdb.DuckDBPyConnection, versions: int, images: int) -> None:
    con.execute(f"""
        create table answers as
        select 'synth_vlm' as model, printf('v%03d', v) as model_version, 'synth' as dataset, 'maj_at_k' as protocol,
               printf('img/%06d.png', i) as image_id, printf('p%05d', i // 7) as identity, 'white' as race,
               'female' as gender, {EMOTIONS}[1 + i % 7] as true_emotion,
               case when hash(i, v) % 1000 < 700 + v % 50 then {EMOTIONS}[1 + i % 7]
                    else {EMOTIONS}[1 + (i + 1) % 7] end as predicted_emotion,
               'answered' as answer_status
        from range({versions}) a(v), range({images}) b(i)
        order by all
    """)


def timed(label: str, action):
    started = time.perf_counter()
    value = action()
    print(f"{label:<52} {time.perf_counter() - started:8.1f} s", flush=True)
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--versions", type=int, default=200)
    parser.add_argument("--images", type=int, default=10_000)
    args = parser.parse_args()
    con = duckdb.connect()
    answers(con, args.versions, args.images)
    pairs = args.versions * (args.versions - 1) // 2
    print(f"{args.versions} versions x {args.images} images: {pairs:,} pairs")
    sql_tables = timed("DuckDB: every pair's table (PAIR_TABLES_SQL)",
                       lambda: con.execute(PAIR_TABLES_SQL.format(answers="select * from answers")).df())
    frame = timed("  (pandas: read the answers, not part of either)",
                  lambda: con.execute(f"select {', '.join(ANSWER_COLUMNS)} from answers order by all").df())
    pandas_tables = timed("pandas: one join per pair (pair_tables, before)", lambda: pair_tables(frame))
    pd.testing.assert_frame_equal(sql_tables, pandas_tables, check_dtype=False)
    rows = timed("statsmodels rows from the tables (both ways)", lambda: mcnemar_from_tables(sql_tables))
    print(f"equal tables; {len(rows):,} result rows")


if __name__ == "__main__":
    main()
