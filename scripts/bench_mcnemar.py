"""McNemar between every pair of versions, the two countings side by side in one run: DuckDB's
join of every pair's images (`JOINED_PAIRS_SQL` below, what the cross-slice asset ran before)
against three matrix products per dataset/protocol over the answers' integer codes
(`mcnemar.tables_in_warehouse`, what it runs now), then the same statsmodels rows from
both (`mcnemar_from_tables`), checked equal.

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

from dagster_project.analysis.mcnemar import CORRECTNESS_SQL, mcnemar_from_tables, tables_in_warehouse  # noqa: E402

# Before: every pair's 2x2 table from a self-join on the image (a row per pair per shared image).
JOINED_PAIRS_SQL = """
with answered as ({correctness}),
versions as (select distinct dataset, protocol, model, model_version from answered),
pairs as (
    select a.dataset, a.protocol, a.model as model_a, a.model_version as version_a,
           b.model as model_b, b.model_version as version_b
    from versions a join versions b
      on a.dataset = b.dataset and a.protocol = b.protocol
     and (a.model < b.model or (a.model = b.model and a.model_version < b.model_version))
),
counts as (
    select a.dataset, a.protocol, a.model as model_a, a.model_version as version_a,
           b.model as model_b, b.model_version as version_b,
           count_if(a.correct and b.correct) as n11, count_if(a.correct and not b.correct) as n10,
           count_if(not a.correct and b.correct) as n01, count_if(not a.correct and not b.correct) as n00
    from answered a join answered b
      on a.dataset = b.dataset and a.protocol = b.protocol and a.image_id = b.image_id
     and (a.model < b.model or (a.model = b.model and a.model_version < b.model_version))
    group by all
)
select p.*, coalesce(n11, 0) as n11, coalesce(n10, 0) as n10, coalesce(n01, 0) as n01, coalesce(n00, 0) as n00
from pairs p left join counts c using (dataset, protocol, model_a, version_a, model_b, version_b)
order by dataset, protocol, model_a, version_a, model_b, version_b
"""

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
    correctness = CORRECTNESS_SQL.format(answers="select * from answers")
    joined = timed("DuckDB: a join of every pair's images (before)",
                   lambda: con.execute(JOINED_PAIRS_SQL.format(correctness=correctness)).df())
    matrix = timed("read codes + matrix products (tables_in_warehouse, now)",
                   lambda: tables_in_warehouse(con, "select * from answers"))
    pd.testing.assert_frame_equal(matrix, joined, check_dtype=False)
    rows = timed("statsmodels rows from the tables (both ways)", lambda: mcnemar_from_tables(matrix))
    print(f"equal tables; {len(rows):,} result rows")


if __name__ == "__main__":
    main()
